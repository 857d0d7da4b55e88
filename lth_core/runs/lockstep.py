"""Runs in lockstep: many IMP runs advanced round by round, the trainings of a round trained together.

`run_lockstep(configs, load_data)` opens every unfinished run in the run store
(`store.open_run`: locked, verified, resumed at its first unfinished round),
then repeats until every run has finished:
1. each open run lists its current round's trainings (`IMPRunner.round_jobs`:
   the finding run, retrainings, controls, each with its reset model);
2. the trainings of all runs that can share a stacked model — same network,
   masked layers, batch size, dataset and test rows (`group_key`) — are trained together by
   `fused.train_fused`, in groups of at most `fused.group_size` members;
3. each run finishes its round from its own results (`IMPRunner.finish_round`:
   rows, the next mask) and stores it (`store.save_round`), exactly as
   `store.run_cached` does for one run, so caching, resuming after a kill and
   the rows' format do not depend on whether a run was fused.

`fuse=False` trains the same trainings one after another with `training.train`:
the reference path. With `pool` (a `parallel.TrainingPool`, CPU), the round's
trainings of all runs go to its worker processes instead, identical to `fuse=False`
at the pool's thread count (this process takes that count while it runs, so the
store records the numerics the trainings ran under). A fused member matches its
solo training to float rounding, not bit for bit; each stored round is complete in itself (rows, next mask), so a
run resumed in the other mode goes on correctly, only not bitwise as it would have.
A fused member's `wall_seconds` is the time from its group's start to its own stop.

`deadline` (a `time.time()` value) stops before a round that would not end by then,
judged by the last round's seconds per training: the runs stay resumable at their next round.
A run whose round fails (any exception) is closed and reported; the others go on.
A run another process holds is skipped here (the caller reads it when that
process has finished it).
"""
import time
from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lth_core.data import Dataset
from lth_core.imp import IMPConfig, IMPRunner, TrainingJob, round_trainings
from lth_core.runs import store
from lth_core.runs.fused import FusedMember, group_size, train_fused
from lth_core.runs.parallel import TrainingPool
from lth_core.training import TrainResult, train


@dataclass
class _Open:
    cfg: IMPConfig
    runner: IMPRunner
    run: store.OpenRun


def group_key(cfg: IMPConfig, job: TrainingJob) -> tuple:
    """Trainings with equal keys can share one stacked model: same network and masked layers, same
    batch (train() takes min(batch_size, rows) per step), same dataset and test rows."""
    batch = min(cfg.train.batch_size, len(job.train_idx))
    return cfg.network, cfg.prune_bn, batch, cfg.dataset, cfg.test_limit, cfg.split_seed


def remaining_trainings(run: store.OpenRun) -> int:
    return sum(len(round_trainings(run.cfg, r)) for r in range(run.state.round, run.cfg.rounds + 1))


def _train_group(items: list[tuple[_Open, TrainingJob]], fuse: bool, bar) -> list[TrainResult]:
    data = items[0][0].runner.data  # equal group keys: equal test rows, so any member's view serves
    if not fuse:
        out = []
        for _, j in items:
            out.append(train(j.model, data, j.train_idx, j.val_idx, j.cfg, seed=j.seed, snapshot_at=j.snapshot_at,
                             progress=False, desc=j.desc))
            bar.update()
        return out
    members = [FusedMember(model=j.model, train_idx=j.train_idx, val_idx=j.val_idx, cfg=j.cfg, seed=j.seed,
                           snapshot_at=j.snapshot_at, desc=j.desc) for _, j in items]
    results = train_fused(members, data, progress=False)
    bar.update(len(items))
    return results


def run_lockstep(configs: list[IMPConfig], load_data, *, fuse: bool = True, max_group: int | None = None,
                 progress: bool = True, deadline: float | None = None,
                 pool: TrainingPool | None = None) -> dict[str, BaseException]:
    """Bring every run of `configs` to the finished state; {run name: error} of the runs that failed.

    `load_data(dataset_name) -> Dataset` gives each dataset, on the device to train on.
    `max_group` caps the members trained together (default: `fused.group_size` for the device).
    """
    failures: dict[str, BaseException] = {}
    datasets: dict[str, Dataset] = {}
    opened: list[_Open] = []
    threads = torch.get_num_threads()
    if pool is not None:
        torch.set_num_threads(pool.threads)
    try:
        for cfg in configs:
            try:
                if cfg.dataset not in datasets:
                    datasets[cfg.dataset] = load_data(cfg.dataset)
                runner = IMPRunner(cfg, datasets[cfg.dataset], progress=False)
                run = store.open_run(cfg, runner, wait=False)
            except Exception as e:
                failures[store.run_name(cfg)] = e
                continue
            if run is None:  # another process computes it
                continue
            if run.finished:
                store.finish_run(run)
                run.close()
            else:
                opened.append(_Open(cfg, runner, run))
        bar = tqdm(total=sum(remaining_trainings(o.run) for o in opened), desc="trainings", unit="training",
                   disable=not progress)
        per_training = 0.0  # seconds per training in the last round: the next round's estimate
        while opened:
            trainings = sum(len(round_trainings(o.cfg, o.run.state.round)) for o in opened)
            if deadline is not None and time.time() + per_training * trainings > deadline:
                break
            started = time.time()
            jobs: dict[int, list[TrainingJob]] = {}
            groups: dict[tuple, list[tuple[_Open, TrainingJob]]] = defaultdict(list)
            for o in list(opened):
                try:
                    jobs[id(o)] = o.runner.round_jobs(o.run.state)
                except Exception as e:
                    opened.remove(o)
                    failures[o.run.dir.name] = e
                    o.run.close()
                    continue
                for j in jobs[id(o)]:
                    groups[group_key(o.cfg, j)].append((o, j))
            results: dict[int, TrainResult] = {}
            if pool is not None:  # every training of the round at once: workers take the next as they free
                pairs = [pair for items in groups.values() for pair in items]
                outcomes = pool.train([(o.runner, j) for o, j in pairs], on_done=bar.update)
                for (o, job), out in zip(pairs, outcomes):
                    if isinstance(out, BaseException):
                        failures.setdefault(o.run.dir.name, out)
                    else:
                        results[id(job)] = out
                groups = {}
            for key, items in groups.items():
                size = max_group or group_size(key[0], items[0][0].runner.device, key[2])
                for start in range(0, len(items), size):
                    chunk = items[start:start + size]
                    try:
                        for (_, job), res in zip(chunk, _train_group(chunk, fuse, bar)):
                            results[id(job)] = res
                    except Exception as e:  # every run with a training in this chunk has lost its round
                        for o, _ in chunk:
                            failures.setdefault(o.run.dir.name, e)
            for o in list(opened):
                name = o.run.dir.name
                try:
                    if name in failures:
                        raise failures[name]
                    round_jobs = jobs[id(o)]
                    state = o.runner.finish_round(o.run.state, round_jobs, [results[id(j)] for j in round_jobs])
                    store.save_round(o.run, state)
                    if o.run.finished:
                        store.finish_run(o.run)
                    else:
                        continue
                except Exception as e:
                    failures.setdefault(name, e)
                opened.remove(o)
                o.run.close()
            per_training = (time.time() - started) / trainings
        bar.close()
    finally:
        for o in opened:  # interrupted: release the locks; finished rounds are stored
            o.run.close()
        torch.set_num_threads(threads)
    return failures
