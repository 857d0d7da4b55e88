"""Trainings in worker processes: both cores of a small CPU busy on one round's trainings.

On a CPU a fused step costs about as much as its K solo steps, but two processes at one
torch thread each train about twice as fast as one process at two threads (small matmuls
do not split well across threads). `TrainingPool(workers, threads)` is a spawned pool;
each worker keeps its datasets loaded, and `pool.submit(runner, job)` queues one
training (a `training.TrainingJob` of the run `runner` computes) and returns its future (its `TrainResult`).
`runs/lockstep.py` uses it with `pool=`, submitting trainings as workers free.

A job travels as its model's state (weights and mask buffers), rows, settings and
seed; the worker rebuilds the model and calls `training.train_job` exactly as in process,
so a training gives the same numbers in a worker as in this process at the same
thread count (tested). A custom `loader` (dataset name -> Dataset) must be a
module-level function, for the workers import it by name. A worker ends within a
second of the process that started it (`exit_with_parent`), so a killed job leaves
no training running on its cores.
"""
import concurrent.futures
import multiprocessing
import os
import threading
import time

import torch

from lth_core.data import load_dataset
from lth_core.imp import IMPRunner, limit_test_set
from lth_core.models import build_model
from lth_core.pruning import attach_masks
from lth_core.training import TrainingJob, TrainResult, train_job

_DATASETS: dict = {}  # a worker's loaded datasets, by name
_LOADER = None


def _init(threads: int, loader) -> None:
    global _LOADER
    torch.set_num_threads(threads)
    _LOADER = loader
    exit_with_parent()


def exit_with_parent(every: float = 1.0) -> None:
    """From now on, end this worker process within `every` seconds of the process that started it (killed,
    say): else it would train its current job to the end (a Conv-2 training on a full pool takes half an
    hour) on cores a rerun needs. Its unfinished training is lost either way; finished rounds are stored."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _train_payload(p: dict) -> TrainResult:
    if p["dataset"] not in _DATASETS:
        _DATASETS[p["dataset"]] = (_LOADER or load_dataset)(p["dataset"])
    data = limit_test_set(_DATASETS[p["dataset"]], p["test_limit"], p["split_seed"])
    model = attach_masks(build_model(p["network"], seed=0), include_bn=p["prune_bn"])
    model.load_state_dict(p["state"])
    return train_job(TrainingJob(model, p["train_idx"], p["val_idx"], p["cfg"], p["seed"], p["snapshot_at"], p["desc"]),
                     data)


def payload(runner: IMPRunner, job: TrainingJob) -> dict:
    """What a worker needs to train `job` as `runner` would in this process."""
    cfg = runner.cfg
    return {"dataset": cfg.dataset, "test_limit": cfg.test_limit, "split_seed": cfg.split_seed,
            "network": cfg.network, "prune_bn": cfg.prune_bn,
            "state": {k: v.detach().cpu() for k, v in job.model.state_dict().items()},
            "train_idx": job.train_idx.cpu(), "val_idx": job.val_idx.cpu(), "cfg": job.cfg, "seed": job.seed,
            "snapshot_at": job.snapshot_at, "desc": job.desc}


class TrainingPool:
    """`workers` spawned processes at `threads` torch threads each, training CPU jobs."""

    def __init__(self, workers: int, threads: int = 1, loader=None):
        if workers < 1 or threads < 1:
            raise ValueError(f"a training pool needs workers >= 1 and threads >= 1, got {workers} and {threads}")
        self.workers, self.threads = workers, threads
        ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
        self._pool = concurrent.futures.ProcessPoolExecutor(workers, ctx, _init, (threads, loader))

    def submit(self, runner: IMPRunner, job: TrainingJob) -> concurrent.futures.Future:
        """Queue one training; the future's result is its `TrainResult`."""
        if runner.device.type != "cpu":
            raise ValueError("a TrainingPool trains on the CPU; on a GPU fuse the trainings instead")
        return self._pool.submit(_train_payload, payload(runner, job))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
