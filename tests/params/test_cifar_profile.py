"""The `cifar` profile: Conv-2's Figure 1 (6 rounds) and Figures 2-3 (2 rounds) at Table 1's settings, on a CPU."""
import pandas as pd
import pytest
import yaml

from lth_core import imp, paths
from lth_core.params import notebook
from lth_core.params.profiles import load_profile, profile_notebooks
from lth_core.programs import reproduce
from lth_core.runs.store import run_name
from lth_core.studies import catalog, faster_tickets, unseen

NOTEBOOKS = [unseen.NOTEBOOK, faster_tickets.NOTEBOOK]
ROUNDS = {unseen.NOTEBOOK: 6, faster_tickets.NOTEBOOK: 2}
# Figure 1's run, in training since 2026-12-07 (float32, 6 rounds): `auto` without BF16 hardware must keep its name
FIGURE1_RUN = "conv2-ac9e259e9c15"


@pytest.fixture(autouse=True)
def no_bf16_hardware(monkeypatch):
    """The CPU of the measured run: `auto` resolves to float32 (a test that wants BF16 hardware patches again)."""
    monkeypatch.setattr(notebook, "cpu_has_bf16", lambda: False)


def _configs(notebook):
    P = catalog.notebook_parameters(notebook, load_profile("cifar"))
    return catalog.STUDIES[notebook].configs_from_parameters(P)


def test_it_runs_conv2_alone_in_notebooks_01_and_02():
    assert profile_notebooks("cifar") == NOTEBOOKS
    table = reproduce.estimate("cifar", "cpu")
    assert list(table["notebook"]) == NOTEBOOKS and set(table["network"]) == {"conv2"}
    # Figure 1: S1 and S2 at 7 levels, the re-init control at the 6 pruned ones; Figures 2-3: per protocol and
    # level (3), the 100% run once and the 10% run finding on its subset and retraining on the pool
    assert list(table["trainings"]) == [7 * 2 + 6, 2 * 3 * (1 + 2)]
    # the stopping rule leaves about a fifth of the full budgets (the header comment's ~65,000 steps each)
    assert list(table["expected iterations"]) == [65_000, 65_670]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_training_is_at_table_1s_settings_with_the_measured_rule(notebook):
    configs = _configs(notebook)
    assert configs and all(c.network == "conv2" and c.seed == 0 and c.rounds == ROUNDS[notebook] for c in configs)
    for c in configs:
        assert (c.train_limit, c.val_size, c.test_limit) == (None, 5000, None)
        t = c.train
        assert (t.optimizer, t.lr, t.weight_decay, t.batch_size, t.eval_every) == ("adam", 2e-4, 1e-3, 200, 100)
        assert (t.patience, t.precision) == (10, "float32")  # `auto` without BF16 hardware
        assert t.iterations == 30_000 and t.epochs in (None, 20)
    if notebook == faster_tickets.NOTEBOOK:
        assert {(c.subset_percent, c.train.epochs) for c in configs} == {(s, e) for s in (10.0, 100.0)
                                                                         for e in (None, 20)}
    else:
        assert [c.controls for c in configs] == [("reinit",)]


def test_figure_1_keeps_the_run_in_training_and_trains_bf16_where_the_cpu_has_it(monkeypatch):
    assert [run_name(c) for c in _configs(unseen.NOTEBOOK)] == [FIGURE1_RUN]
    monkeypatch.setattr(notebook, "cpu_has_bf16", lambda: True)
    assert {c.train.precision for nb in NOTEBOOKS for c in _configs(nb)} == {"bf16"}


def test_the_rounds_leave_the_shares_its_comment_states():
    # the paper's Conv-2 rates (fc 20%, conv 10%, output 10%): 80.0% and 64.0% for Figures 2-3, 26.2% for Figure 1
    figure1 = imp.planned_remaining_pct(_configs(unseen.NOTEBOOK)[0])
    assert figure1[-1] == pytest.approx(26.2, abs=0.05)
    assert imp.planned_remaining_pct(_configs(faster_tickets.NOTEBOOK)[0]) == pytest.approx([100, 80, 64], abs=0.05)


def test_its_shape_runs_both_notebooks_for_conv2_alone(shared_data, tmp_path, monkeypatch):
    """The profile at a few steps per training: notebooks 01 and 02 with Conv-2 only, LeNet skipped."""
    values = yaml.safe_load((paths.PARAMS_DIR / "cifar.yaml").read_text())
    values.pop("conv2_budget_epochs")  # 20 epochs of a 10% subset of this tiny pool would be no step
    values.update(conv2_rounds=2, faster_rounds=1,  # deeper Figure 1 than Figures 2-3, as the profile
                  conv2_iterations=4, conv2_eval_every=2, conv2_train_limit=1000, conv2_val_size=200,
                  conv2_test_limit=200)
    (tmp_path / "cifar_tiny.yaml").write_text(yaml.safe_dump(values))
    monkeypatch.setattr(paths, "PARAMS_DIR", tmp_path)
    monkeypatch.setenv("LTH_DATA_DIR", str(shared_data))
    assert reproduce.reproduce("cifar_tiny", device="cpu") == NOTEBOOKS
    folder = reproduce.profile_dir("cifar_tiny")
    made = {p.stem for p in (folder / "figures").glob("*.png")}
    assert {"fig1_conv2_cifar10", "fig2_conv2_cifar10", "fig3_conv2_cifar10"} <= made
    assert not any("lenet" in stem for stem in made)
    claims = pd.read_csv(folder / "tables" / "claims.csv")
    assert set(claims["network"]) == {"conv2"} and set(claims["notebook"]) == set(NOTEBOOKS)
