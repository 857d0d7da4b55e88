"""Experiments: grids over seeds and fields, and the config columns a caller asks for."""
import dataclasses

import pytest

from conftest import synthetic_dataset
from lth_core.config import IMPConfig, TrainConfig
from lth_core.runs.experiment import config_value, grid, run_experiment

TINY = IMPConfig(rounds=0, train=TrainConfig(iterations=4, batch_size=50, eval_every=2), val_size=100)


def test_grid_expands_seeds_and_fields():
    cfgs = grid(TINY, seeds=(0, 1), prune_rate=[0.1, 0.2])
    assert [(c.seed, c.prune_rate) for c in cfgs] == [(0, 0.1), (0, 0.2), (1, 0.1), (1, 0.2)]


def test_config_values_by_dotted_field_and_unknown_ones_refused():
    cfg = dataclasses.replace(TINY, prune_bn=True)
    assert config_value(cfg, "prune_bn") is True and config_value(cfg, "train.iterations") == 4
    for bad in ("budget", "train.nope", "prune_bn.x"):
        with pytest.raises(ValueError, match="unknown config field"):
            config_value(cfg, bad)


def test_rows_carry_the_columns_asked_for(monkeypatch):
    monkeypatch.setattr("lth_core.runs.executors.load_dataset", lambda name: synthetic_dataset(name))
    rows = run_experiment("x", grid(TINY, seeds=(0, 1)), device="cpu", progress=False,
                          columns={"budget": "train.iterations"})
    assert list(rows["budget"]) == [4, 4] and list(rows["seed"]) == [0, 1]
    with pytest.raises(ValueError, match="unknown config field 'train.budget'"):
        run_experiment("x", [TINY], device="cpu", progress=False, columns={"budget": "train.budget"})
