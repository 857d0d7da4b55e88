"""Runs on a training pool advance on their own: each run stores its round and queues the next as soon as
its own trainings are back, the longest chain of work goes first, a failing run stops alone, and the rows
are those of the in-process reference. An in-process stand-in for `parallel.TrainingPool` makes the order
of events observable (the real pool's rows are compared with the reference in test_executors.py)."""
import concurrent.futures
import dataclasses

import pandas as pd
import torch

from conftest import synthetic_dataset
from lth_core.config import IMPConfig, TrainConfig
from lth_core.runs import lockstep, store
from lth_core.training import train_job

TINY = IMPConfig(network="lenet_300_100", rounds=1, train=TrainConfig(iterations=20, batch_size=50, eval_every=10),
                 val_size=200)
LONG = dataclasses.replace(TINY, rounds=3, seed=1)  # more rounds: more work behind each of its trainings


class InlinePool:
    """Trains each submitted job at once in this process and logs what was submitted, in order."""
    workers, threads = 2, 1

    def __init__(self, fail_seed: int | None = None):
        self.log, self.fail_seed = [], fail_seed

    def submit(self, runner, job):
        split = job.desc.rsplit(" on ", 1)[1]  # a round's training is described "<network> r<round> <purpose> on <split>"
        self.log.append((runner.cfg.seed, split, len(store.round_numbers(store.run_dir(runner.cfg)))))
        future = concurrent.futures.Future()
        if runner.cfg.seed == self.fail_seed:
            future.set_exception(RuntimeError("this training broke"))
        else:
            future.set_result(train_job(job, runner.data))
        return future


def _rows(configs) -> pd.DataFrame:
    return pd.concat([store.finished_rows(c) for c in configs], ignore_index=True).drop(columns="wall_seconds")


def test_pooled_runs_give_the_reference_rows_and_the_longest_chain_goes_first(tmp_path, monkeypatch):
    configs = [TINY, LONG]
    pool = InlinePool()
    assert lockstep.run_lockstep(configs, synthetic_dataset, pool=pool, progress=False) == {}
    pooled = _rows(configs)
    # the run with more rounds left is served first, and once the short run has finished, the long one
    # goes on alone: it never waited for a round of the other
    assert pool.log[0][0] == LONG.seed
    assert [seed for seed, *_ in pool.log].count(LONG.seed) == sum(
        len(lockstep.round_trainings(LONG, r)) for r in range(LONG.rounds + 1))
    monkeypatch.setenv("LTH_RUNS_DIR", str(tmp_path / "reference"))
    threads = torch.get_num_threads()
    torch.set_num_threads(pool.threads)  # CPU numbers are equal at equal thread counts
    try:
        assert lockstep.run_lockstep(configs, synthetic_dataset, fuse=False, progress=False) == {}
    finally:
        torch.set_num_threads(threads)
    pd.testing.assert_frame_equal(pooled, _rows(configs))


def test_a_failing_run_stops_alone_and_the_others_finish():
    pool = InlinePool(fail_seed=TINY.seed)
    failed = lockstep.run_lockstep([TINY, LONG], synthetic_dataset, pool=pool, progress=False)
    assert list(failed) == [store.run_name(TINY)] and "this training broke" in str(failed[store.run_name(TINY)])
    assert store.is_done(LONG) and not store.is_done(TINY)
    # the broken run's first round was submitted once (no retry inside one call), and nothing after it
    assert [entry for entry in pool.log if entry[0] == TINY.seed] == [
        (TINY.seed, split, 0) for _, split in lockstep.round_trainings(TINY, 0)]


def test_a_deadline_stops_before_a_round_that_cannot_end_in_time():
    import time
    pool = InlinePool()
    failed = lockstep.run_lockstep([LONG], synthetic_dataset, pool=pool, progress=False, deadline=time.time() + 1e-3)
    assert failed == {}
    # the first round starts (there is no estimate yet); the next would not end in time, so the run stops
    # there, stored and resumable
    assert len(store.round_numbers(store.run_dir(LONG))) == 1 and not store.is_done(LONG)
    assert lockstep.run_lockstep([LONG], synthetic_dataset, pool=InlinePool(), progress=False) == {}
    assert store.is_done(LONG)
