"""Fused against solo, float32 against bf16: the comparison of two arms' rows, each arm trained into its own store."""
import dataclasses

import pandas as pd
import pytest

from conftest import synthetic_dataset
from lth_core import paths
from lth_core.config import IMPConfig, TrainConfig
from lth_core.runs import store
from lth_core.studies.agreement import (ADOPT_MAX_POINTS, FUSION_ES_EQUAL_SHARE, COMPARISONS, adoption, compare,
                                        sentence, train_both)


def _rows(es, acc):
    return pd.DataFrame({"network": "lenet_300_100", "seed": [0, 0, 1], "round": [0, 1, 0], "kind": "ticket",
                         "trained_on": "S1", "es_iteration": es, "test_acc": acc})


def test_compare_counts_equal_stops_and_accuracy_differences():
    per, summary = compare(_rows([100, 200, 300], [97.0, 96.0, 95.0]), _rows([100, 250, 300], [97.0, 96.6, 95.0]))
    assert list(per["es_equal"]) == [True, False, True]
    s = summary.iloc[0]
    assert s.trainings == 3 and s.es_equal_share == pytest.approx(2 / 3)
    assert s.mean_difference_points == pytest.approx(-0.2) and s.largest_difference_points == pytest.approx(0.6)
    assert "67%" in sentence(summary) and "-0.20 points" in sentence(summary)
    with pytest.raises(ValueError, match="different trainings"):
        compare(_rows([1, 2, 3], [1, 2, 3]).iloc[:2], _rows([1, 2, 3], [1, 2, 3]))


def _summary(share, points):
    return pd.DataFrame([{"trainings": 3, "es_equal_share": share, "mean_difference_points": points}])


def test_a_faster_precision_is_adopted_only_within_both_limits():
    assert adoption(_summary(1.0, ADOPT_MAX_POINTS)) == "adopted"
    assert adoption(_summary(FUSION_ES_EQUAL_SHARE, -0.1)) == "adopted"
    moved = adoption(_summary(1.0, -(ADOPT_MAX_POINTS + 0.01)))
    assert moved.startswith("not adopted: mean test accuracy moved 0.51 points") and "early stops" not in moved
    # one early stop of three moved: 67% equal, fewer than fused against solo's 76%
    assert adoption(_summary(2 / 3, 0.0)) == ("not adopted: early stops equal in 67% of trainings "
                                              "(fused against solo: 76%)")
    assert adoption(_summary(0.0, 0.9)).count(";") == 1  # both conditions named
    assert adoption(_summary(1.0, float("nan"))).startswith("not judged")


def test_both_modes_train_into_their_own_stores(tmp_path):
    cfg = IMPConfig(network="lenet_300_100", rounds=1, val_size=200,
                    train=TrainConfig(iterations=20, batch_size=50, eval_every=10))
    configs = [dataclasses.replace(cfg, seed=s) for s in (0, 1)]
    rows = train_both(configs, synthetic_dataset, tmp_path, progress=False)
    assert set(rows) == {"fused", "solo"}
    for mode in rows:
        assert len(list((tmp_path / mode).iterdir())) == 2  # one folder per run
    per, summary = compare(rows["fused"], rows["solo"])
    assert summary.iloc[0].trainings == len(rows["solo"]) == len(per)
    assert not paths.runs_dir().exists() or not any(paths.runs_dir().iterdir())  # the user's store untouched


def test_float32_and_bf16_train_the_same_runs_into_their_own_stores_and_compare_side_by_side(tmp_path):
    cfg = IMPConfig(network="lenet_300_100", rounds=1, val_size=200,
                    train=TrainConfig(iterations=20, batch_size=50, eval_every=10))
    rows = train_both([cfg], synthetic_dataset, tmp_path, progress=False, arms=COMPARISONS["precision"])
    assert list(rows) == ["float32", "bf16"]
    assert [p.name for p in (tmp_path / "fused").iterdir()] == [store.run_name(cfg)]  # float32 fused: the fusion arm's
    bf16_run = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="bf16"))
    assert [p.name for p in (tmp_path / "bf16").iterdir()] == [store.run_name(bf16_run)]
    per, summary = compare(rows["float32"], rows["bf16"], names=("float32", "bf16"))
    assert {"es_iteration_float32", "es_iteration_bf16", "test_acc_float32", "test_acc_bf16"} <= set(per.columns)
    assert len(per) == len(rows["bf16"]) == 2  # round 0 and round 1 of the one run
    assert (per["test_acc_difference"] == per["test_acc_float32"] - per["test_acc_bf16"]).all()
    assert "% float32 against " in sentence(summary) and "% bf16 (" in sentence(summary)
