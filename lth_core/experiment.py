"""Experiments: grids of IMP runs, executed through the run store and gathered into one table.

`grid(base, seeds=..., **axes)` expands a base `IMPConfig` over seeds and any
config fields. `run_experiment(name, configs)` runs each config through
`store.run_cached` (finished runs are read, interrupted ones resume), shows a
progress bar over runs, and returns all rows as one tidy DataFrame, also saved
as `outputs/tables/<name>.csv`. Each row carries the run's name and the config
fields that experiments vary (learning-rate schedule, BN pruning, rewinding).
`resolve_device("auto")` picks CUDA when present.
"""
import dataclasses
import itertools

import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import load_dataset
from .imp import IMPConfig
from .plots import save_table
from .store import run_cached

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)} (or cuda:N)")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return torch.device(device)


def grid(base: IMPConfig, seeds=(0,), **axes) -> list[IMPConfig]:
    """Every combination of seeds and the given field values; TrainConfig fields go in `train=`."""
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


def run_experiment(name: str, configs: list[IMPConfig], device: str = "auto", progress: bool = True) -> pd.DataFrame:
    """Run (or read) every config in order and gather their rows; saves outputs/tables/<name>.csv."""
    if not configs:
        raise ValueError(f"experiment {name!r} has no runs: check its seeds and grid parameters")
    dev = resolve_device(device)
    datasets = {}
    frames = []
    for cfg in tqdm(configs, desc=f"{name}: runs", disable=not progress):
        if cfg.dataset not in datasets:
            datasets[cfg.dataset] = load_dataset(cfg.dataset, device=dev)
        df = run_cached(cfg, datasets[cfg.dataset], device=dev, progress=progress)
        frames.append(df.assign(**config_columns(cfg)))
    table = pd.concat(frames, ignore_index=True)
    save_table(table, name)
    return table
