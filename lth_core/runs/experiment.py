"""Experiments: grids of IMP runs, executed through the run store and gathered into one table.

`grid(base, seeds=..., **axes)` expands a base `IMPConfig` over seeds and any
config fields (distinct values on each axis). `run_experiment(name, configs,
executor=...)` brings every run to the finished state (in this process, in
worker processes, or as Slurm jobs: see
`executors.py`; finished runs are read, interrupted ones resume) and returns all
rows as one tidy DataFrame (the caller saves what it shows). Each row carries its
run's name and the config values the caller names in `columns`
({column: dotted config field}, e.g. {"budget": "train.iterations"}): the engine
does not know which ones a study compares. `curves(configs)` gives every
training's stored validation curve as one table.
"""
import dataclasses
import itertools

import pandas as pd

from lth_core.runs import store
from lth_core.runs.progress import StoreProgress
from lth_core.runs.executors import execute_runs
from lth_core.checks import ConfigError
from lth_core.config import IMPConfig


def grid(base: IMPConfig, seeds=(0,), **axes) -> list[IMPConfig]:
    """Every combination of seeds and the given field values (each value checked by its config field's rule
    as its config is made)."""
    for name, values in {"seeds": seeds, **axes}.items():
        _check_axis(name, values)
    names = list(axes)
    out = []
    for seed in seeds:
        for values in itertools.product(*(axes[n] for n in names)):
            out.append(dataclasses.replace(base, seed=seed, **dict(zip(names, values))))
    return out


def _check_axis(name: str, values) -> None:
    """A grid axis lists distinct values: a repeated one would return every row of its runs twice."""
    values = list(values)
    if any(v in values[:i] for i, v in enumerate(values)):  # by ==: axis values may be unhashable (lists)
        raise ConfigError("grid", name, values, "distinct values (a repeated one would repeat its runs' rows)")


def config_value(cfg: IMPConfig, field: str):
    """The value of a dotted config field ("prune_bn", "train.lr"); a clear error for an unknown one."""
    value = cfg
    for part in field.split("."):
        if not dataclasses.is_dataclass(value) or part not in {f.name for f in dataclasses.fields(value)}:
            raise ValueError(f"unknown config field {field!r}; fields are IMPConfig's, and TrainConfig's as "
                             "'train.<field>'")
        value = getattr(value, part)
    return value


def curves(configs: list[IMPConfig]) -> pd.DataFrame:
    """The stored validation curves of every run of `configs` (finished or not) as one tidy table."""
    return pd.concat([store.curves_frame(c) for c in dict.fromkeys(configs)], ignore_index=True)


def run_experiment(name: str, configs: list[IMPConfig], device: str = "auto", progress: bool = True,
                   executor: str = "local", executor_options: dict | None = None,
                   columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Finish (or read) every config's run and gather their rows into one table, with `columns`."""
    if not configs:
        raise ValueError(f"experiment {name!r} has no runs: check its seeds and grid parameters")
    columns = columns or {}
    for field in columns.values():
        config_value(configs[0], field)  # an unknown field fails before any training
    with StoreProgress(configs, desc=name, disable=not progress):  # one bar over every training, from the store
        frames = execute_runs(configs, device, executor, executor_options, progress=False)
    return pd.concat([with_config_columns(df, c, columns) for c, df in zip(configs, frames)], ignore_index=True)


def with_config_columns(df: pd.DataFrame, cfg: IMPConfig, columns: dict[str, str]) -> pd.DataFrame:
    """`df` with each column of `columns` from `cfg`; a column the rows carry themselves (e.g. `budget`,
    which an epoch budget makes per training) is only filled where missing (rows stored before it)."""
    out = df.copy()
    for col, field in columns.items():
        value = config_value(cfg, field)
        out[col] = out[col].fillna(value) if col in out else value
    return out
