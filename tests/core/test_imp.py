import dataclasses

import pytest
import torch

from conftest import run_in_memory, synthetic_dataset
from lth_core.config import IMPConfig, TrainConfig, paper_config
from lth_core.imp import IMPRunner, make_splits, planned_remaining_pct
from lth_core.models import prunable_weights
from lth_core.training import train
from lth_core.runs.lockstep import solo_round

TINY = TrainConfig(iterations=30, batch_size=50, eval_every=10)


def _cfg(**kw):
    return IMPConfig(**{"network": "lenet_300_100", "rounds": 2, "train": TINY, "val_size": 200, **kw})


def test_reset_restores_every_surviving_parameter_exactly():
    runner = IMPRunner(_cfg(), synthetic_dataset(), progress=False)
    s0 = runner.initial_state()
    s1 = solo_round(runner, s0)
    model = runner.reset(runner.new_model(123), s1.init_state, s1.masks)
    state = model.state_dict()
    for key, init in s0.init_state.items():
        if key in s1.masks:
            mask = s1.masks[key]
            assert torch.equal(state[key][mask], init[mask]) and torch.all(state[key][~mask] == 0)
        elif not key.endswith(".weight_mask"):  # biases included
            assert torch.equal(state[key], init), key
    # and the trained checkpoint had moved away from init (the reset did something)
    assert not torch.equal(s1.checkpoint["fc1.bias"], s0.init_state["fc1.bias"])


def test_rows_and_remaining_fractions_follow_the_rates():
    cfg = _cfg(retrain_on=("half2",), find_on="half1", controls=("reinit", "random_prune"))
    state = run_in_memory(IMPRunner(cfg, synthetic_dataset(), progress=False))
    rows = state.rows
    assert [(r["round"], r["kind"], r["trained_on"]) for r in rows] == [
        (0, "ticket", "half1"), (0, "ticket", "half2"),
        (1, "ticket", "half1"), (1, "ticket", "half2"), (1, "reinit", "half2"), (1, "random_prune", "half2"),
        (2, "ticket", "half1"), (2, "ticket", "half2"), (2, "reinit", "half2"), (2, "random_prune", "half2")]
    for r in rows:
        assert r["pct_remaining[fc1.weight]"] == pytest.approx(100 * 0.8 ** r["round"], abs=0.01)
        assert r["pct_remaining[fc3.weight]"] == pytest.approx(100 * 0.9 ** r["round"], abs=0.1)
        assert r["found_on"] == "half1" and 0 < r["es_iteration"] <= 30


def test_a_globally_pruned_run_keeps_the_planned_share_and_the_output_layer_at_its_own_rate():
    cfg = _cfg(pruning="global", controls=("random_prune",))
    rows = run_in_memory(IMPRunner(cfg, synthetic_dataset(), progress=False)).rows
    tickets = [r for r in rows if r["kind"] == "ticket"]
    assert [r["pct_remaining"] for r in tickets] == pytest.approx(planned_remaining_pct(cfg), abs=1e-9)
    for r in tickets:
        assert r["pct_remaining[fc3.weight]"] == pytest.approx(100 * 0.9 ** r["round"], abs=0.1)
    # one threshold over fc1 and fc2 does not leave each at 80% (a layer-wise round would, up to rounding)
    assert tickets[1]["pct_remaining[fc1.weight]"] != pytest.approx(80, abs=0.01)
    control = next(r for r in rows if r["kind"] == "random_prune")  # the control keeps the ticket's per-layer counts
    assert all(control[k] == tickets[1][k] for k in control if k.startswith("pct_remaining"))


def test_controls_have_the_tickets_density_and_a_different_init():
    cfg = _cfg(controls=("reinit", "random_prune"))
    runner = IMPRunner(cfg, synthetic_dataset(), progress=False)
    s1 = solo_round(runner, runner.initial_state())
    ticket = runner.reset(runner.new_model(0), s1.init_state, s1.masks)
    reinit, m_re = runner.control_model("reinit", 1, s1, s1.init_state)
    rand, m_rand = runner.control_model("random_prune", 1, s1, s1.init_state)
    w = lambda m: {n: p.detach() for n, p in prunable_weights(m).items()}
    for n in s1.masks:
        assert torch.equal(m_re[n], s1.masks[n])
        assert int(m_rand[n].sum()) == int(s1.masks[n].sum()) and not torch.equal(m_rand[n], s1.masks[n])
        assert not torch.equal(w(reinit)[n], w(ticket)[n])
        assert torch.all(w(rand)[n][~m_rand[n]] == 0)
        assert torch.equal(w(rand)[n][m_rand[n]], s1.init_state[n][m_rand[n]])


def test_rewind_resets_to_the_state_at_iteration_k():
    data = synthetic_dataset()
    cfg = _cfg(rewind_iteration=10)
    runner = IMPRunner(cfg, data, progress=False)
    s1 = solo_round(runner, runner.initial_state())
    # the same first 10 steps, trained on their own, give the rewind state
    short = runner.reset(runner.new_model(0), s1.init_state, runner.initial_state().masks)
    train(short, runner.data, runner.splits["all"], runner.splits["val"],
          dataclasses.replace(TINY, iterations=10), seed=_seed(cfg), progress=False)
    assert all(torch.equal(s1.rewind_state[k], v) for k, v in short.state_dict().items())
    s2 = solo_round(runner, s1)
    assert s2.rewind_state is s1.rewind_state


def test_patience_never_stops_the_finding_run_before_its_rewind_snapshot():
    # with patience 1 on validation accuracy the finding run stops at iteration 15 on its own (checked below);
    # patience must wait for the snapshot at iteration 25, else every later round would silently reset to init
    cfg = _cfg(rewind_iteration=25, train=dataclasses.replace(TINY, patience=1, eval_every=5, criterion="val_acc"))
    runner = IMPRunner(cfg, synthetic_dataset(), progress=False)
    s1 = solo_round(runner, runner.initial_state())
    assert s1.rows[0]["iterations"] >= 25 and s1.rewind_state is not None
    assert runner.reset_target(s1) is s1.rewind_state
    no_rewind = IMPRunner(_cfg(train=cfg.train), synthetic_dataset(), progress=False)
    assert solo_round(no_rewind, no_rewind.initial_state()).rows[0]["iterations"] < 25  # patience did bite


def test_a_rewind_past_the_epoch_budget_of_the_finding_split_is_refused_before_training():
    # 2 epochs of the 700-row pool at batch 50 is 28 iterations: the config cannot know it, the runner can
    cfg = _cfg(rewind_iteration=50, train=dataclasses.replace(TINY, epochs=2))
    with pytest.raises(ValueError, match="rewind_iteration 50 is past the finding run's budget of 28"):
        IMPRunner(cfg, synthetic_dataset(n_train=900), progress=False)


def test_an_empty_split_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'half1' split has no rows .*train_limit=1"):
        IMPRunner(_cfg(train_limit=1, find_on="half1"), synthetic_dataset(), progress=False)


def test_a_numpy_prune_rate_is_a_plain_float_in_the_config():
    import numpy as np
    cfg = _cfg(prune_rate=np.float64(0.2))
    assert type(cfg.prune_rate) is float and cfg.prune_rate == 0.2
    with pytest.raises(ValueError, match=r"prune_rate = '0.2' is out of range; valid: a fraction in \(0, 1\)"):
        _cfg(prune_rate="0.2")


def _seed(cfg):
    from lth_core.imp import derive_seed
    return derive_seed(cfg.seed, 0, "ticket", cfg.find_on)


def test_splits_are_disjoint_and_sized():
    sp = make_splits(_cfg(subset_percent=10), 900)
    assert len(sp["val"]) == 200 and len(sp["all"]) == 700
    assert len(set(sp["half1"].tolist()) & set(sp["half2"].tolist())) == 0
    assert len(sp["half1"]) + len(sp["half2"]) == 700 and len(sp["subset"]) == 70
    assert not set(sp["val"].tolist()) & set(sp["all"].tolist())


def test_same_config_same_rows():
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]
    a = run_in_memory(IMPRunner(_cfg(), synthetic_dataset(), progress=False)).rows
    b = run_in_memory(IMPRunner(_cfg(), synthetic_dataset(), progress=False)).rows
    assert strip(a) == strip(b)


@pytest.mark.parametrize("bad,match", [({"find_on": "S3"}, "find_on = 'S3' is out of range"),
                                       ({"controls": ("shuffle",)}, "distinct controls from"),
                                       ({"network": "vgg"}, "one of lenet_300_100, conv2, shufflenet"), ({"subset_percent": 0}, "subset_percent"),
                                       ({"rewind_iteration": 99}, "within the training budget"),
                                       ({"pruning": "random"}, "pruning = 'random' is out of range; valid: one of "
                                                               "layerwise, global")])
def test_bad_config_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**bad)


def test_paper_config_has_table1_settings():
    c = paper_config("conv2", rounds=3, iterations=500)
    assert c.train.batch_size == 200 and c.train.lr == 2e-4 and c.prune_rate == 0.2 and c.train.iterations == 500
    s = paper_config("shufflenet")
    assert s.prune_rate == 0.1 and s.train.lr_schedule == "step" and s.train.iterations == 30_000


def test_wrong_dataset_rejected():
    with pytest.raises(ValueError, match="cifar10"):
        IMPRunner(IMPConfig(network="conv2"), synthetic_dataset("mnist"))
