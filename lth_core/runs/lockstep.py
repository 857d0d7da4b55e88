"""The round driver: every path that computes IMP runs (one training at a time, worker processes,
fused groups, Slurm jobs) advances them here, round by round.

A round of one run is defined once: `_start_round` lists its trainings (`IMPRunner.round_jobs`),
the trainings run, and `_finish_round` makes the next state (`IMPRunner.finish_round`) and stores
it (`store.save_round`). `run_cached(cfg)` reads a finished run, else computes it this way;
`solo_round(runner, state)` is one round in memory, its trainings one at a time.

`run_lockstep(configs, load_data)` opens every unfinished run in the run store
(`store.open_run`: locked, verified, resumed at its first unfinished round),
then repeats until every run has finished:
1. each open run lists its current round's trainings (`IMPRunner.round_jobs`:
   the finding run, retrainings, controls, each with its reset model);
2. the trainings of all runs that can share a stacked model — same network,
   masked layers, batch size, dataset and test rows (`group_key`) — are trained together by
   `fused.train_fused`, in groups of at most `fused.group_size` members (on CUDA, replayed as
   a CUDA graph for the networks where that measured faster: `fused.uses_cuda_graph`; with the
   forward pass that measured fastest per network and device: `fused.fused_layers`);
3. each run finishes its round from its own results (`IMPRunner.finish_round`:
   rows, the next mask) and stores it (`store.save_round`), whichever way it was
   trained, so caching, resuming after a kill and the rows' format do not depend on
   whether a run was fused.

`fuse=False` trains the same trainings one after another with `training.train_job`:
the reference path. With `pool` (a `parallel.TrainingPool`, CPU), the trainings go to
its worker processes instead, identical to `fuse=False` at the pool's thread count
(this process takes that count while it runs, so the store records the numerics the
trainings ran under), and the runs no longer wait for each other (`_run_pooled`): a run
stores its round and queues its next one as soon as its own trainings are back, and a
freed worker takes the queued training with the most work behind it, so that two workers
stay busy until the last run's last round instead of idling at the end of every round. A fused member matches its
solo training to float rounding, not bit for bit; each stored round is complete in itself (rows, next mask), so a
run resumed in the other mode goes on correctly, only not bitwise as it would have.
A fused member's `wall_seconds` is the time from its group's start to its own stop; its row's
`group_size` says how many trainings shared it.

`deadline` (a `time.time()` value) stops before a round that would not end by then,
judged by the last round's seconds per training (with a pool: the mean training's seconds,
per run): the runs stay resumable at their next round.
A run whose round fails (any exception) is closed and reported; the others go on.
A run another process holds is skipped here (the caller reads it when that
process has finished it), or with `wait=True` waited for.
"""
import concurrent.futures
import heapq
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from lth_core.config import IMPConfig
from lth_core.data import Dataset, load_dataset
from lth_core.imp import IMPRunner, IMPState, RoundTraining, round_trainings
from lth_core.runs import store
from lth_core.runs.fused import compiles_step, fused_layers, group_size, train_fused, uses_cuda_graph
from lth_core.runs.parallel import TrainingPool
from lth_core.training import TrainResult, train_job


@dataclass
class _Open:
    cfg: IMPConfig
    runner: IMPRunner
    run: store.OpenRun


def group_key(cfg: IMPConfig, rt: RoundTraining) -> tuple:
    """Trainings with equal keys can share one stacked model: same network and masked layers, same
    batch (train() takes min(batch_size, rows) per step), same dataset and test rows, same precision."""
    batch = min(cfg.train.batch_size, len(rt.job.train_idx))
    return cfg.network, cfg.prune_bn, batch, cfg.dataset, cfg.test_limit, cfg.split_seed, cfg.train.precision


def remaining_trainings(run: store.OpenRun) -> int:
    return sum(len(round_trainings(run.cfg, r)) for r in range(run.state.round, run.cfg.rounds + 1))


def _train_group(items: list[tuple[_Open, RoundTraining]], fuse: bool, bar) -> list[TrainResult]:
    data = items[0][0].runner.data  # equal group keys: equal test rows, so any member's view serves
    progress = items[0][0].runner.progress  # the group's iterations, under the trainings bar
    if not fuse:
        out = []
        for _, rt in items:
            out.append(train_job(rt.job, data, progress=progress))
            bar.update()
        return out
    network = items[0][0].cfg.network
    layers, channels_last = fused_layers(network, data.device)
    results = train_fused([rt.job for _, rt in items], data, progress=progress,
                          cuda_graph=uses_cuda_graph(network, data.device), layers=layers, channels_last=channels_last,
                          compile_step=compiles_step(network, data.device))
    bar.update(len(items))
    return results


def _start_round(o: _Open) -> list[RoundTraining]:
    """The trainings of the next round of `o`, each with its reset model."""
    return o.runner.round_jobs(o.run.state)


def _finish_round(o: _Open, jobs: list[RoundTraining], results: list[TrainResult]) -> bool:
    """Store the round of `o` from its trainings' results, marking a finished run done; True when it has finished."""
    store.save_round(o.run, o.runner.finish_round(o.run.state, jobs, results))
    if o.run.finished:
        store.finish_run(o.run)
    return o.run.finished


def solo_round(runner: IMPRunner, state: IMPState) -> IMPState:
    """The state after round `state.round`, its trainings one after another in this process (nothing stored)."""
    jobs = runner.round_jobs(state)
    return runner.finish_round(state, jobs, [train_job(rt.job, runner.data, progress=runner.progress) for rt in jobs])


def _run_pooled(opened: list[_Open], pool: TrainingPool, bar, failures: dict, deadline: float | None) -> None:
    """Train `opened` runs to the end on `pool`, each run on its own (module docstring); closes each run
    it is done with and leaves in `opened` only the runs stopped by the deadline."""
    queue: list = []  # (-(work behind the training), submission order, run, job): a max-heap on the work
    rounds: dict[int, tuple[list[RoundTraining], dict[int, TrainResult | None]]] = {}  # run id -> jobs, results
    running: dict[concurrent.futures.Future, tuple[_Open, RoundTraining, float]] = {}
    order, seconds = itertools.count(), []

    def close(o: _Open, error: BaseException | None = None) -> None:
        if error is not None:
            failures.setdefault(o.run.dir.name, error)
        opened.remove(o)
        o.run.close()

    def start_round(o: _Open) -> None:
        n = len(round_trainings(o.cfg, o.run.state.round))
        if deadline is not None and seconds and time.time() + sum(seconds) / len(seconds) * n / pool.workers > deadline:
            return  # stays open: closed (and resumable) with the others when run_lockstep returns
        try:
            jobs = _start_round(o)
        except Exception as e:
            close(o, e)
            return
        rounds[id(o)] = (jobs, {})
        rounds_left = o.cfg.rounds + 1 - o.run.state.round
        for rt in jobs:  # the longest chains first; within one, the longest training
            heapq.heappush(queue, (-(rounds_left * rt.job.cfg.iterations), next(order), o, rt))

    def settle(o: _Open, job: RoundTraining, result: TrainResult | None) -> None:
        jobs, results = rounds[id(o)]
        results[id(job)] = result
        if len(results) < len(jobs):
            return
        del rounds[id(o)]
        if o.run.dir.name in failures:
            close(o)
            return
        try:
            if _finish_round(o, jobs, [results[id(j)] for j in jobs]):
                close(o)
            else:
                start_round(o)
        except Exception as e:
            close(o, e)

    for o in list(opened):
        start_round(o)
    while queue or running:
        while queue and len(running) < pool.workers:
            _, _, o, job = heapq.heappop(queue)
            if o.run.dir.name in failures:  # a sibling training failed: the round is lost anyway
                settle(o, job, None)
                continue
            running[pool.submit(o.runner, job.job)] = (o, job, time.time())
        if not running:
            continue
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
            o, job, started = running.pop(future)
            bar.update()
            if future.exception() is not None:
                failures.setdefault(o.run.dir.name, future.exception())
                settle(o, job, None)
            else:
                seconds.append(time.time() - started)
                settle(o, job, future.result())


def _run_rounds(opened: list[_Open], fuse: bool, max_group: int | None, bar, failures: dict,
                deadline: float | None) -> None:
    """In this process: every open run's round at once, trainings of one network and batch size
    trained together (fused, or one by one with `fuse=False`), round after round. Closes each run
    it is done with and leaves in `opened` only the runs stopped by the deadline."""
    per_training = 0.0  # seconds per training in the last round: the next round's estimate
    while opened:
        trainings = sum(len(round_trainings(o.cfg, o.run.state.round)) for o in opened)
        if deadline is not None and time.time() + per_training * trainings > deadline:
            break
        started = time.time()
        jobs: dict[int, list[RoundTraining]] = {}
        groups: dict[tuple, list[tuple[_Open, RoundTraining]]] = defaultdict(list)
        for o in list(opened):
            try:
                jobs[id(o)] = _start_round(o)
            except Exception as e:
                opened.remove(o)
                failures[o.run.dir.name] = e
                o.run.close()
                continue
            for j in jobs[id(o)]:
                groups[group_key(o.cfg, j)].append((o, j))
        results: dict[int, TrainResult] = {}
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
                if not _finish_round(o, round_jobs, [results[id(j)] for j in round_jobs]):
                    continue
            except Exception as e:
                failures.setdefault(name, e)
            opened.remove(o)
            o.run.close()
        per_training = (time.time() - started) / trainings


def run_lockstep(configs: list[IMPConfig], load_data, *, fuse: bool = True, max_group: int | None = None,
                 progress: bool = True, deadline: float | None = None, pool: TrainingPool | None = None,
                 wait: bool = False, allow_numerics_change: bool = False,
                 repair: bool = False) -> dict[str, BaseException]:
    """Bring every run of `configs` to the finished state; {run name: error} of the runs that failed.

    `load_data(dataset_name) -> Dataset` gives each dataset, on the device to train on.
    `max_group` caps the members trained together (default: `fused.group_size` for the device).
    `wait`: wait for a run another process holds instead of skipping it; `allow_numerics_change`,
    `repair`: see `store.open_run`.
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
                # trainings in this process show their iterations under the trainings bar (a Conv-2 training
                # on a CPU takes minutes); pooled trainings show only the trainings bar
                runner = IMPRunner(cfg, datasets[cfg.dataset], progress=progress)
                run = store.open_run(cfg, runner, wait=wait, allow_numerics_change=allow_numerics_change,
                                     repair=repair)
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
        if pool is not None:
            _run_pooled(opened, pool, bar, failures, deadline)
        else:
            _run_rounds(opened, fuse, max_group, bar, failures, deadline)
        bar.close()
    finally:
        for o in opened:  # interrupted: release the locks; finished rounds are stored
            o.run.close()
        torch.set_num_threads(threads)
    return failures


def run_cached(cfg: IMPConfig, data: Dataset | None = None, device: str | torch.device = "cpu",
               progress: bool = True, *, allow_numerics_change: bool = False, repair: bool = False) -> pd.DataFrame:
    """Rows of run `cfg`: read when finished, else computed (resuming), its trainings one at a time.

    While another process computes the same run, waits for it and returns its rows. `data` (default:
    the run's dataset loaded on `device`); `allow_numerics_change`, `repair`: see `store.open_run`.
    """
    if store.is_done(cfg) and not repair:
        return store.finished_rows(cfg)
    failed = run_lockstep([cfg], lambda name: data if data is not None else load_dataset(name, device=device),
                          fuse=False, progress=progress, wait=True, allow_numerics_change=allow_numerics_change,
                          repair=repair)
    if failed:
        raise failed[store.run_name(cfg)]
    return store.finished_rows(cfg)
