"""`make curves` (programs/curves.py): one set of full-budget trainings per precision gives the stopping rule and
the float32-against-bf16 agreement at every patience, each replayed value what a training with that patience
gives."""
import dataclasses

import pandas as pd
import pytest

from conftest import synthetic_dataset
from lth_core.runs import lockstep, store
from lth_core.studies.agreement import compare_replayed
from lth_core.studies.stopping import curve_configs, stored

SHRINK = dict(train_limit=300, val_size=100, test_limit=100, eval_every=1, batch_size=30, lr=2e-2)


@pytest.fixture
def data():
    return synthetic_dataset("mnist", n_train=500, n_test=100)


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(tmp_path))
    return tmp_path


def _train(configs, data):
    assert not lockstep.run_lockstep(configs, lambda name: data, progress=False)


def test_curve_configs_are_table1_on_the_full_pool_without_patience_one_run_per_precision():
    f32, bf16 = curve_configs("conv2", 5000, 2, ("float32", "bf16"))
    assert (f32.train.precision, bf16.train.precision) == ("float32", "bf16")
    assert f32.train.patience is None and f32.train.iterations == 5000 and f32.rounds == 2
    assert f32.find_on == "all" and f32.retrain_on == () and f32.controls == ()
    assert (f32.train.lr, f32.train.weight_decay, f32.train.batch_size) == (2e-4, 1e-3, 200)  # Table 1's Conv-2
    assert store.run_name(f32) != store.run_name(bf16)


def test_replayed_agreement_is_what_trainings_with_that_patience_give(data, outputs):
    configs = curve_configs("lenet_300_100", 40, 1, ("float32", "bf16"), **SHRINK)
    _train(configs, data)
    curves, rows = stored(configs)
    per_training, summary = compare_replayed(curves, rows, patience=10)
    assert len(per_training) == 2 and int(summary["trainings"].iloc[0]) == 2  # dense and one pruned level
    # the dense level with patience 10, trained for real in each precision (the pruned level's mask is the same
    # only where the rule keeps the dense early stop, so the dense level is the exact check)
    for precision in ("float32", "bf16"):
        [cfg] = curve_configs("lenet_300_100", 40, 0, (precision,), **SHRINK)
        stopped = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, patience=10))
        _train([stopped], data)
        real = store.finished_rows(stopped).iloc[0]
        replayed = per_training[per_training["round"] == 0].iloc[0]
        assert replayed[f"es_iteration_{precision}"] == real["es_iteration"]
        if not pd.isna(replayed[f"test_acc_{precision}"]):
            assert replayed[f"test_acc_{precision}"] == pytest.approx(real["test_acc"])


def test_the_program_writes_the_rule_the_agreement_per_patience_and_the_figure(data, outputs, monkeypatch, capsys):
    from lth_core.programs import curves
    configs = curve_configs("lenet_300_100", 30, 1, ("bf16", "float32"), **SHRINK)
    monkeypatch.setattr(curves, "curve_configs", lambda *a, **k: configs)
    monkeypatch.setattr(curves, "load_dataset", lambda name, device: data)
    assert curves.main(["--network", "lenet_300_100", "--device", "cpu"]) == 0
    rule = pd.read_csv(outputs / "tables" / "curves_lenet_300_100_stopping_rule.csv")
    assert set(rule["precision"]) == {"all", "float32", "bf16"}
    assert rule.loc[rule["precision"] == "all", "trainings"].eq(4).all()  # 2 levels x 2 precisions
    summary = pd.read_csv(outputs / "tables" / "curves_lenet_300_100_agreement_summary.csv")
    assert list(summary["patience"]) == [10, 20, 30, 50, 70, 100, 150] and summary["trainings"].eq(2).all()
    assert summary["verdict"].str.match("adopted|not adopted: |not judged: ").all()
    assert (outputs / "figures" / "curves_lenet_300_100.png").exists()
    assert "patience chosen from all 4 stored full-budget trainings" in capsys.readouterr().out


def test_with_one_precision_stored_there_is_a_rule_but_no_agreement(data, outputs):
    from lth_core.programs.curves import study
    configs = curve_configs("lenet_300_100", 20, 0, ("bf16",), **SHRINK)
    _train(configs, data)
    out = study(*stored(configs), "lenet_300_100")
    assert "agreement" not in out and set(out["stopping_rule"]["precision"]) == {"all", "bf16"}


def test_an_arm_trained_with_a_patience_is_compared_up_to_it_and_left_out_of_the_rule(data, outputs):
    from lth_core.programs.curves import study
    configs = curve_configs("lenet_300_100", 40, 0, ("bf16", "float32"), patience={"float32": 3}, **SHRINK)
    assert [c.train.patience for c in configs] == [None, 3]
    _train(configs, data)
    curves, rows = stored(configs)
    stopped = rows[rows["precision"] == "float32"].iloc[0]
    assert curves[curves["run"] == stopped["run"]]["iteration"].max() < 40  # it did stop before its budget
    per_training, _ = compare_replayed(curves, rows, patience=3)
    # replayed at its own patience, a stopped training gives its own early stop and accuracy
    assert per_training["es_iteration_float32"].iloc[0] == stopped["es_iteration"]
    assert per_training["test_acc_float32"].iloc[0] == pytest.approx(stopped["test_acc"])
    with pytest.raises(ValueError, match="no float32 training in these rows can be replayed at patience 10"):
        compare_replayed(curves, rows, patience=10)
    out = study(curves, rows, "lenet_300_100")
    assert set(out["stopping_rule"]["precision"]) == {"all", "bf16"}  # the rule reads whole curves only
    assert "agreement" not in out  # PATIENCES start at 10, past this arm's 3


def test_a_bad_patience_entry_stops_with_one_line(outputs, capsys):
    from lth_core.programs import curves
    for entry, message in [("float32=ten", "write PRECISION=P"), ("float16=10", "not among the precisions")]:
        with pytest.raises(SystemExit) as stop:
            curves.main(["--precisions", "bf16", "float32", "--patience", entry])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_both_arms_trained_with_a_patience_give_the_agreement_and_no_rule(data, outputs):
    from lth_core.programs.curves import study
    configs = curve_configs("lenet_300_100", 400, 0, ("bf16", "float32"), patience={"bf16": 10, "float32": 10},
                            **SHRINK)
    _train(configs, data)
    curves, rows = stored(configs)
    assert (rows["es_iteration"] < 390).all()  # both stopped by their patience, before the budget
    out = study(curves, rows, "lenet_300_100")
    assert "stopping_rule" not in out and list(out["agreement_summary"]["patience"]) == [10]
