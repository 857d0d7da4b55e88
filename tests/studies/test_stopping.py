"""The stopping-rule study: patience rules replayed on stored full-budget curves (synthetic ones here)."""
import math

import pandas as pd
import pytest

from lth_core.programs import stopping_rule
from lth_core.studies import stopping


def test_replay_stops_like_early_stopping():
    scores = [5, 4, 3, 3.5, 3.6, 3.7, 2, 2.5]
    assert stopping.replay(scores, None) == (6, 7)  # full budget: the overall best
    assert stopping.replay(scores, 3) == (2, 5)  # three evaluations without a better score
    assert stopping.replay(scores, 4) == (6, 7)  # long enough to see the late improvement
    assert stopping.replay([1, 1, 1], 2) == (0, 2)  # equal is not better


def test_under_a_step_schedule_no_stop_comes_before_the_last_drop_and_each_drop_restarts_the_count():
    scores = [5, 4, 4.1, 4.2, 4.3, 4.4, 4.5, 4.6, 4.7, 4.8]  # never better after the second evaluation
    lrs = [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    assert stopping.replay(scores, 2) == (1, 3)  # without the schedule: two evaluations after the best
    # with it: 2 stale evaluations at index 3, but drops lie ahead; the count restarts at 4 and at 7, the last
    # drop; two stale evaluations after it stop at 8
    assert stopping.replay(scores, 2, lrs) == (1, 8)
    assert stopping.replay(scores, 4, lrs) == (1, 9)  # the budget ends first


def test_replay_equals_training_with_patience_under_a_step_schedule():
    """A full-budget training's curve, replayed with patience p, stops where training with patience p stops."""
    import dataclasses

    from conftest import synthetic_dataset
    from lth_core.config import TrainConfig
    from lth_core.data import validation_split
    from lth_core.models import build_model
    from lth_core.pruning import attach_masks
    from lth_core.training import train
    data = synthetic_dataset()
    rows, val = validation_split(len(data.train_y), 200, seed=0)  # 700 rows: 14 iterations per epoch
    full = TrainConfig(iterations=140, batch_size=50, lr=2e-2, eval_every=4, lr_schedule="step", lr_gamma=0.3,
                       lr_step_epochs=3)

    def run(cfg):
        return train(attach_masks(build_model("lenet_300_100", seed=0)), data, rows, val, cfg, seed=1, progress=False)
    curve = run(full).history
    for p in (1, 2, 3):
        stopped = run(dataclasses.replace(full, patience=p))
        kept, stop = stopping.replay([c["val_loss"] for c in curve], p, [c["lr"] for c in curve])
        assert (stopped.es_iteration, stopped.iterations) == (curve[kept]["iteration"], curve[stop]["iteration"])
        assert stopped.iterations > 126  # the last drop comes at iteration 126 (epoch 9)


def _training(run, scores, probes=None, budget=None, test_acc=98.0, eval_every=100):
    its = [eval_every * (i + 1) for i in range(len(scores))]
    probes = probes or {}
    curve = pd.DataFrame({"run": run, "round": 0, "kind": "ticket", "trained_on": "all", "iteration": its,
                          "val_loss": scores, "val_acc": 0.0, "test_acc": [probes.get(i, math.nan) for i in its]})
    best = its[min(range(len(scores)), key=lambda i: (scores[i], i))]
    row = {"run": run, "round": 0, "kind": "ticket", "trained_on": "all", "subset_percent": 100.0,
           "es_iteration": best, "budget": budget or its[-1], "test_acc": test_acc}
    return curve, row


def _study(trainings):
    return (pd.concat([c for c, _ in trainings], ignore_index=True), pd.DataFrame([r for _, r in trainings]))


# a: improves steadily (any patience keeps its checkpoint, none saves anything);
# b: best at 300, then 20 flat evaluations, then a late best at 2,400 (patience <= 20 stops early, at 2,300);
# c: best at 200, then worse until its budget of 5,000 (every patience saves, all keep the checkpoint)
A = _training("a", [10 - 0.1 * i for i in range(30)], test_acc=98.0)
B = _training("b", [5, 4, 3] + [3.5] * 20 + [2.0] + [2.5] * 6, probes={300: 97.0}, test_acc=98.5)
C = _training("c", [5, 1] + [2 + 0.01 * i for i in range(48)], probes={200: 96.0}, test_acc=96.0)


def test_patience_table_counts_reproduced_checkpoints_saved_iterations_and_accuracy():
    curves, rows = _study([A, B, C])
    t = stopping.patience_table(curves, rows, patiences=(10, 20, 30)).set_index("patience")
    assert t.loc[10, "trainings"] == 3
    assert t.loc[10, "es_reproduced"] == pytest.approx(2 / 3) and t.loc[30, "es_reproduced"] == 1.0
    # b stops at 1,300 (10) or 2,300 (20); c stops at 1,200, 2,200 or 3,200 of 5,000
    full = 3000 + 3000 + 5000
    assert t.loc[10, "iterations_saved"] == pytest.approx(1 - (3000 + 1300 + 1200) / full)
    assert t.loc[20, "iterations_saved"] == pytest.approx(1 - (3000 + 2300 + 2200) / full)
    assert t.loc[30, "iterations_saved"] == pytest.approx(1 - (3000 + 3000 + 3200) / full)
    # b's early checkpoint was probed at 97.0 against its final 98.5
    assert t.loc[10, "test_acc_diff_worst"] == pytest.approx(-1.5)
    assert t.loc[10, "test_acc_diff_mean"] == pytest.approx(-0.5)
    assert t.loc[10, "test_acc_reproduced"] == pytest.approx(2 / 3) and t.loc[30, "test_acc_reproduced"] == 1.0
    assert stopping.choose_patience(t.reset_index()) == 30
    assert stopping.choose_patience(t.reset_index(), min_saved=0.5) is None  # saving too little to matter


def test_patience_below_the_probe_has_no_test_accuracy_and_groups_split():
    curves, rows = _study([A, B, C])
    t = stopping.patience_table(curves, rows, patiences=(5,))
    assert math.isnan(t.iloc[0]["test_acc_diff_worst"])  # b's checkpoint at 5 was never probed
    rows.loc[rows["run"] == "c", "trained_on"] = "subset"
    curves.loc[curves["run"] == "c", "trained_on"] = "subset"
    by = stopping.patience_table(curves, rows, patiences=(10,), by=["trained_on"]).set_index("trained_on")
    assert by.loc["subset", "trainings"] == 1 and by.loc["all", "trainings"] == 2


def test_only_full_budget_curves_count_and_a_mismatched_curve_is_refused():
    curves, rows = _study([A, B])
    rows.loc[rows["run"] == "a", "budget"] = 30_000  # a stopped long before its budget: patience was on
    assert stopping.patience_table(curves, rows, patiences=(10,)).iloc[0]["trainings"] == 1
    rows.loc[rows["run"] == "a", "budget"] = 3000
    rows.loc[rows["run"] == "b", "es_iteration"] = 300
    with pytest.raises(ValueError, match="another criterion"):
        stopping.patience_table(curves, rows)
    rows["budget"] = 10**6
    with pytest.raises(ValueError, match="no full-budget training"):
        stopping.patience_table(curves, rows)


def test_the_command_needs_stored_runs():
    with pytest.raises(ValueError, match="none of these runs has a stored round"):
        stopping_rule.main(["--profile", "smoke"])
