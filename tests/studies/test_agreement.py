"""Fused against solo, float32 against bf16: the comparison of two arms' rows, each arm trained into its own store."""
import dataclasses

import pandas as pd
import pytest

from conftest import synthetic_dataset
from lth_core import paths
from lth_core.config import IMPConfig, TrainConfig
from lth_core.runs import store
from lth_core.params.notebook import BF16_ON_CPU
from lth_core.studies import agreement
from lth_core.studies.agreement import (ADOPT_MAX_POINTS, COMPARISONS, _claim_moves, adoption, compare, measured,
                                        measured_verdicts, sentence, train_both)


def _rows(es, acc):
    return pd.DataFrame({"network": "lenet_300_100", "seed": [0, 0, 1], "round": [0, 1, 0], "kind": "ticket",
                         "trained_on": "S1", "es_iteration": es, "test_acc": acc})


def test_compare_counts_equal_stops_and_accuracy_differences():
    per, summary = compare(_rows([100, 200, 300], [97.0, 96.0, 95.0]), _rows([100, 250, 300], [97.0, 96.6, 95.0]))
    assert list(per["es_equal"]) == [True, False, True]
    s = summary.iloc[0]
    assert s.trainings == 3 and s.es_equal_share == pytest.approx(2 / 3) and s.largest_es_shift == 50
    assert s.mean_difference_points == pytest.approx(-0.2) and s.largest_difference_points == pytest.approx(0.6)
    assert "67%" in sentence(summary) and "-0.20 points" in sentence(summary)
    with pytest.raises(ValueError, match="different trainings"):
        compare(_rows([1, 2, 3], [1, 2, 3]).iloc[:2], _rows([1, 2, 3], [1, 2, 3]))


def _summary(shift, points):
    return pd.DataFrame([{"trainings": 3, "largest_es_shift": shift, "mean_difference_points": points}])


def test_a_faster_precision_is_adopted_within_the_accuracy_limit_the_yardstick_and_the_claims():
    # Conv-2 on a CPU: float32's own early stop moved 500 iterations on AVX2 kernels (the stored yardstick)
    assert measured("conv2", "cpu", "yardstick").iloc[0].largest_es_shift == 500
    assert adoption(_summary(500, ADOPT_MAX_POINTS), "conv2", "cpu") == "adopted"
    moved = adoption(_summary(0, -(ADOPT_MAX_POINTS + 0.01)), "conv2", "cpu")
    assert moved == "not adopted: mean test accuracy moved 0.51 points (at most 0.5)"
    assert adoption(_summary(600, 0.0), "conv2", "cpu") == (
        "not adopted: an early stop moved 600 iterations (float32 on AVX2 kernels moved float32's by at most 500)")
    # the paper's Conv-2 ratio, 4,500 / 500 = 9x, falls under the claim's 7.5x once its 100% early stop moves
    # more than 750 iterations earlier
    assert _claim_moves("conv2", 750) is None
    assert _claim_moves("conv2", 760).endswith("crosses its 7.5x bar at 7.48x when the 100% early stop moves 760 iterations")
    three = adoption(_summary(800, 0.9), "conv2", "cpu")
    assert three.startswith("not adopted: mean test accuracy") and three.count(";") == 2  # every condition named
    # LeNet's paper ratio, 9,000 / 1,200, sits on the 7.5x bar: any shift down crosses it
    assert adoption(_summary(100, 0.0), "lenet_300_100", "cpu").startswith(
        "not adopted: the speed-up claim's ratio at the paper's early stops (9,000 / 1,200 = 7.50x)")


def test_a_precision_is_not_judged_without_accuracies_or_a_yardstick(tmp_path, monkeypatch):
    assert adoption(_summary(0, float("nan")), "conv2", "cpu").startswith("not judged: a checkpoint's test accuracy")
    assert adoption(_summary(0, 0.0), "conv2", "cuda").startswith("not judged: no yardstick for conv2 on cuda")
    # a network no claim reads early stops of (no paper numbers) is judged by the other two conditions
    table = pd.read_csv(agreement.MEASURED_CSV)
    (tmp_path / "measured.csv").write_text(table.assign(network="shufflenet").to_csv(index=False))
    monkeypatch.setattr(agreement, "MEASURED_CSV", tmp_path / "measured.csv")
    assert _claim_moves("shufflenet", 10_000) is None
    assert adoption(_summary(500, 0.0), "shufflenet", "cpu") == "adopted"


def test_the_stored_agreements_adopt_bf16_for_conv2_on_a_cpu_only():
    verdicts = measured_verdicts().set_index("network")
    assert verdicts.loc["conv2", "verdict"] == "adopted"  # 400 iterations against float32's own 500, 0.10 points
    assert (verdicts.loc["conv2", ["largest_es_shift", "yardstick_es_shift"]] == [400, 500]).all()
    assert verdicts.loc["lenet_300_100", "verdict"].startswith("not adopted: the speed-up claim's ratio")
    # the notebooks' precision `auto` picks bf16 exactly where a verdict adopts it
    adopted = {(n, d) for n, d, v in zip(verdicts.index, verdicts["device"], verdicts["verdict"]) if v == "adopted"}
    assert adopted == {(n, "cpu") for n in BF16_ON_CPU}


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
