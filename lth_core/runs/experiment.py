"""Experiments: grids of IMP runs, executed through the run store and gathered into one table.

`grid(base, seeds=..., **axes)` expands a base `IMPConfig` over seeds and any
config fields. `run_experiment(name, configs, executor=...)` brings every run to
the finished state (in this process, in worker processes, or as Slurm jobs: see
`executors.py`; finished runs are read, interrupted ones resume) and returns all
rows as one tidy DataFrame (the caller saves what it shows). Each row carries its
run's name and the config fields that experiments vary (learning-rate schedule,
BN pruning, rewinding, budget).
"""
import dataclasses
import itertools

import pandas as pd

from lth_core.runs.executors import execute_runs
from lth_core.imp import IMPConfig


def grid(base: IMPConfig, seeds=(0,), **axes) -> list[IMPConfig]:
    """Every combination of seeds and the given field values."""
    names = list(axes)
    out = []
    for seed in seeds:
        for values in itertools.product(*(axes[n] for n in names)):
            out.append(dataclasses.replace(base, seed=seed, **dict(zip(names, values))))
    return out


def config_columns(cfg: IMPConfig) -> dict:
    """The config fields experiments vary, as columns beside each row."""
    return {"lr": cfg.train.lr, "lr_schedule": cfg.train.lr_schedule, "prune_bn": cfg.prune_bn,
            "rewind_iteration": -1 if cfg.rewind_iteration is None else cfg.rewind_iteration,
            "budget": cfg.train.iterations}


def run_experiment(name: str, configs: list[IMPConfig], device: str = "auto", progress: bool = True,
                   executor: str = "local", executor_options: dict | None = None) -> pd.DataFrame:
    """Finish (or read) every config's run and gather their rows into one table."""
    if not configs:
        raise ValueError(f"experiment {name!r} has no runs: check its seeds and grid parameters")
    frames = execute_runs(configs, device, executor, executor_options, progress=progress)
    table = pd.concat([df.assign(**config_columns(c)) for c, df in zip(configs, frames)], ignore_index=True)
    return table
