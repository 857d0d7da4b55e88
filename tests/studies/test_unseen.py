"""lth_core.studies.unseen: Table 1 from the code, the experiment's configuration, and the computed statements."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from conftest import run_in_memory, synthetic_dataset
from lth_core.params.notebook import network_overrides
from lth_core.report.tables import format_count
from lth_core.models import FIGURE_STEM, build_model
from lth_core import config, training
from lth_core.studies import unseen
from lth_core.imp import IMPRunner
from lth_core.report.paper import paper_series
from lth_core.report.plots import save_figure
from lth_core.config import TrainConfig

LEVELS = [100.0, 80.0, 64.0, 51.2]


def _rows(s2, s1=None, reinit=None, random_prune=None, network="lenet_300_100", seeds=(0,), es=None,
          setting="table1"):
    """Synthetic experiment rows of one training setting: one accuracy per level and curve (the same for every
    seed)."""
    s1 = s2 if s1 is None else s1
    out = []
    for seed in seeds:
        for i, level in enumerate(LEVELS[:len(s2)]):
            def add(kind, split, acc):
                out.append({"network": network, "setting": setting, "seed": seed, "round": i, "pct_remaining": level, "kind": kind,
                            "found_on": "half1", "trained_on": split, "test_acc": acc,
                            "es_iteration": (es or [100] * len(s2))[i]})
            add("ticket", "half1", s1[i])
            add("ticket", "half2", s2[i])
            if i > 0 and reinit is not None:
                add("reinit", "half2", reinit[i])
            if i > 0 and random_prune is not None:
                add("random_prune", "half2", random_prune[i])
    return pd.DataFrame(out)


# ---------------------------------------------------------------- Table 1

def test_table1_counts_and_settings_come_from_the_code():
    t = unseen.table1().set_index("network")
    assert t.loc["LeNet-300-100", "prunable_weights"] == 266_200
    assert t.loc["Conv-2", "prunable_weights"] == 4_300_992
    assert t.loc["ShuffleNet", "prunable_weights"] == 946_008
    assert list(t["weights"]) == ["266K", "4.3M", "946K"]  # as Table 1 prints them
    assert list(t["batch_size"]) == [100, 200, 100] and set(t["iterations"]) == {30_000}
    assert list(t["prune_pct_hidden"]) == [20.0, 20.0, 10.0]
    assert list(t["prune_pct_output"]) == [10.0, 10.0, 5.0]
    assert list(t["dataset"]) == ["MNIST", "CIFAR-10", "CIFAR-10"]
    assert t.loc["LeNet-300-100", "fc_layers"] == "784→300, 300→100, 100→10"
    assert t.loc["LeNet-300-100", "convolutions"] == "-"
    assert t.loc["Conv-2", "convolutions"] == "3→64 (3x3), 64→64 (3x3), max-pool 2x2"
    assert t.loc["ShuffleNet", "convolutions"].startswith("49 conv layers")
    assert "16 × 3x3 depthwise" in t.loc["ShuffleNet", "convolutions"]
    assert t.loc["LeNet-300-100", "learning_rate"] == "1e-3, ×0.95 every epoch"
    assert t.loc["Conv-2", "learning_rate"] == "2e-4, constant"
    assert t.loc["ShuffleNet", "learning_rate"] == "1e-2, ×0.1 every 10 epochs"


def test_table1_follows_the_library_settings(monkeypatch):
    """Change the library's settings and the table changes: nothing in it is typed by hand."""
    monkeypatch.setitem(config.PAPER_PRUNE_RATE, "lenet_300_100", 0.3)
    monkeypatch.setitem(config.PAPER_TRAINING, "lenet_300_100", TrainConfig(batch_size=64, iterations=1234))
    row = unseen.table1(["lenet_300_100"]).iloc[0]
    assert (row["prune_pct_hidden"], row["prune_pct_output"]) == pytest.approx((30.0, 15.0))
    assert (row["batch_size"], row["iterations"]) == (64, 1234)


def test_the_optimizer_the_table_names_is_the_one_training_builds():
    data = synthetic_dataset()
    model = build_model("lenet_300_100", seed=0)
    cfg = TrainConfig(iterations=2, batch_size=50, eval_every=1)
    assert isinstance(training.make_optimizer(model, cfg), training.Adam)
    assert set(unseen.table1(["lenet_300_100"])["optimizer"]) == {"Adam"}
    with pytest.raises(ValueError, match="optimizer = 'sgd' is out of range; valid: one of adam"):
        TrainConfig(optimizer="sgd")
    assert data is not None


@pytest.mark.parametrize("n, text", [(266_200, "266K"), (4_300_992, "4.3M"), (946_008, "946K"),
                                     (999, "999"), (1_500, "2K"), (1_000_000, "1.0M")])
def test_format_count(n, text):
    assert format_count(n) == text


def test_format_count_rejects_negative_counts():
    with pytest.raises(ValueError, match="negative"):
        format_count(-1)


# ---------------------------------------------------------------- configuration

def test_unseen_config_finds_on_s1_and_retrains_on_s2_with_controls():
    cfg = unseen.unseen_config("conv2", controls=["reinit", "random_prune"], iterations=7, rounds=3)
    assert (cfg.find_on, cfg.retrain_on, cfg.controls) == ("half1", ("half2",), ("reinit", "random_prune"))
    assert cfg.train.batch_size == 200 and cfg.train.iterations == 7 and cfg.prune_rate == 0.2
    with pytest.raises(ValueError, match="distinct controls from"):
        unseen.unseen_config("conv2", controls=["bogus"])


def test_check_networks_names_the_valid_ones():
    assert unseen.check_networks(("conv2",)) == ["conv2"]
    for bad in (["shufflenet"], ["lenet"], []):
        with pytest.raises(ValueError, match="lenet_300_100"):
            unseen.check_networks(bad)


def test_network_overrides_read_the_prefixed_parameters():
    params = {"lenet_iterations": 11, "lenet_eval_every": 5, "lenet_rounds": 2, "lenet_train_limit": None,
              "lenet_val_size": 50, "lenet_test_limit": 70, "lenet_patience": 4}
    cfg = unseen.unseen_config("lenet_300_100", **network_overrides(params, "lenet_300_100"))
    assert (cfg.train.iterations, cfg.train.eval_every, cfg.rounds, cfg.train.patience) == (11, 5, 2, 4)
    assert (cfg.train_limit, cfg.val_size, cfg.test_limit) == (None, 50, 70)


def test_run_settings_reports_disjoint_halves():
    cfgs = [unseen.unseen_config("lenet_300_100", seed=s, train_limit=301, val_size=100, test_limit=50,
                                 iterations=10, batch_size=50) for s in (0, 1)]
    t = unseen.run_settings(cfgs, sizes={"mnist": (1000, 400)}).iloc[0]
    assert t["seeds"] == [0, 1]
    assert (t["S1_rows"], t["S2_rows"]) in {(150, 151), (151, 150)}
    assert (t["validation_rows"], t["test_rows"]) == (100, 50)
    assert t["epochs_on_S1"] == pytest.approx(3.33)  # 150 rows = 3 batches of 50 per epoch


def test_scale_note_tells_scaled_down_runs_apart():
    full = unseen.unseen_config("lenet_300_100")
    assert config.is_paper_scale(full) and "Table 1's budgets" in unseen.scale_note([full])
    small = unseen.unseen_config("lenet_300_100", iterations=100)
    assert not config.is_paper_scale(small) and "scaled down for LeNet-300-100" in unseen.scale_note([small])
    assert not config.is_paper_scale(unseen.unseen_config("lenet_300_100", train_limit=100))
    # precision is the numerics, not the scale or the setting: a bf16 Conv-2 at Table 1's settings is both
    bf16 = unseen.unseen_config("conv2", precision="bf16", patience=10)
    assert config.is_paper_scale(bf16) and config.setting_of("conv2", bf16.train) == "table1"
    assert unseen.run_settings([bf16], sizes={"cifar10": (50_000, 10_000)}).iloc[0]["precision"] == "bf16"


# ---------------------------------------------------------------- results

def test_label_curves_names_every_curve_and_rejects_foreign_rows():
    d = unseen.label_curves(_rows([98, 98, 97, 90], reinit=[0, 97, 95, 80]))
    assert list(d["curve"].cat.categories) == [unseen.CURVES[k] for k in
                                               [("ticket", "half1"), ("ticket", "half2"), ("reinit", "half2")]]
    assert d["curve"].notna().all()
    bad = _rows([98, 97]).assign(trained_on="all")
    with pytest.raises(ValueError, match="not part of this experiment"):
        unseen.label_curves(bad)


def test_findings_stop_at_the_first_level_out_of_tolerance():
    # S2: 98, 97.5 (in), 96.5 (out with tolerance 1), 97.9 (back in, but after a drop: does not count)
    rows = _rows([98.0, 97.5, 96.5, 97.9], reinit=[0, 97.0, 96.0, 90.0], random_prune=[0, 97.8, 95, 80])
    f = unseen.findings(rows, tolerance=1.0).iloc[0]
    assert f["sparsest_within_tolerance"] == 80.0 and f["pct_pruned_within_tolerance"] == pytest.approx(20.0)
    assert f["compared_at"] == 80.0 and f["compared_within_tolerance"]
    assert f["reinit_lead"] == pytest.approx(0.5) and f["random_prune_lead"] == pytest.approx(-0.3)
    assert pd.isna(f["reinit_lead_low"])  # one seed: no interval
    assert not f["within_tolerance_to_the_end"]
    text = unseen.findings_markdown(unseen.findings(rows, tolerance=1.0))
    assert "80% of weights remaining" in text and "20.0% pruned" in text and "the paper: 80% pruned" in text
    assert "the randomly re-initialised control (97.00%, a lead of +0.50 points)" in text
    assert "the randomly pruned control (97.80%, a lead of -0.30 points)" in text
    assert "from one seed no interval tells a difference from seed noise" in text


def test_findings_with_a_larger_tolerance_and_the_mean_over_seeds():
    a = _rows([98.0, 97.5, 96.5, 95.0], reinit=[0, 97, 96, 94], seeds=(0,))
    b = _rows([96.0, 97.5, 96.5, 95.0], reinit=[0, 97, 97, 94], seeds=(1,))
    rows = pd.concat([a, b], ignore_index=True)  # dense mean 97.0
    f = unseen.findings(rows, tolerance=2.0).iloc[0]
    assert f["seeds"] == 2 and f["dense_S2_acc"] == pytest.approx(97.0)
    assert f["sparsest_within_tolerance"] == 51.2 and f["within_tolerance_to_the_end"]
    assert f["reinit_acc_at"] == pytest.approx(94.0) and f["reinit_lead"] == pytest.approx(1.0)
    assert "sparsest level this run reached" in unseen.findings_markdown(unseen.findings(rows, 2.0))


def test_findings_when_no_pruned_level_is_within_tolerance_and_no_control_ran():
    rows = _rows([98.0, 90.0, 85.0], s1=[98.0, 91.0, 87.0])
    f = unseen.findings(rows, tolerance=1.0).iloc[0]
    assert f["sparsest_within_tolerance"] == 100.0 and not f["compared_within_tolerance"]
    assert f["compared_at"] == 80.0 and "reinit_lead" not in f
    assert f["mean_S2_minus_S1"] == pytest.approx(-1.5)
    text = unseen.findings_markdown(unseen.findings(rows, 1.0))
    assert "Already the first pruned ticket" in text and "No control was run" in text
    assert "by -1.50 points" in text


def test_claims_table_judges_each_network_and_says_why_not():
    # within tolerance only to 20% pruned: the paper's 80% does not hold
    c = unseen.claims(unseen.findings(_rows([98.0, 97.5, 96.5, 97.9], reinit=[0, 97.0, 96.0, 90.0]), 1.0))
    assert list(c["claim"].str.startswith("tickets found on S1")) == [True, True, False]
    main, as_well, control = c.iloc[0], c.iloc[1], c.iloc[2]
    assert as_well["verdict"] == "holds" and as_well["ours"].startswith("+0.00 points over 3 levels")  # S1 = S2 here
    assert as_well["rule"].startswith("s2_minus_s1_high >= -(tolerance + s2_minus_s1_allowance)")
    assert (main["verdict"], main["ours"], main["paper"]) == ("does not hold", "20.0% pruned", "80% pruned")
    assert main["rule"] == ("pct_pruned_within_tolerance >= paper['unseen.pct_pruned.lenet_300_100'], "
                            "where paper['unseen.pct_pruned.lenet_300_100'] = 80") and "one seed" in main["why"]
    assert control["verdict"] == "not judged" and control["rule"] == "reinit_lead_low > 0"
    assert control["why"].startswith("one seed: no interval")
    # within tolerance to the end of a run that stops short of the paper's level: no verdict either way
    short = unseen.claims(unseen.findings(_rows([98.0, 97.5, 97.6]), 1.0)).iloc[0]
    assert short["verdict"] == "not judged" and "short of the paper's 80%" in short["why"]
    # a network far below the paper's unpruned accuracy supports no verdict, however flat its curve
    low = unseen.claims(unseen.findings(_rows([60.0, 60.0, 59.8], reinit=[0, 15.0, 9.5]), 1.0))
    assert list(low["verdict"]) == ["not judged"] * 3
    assert low["why"].str.startswith("the unpruned network did not learn (60.0% test accuracy; the paper's unpruned "
                                     "network reaches 97.9% (Figure 2 top)").all()


def test_s2_against_s1_is_a_mean_gap_over_the_pruned_levels_down_to_the_papers():
    # S2 trails S1 by 0.5, 1.5 and 2.5 points at 80, 64 and 51.2% remaining: a mean of -1.5, outside 1 point
    rows = _rows([98.0, 97.5, 96.5, 95.5], s1=[98.0, 98.0, 98.0, 98.0])
    c = unseen.claims(unseen.findings(rows, 1.0)).set_index("claim")
    as_well = c.loc[[k for k in c.index if k.startswith("tickets found on S1 train on unseen S2")][0]]
    assert as_well["verdict"] == "does not hold" and as_well["ours"].startswith("-1.50 points over 3 levels")
    assert unseen.claims(unseen.findings(rows, 2.0)).iloc[1]["verdict"] == "holds"
    # two seeds one point apart: the upper 95% bound of the mean gap (t with 1 degree of freedom) decides
    two = pd.concat([_rows([98.0, 97.0, 97.0], s1=[98.0, 99.0, 99.0], seeds=(0,)),
                     _rows([98.0, 98.0, 98.0], s1=[98.0, 99.0, 99.0], seeds=(1,))])
    f = unseen.findings(two, 1.0).iloc[0]
    assert f["s2_minus_s1"] == pytest.approx(-1.5) and f["s2_minus_s1_high"] > 0  # 12.7 x 0.5 / sqrt(2) wide
    assert unseen.claims(unseen.findings(two, 1.0)).iloc[1]["verdict"] == "holds"


def test_changing_a_rule_changes_the_verdict_and_the_rule_shown(monkeypatch):
    found = unseen.findings(_rows([98.0, 97.5, 96.5, 97.9], reinit=[0, 97.0, 96.0, 90.0]), 1.0)
    monkeypatch.setitem(unseen.PCT_PRUNED_RULE, "lenet_300_100",
                        unseen.Rule("pct_pruned_within_tolerance >= paper['unseen.pct_pruned.lenet_300_100'] / 8"))
    main = unseen.claims(found).iloc[0]
    assert main["verdict"] == "holds"  # 20.0% >= 80 / 8
    assert main["rule"] == ("pct_pruned_within_tolerance >= paper['unseen.pct_pruned.lenet_300_100'] / 8, "
                            "where paper['unseen.pct_pruned.lenet_300_100'] = 80")


def test_the_paper_numbers_table_lists_what_the_rules_read():
    t = unseen.paper_numbers().set_index("key")
    assert list(t.loc[["unseen.pct_pruned.lenet_300_100", "unseen.pct_pruned.conv2"], "value"]) == [80, 85]
    assert t.loc["conv2.dense_test_acc", "where"] == "Figure 2 bottom" and t.loc["conv2.dense_test_acc", "uncertainty"] > 0
    assert "85% weights are pruned" in t.loc["unseen.pct_pruned.conv2", "stated_as"]


def test_level_table_has_every_curve_per_level():
    rows = _rows([98.0, 97.5, 96.5], s1=[98.5, 98.0, 97.0], reinit=[0, 97.0, 92.0], es=[300, 200, 100])
    t = unseen.level_table(rows, "lenet_300_100", tolerance=1.0)
    assert list(t["pct_remaining"]) == [100.0, 80.0, 64.0]
    assert list(t["pct_pruned"]) == pytest.approx([0.0, 20.0, 36.0])
    assert list(t["S2_within_tolerance"]) == [True, True, False]
    assert t["S2_minus_reinit"].iloc[2] == pytest.approx(4.5) and pd.isna(t["test_acc_reinit"].iloc[0])
    assert list(t["es_iteration_S1"]) == [300, 200, 100]


def test_figure1_draws_both_panels_with_the_papers_axis(tmp_outputs):
    rows = _rows([98.0, 97.5, 96.5, 93.0], reinit=[0, 97, 95, 90], seeds=(0, 1), es=[300, 250, 200, 150])
    fig = unseen.figure1(rows, "lenet_300_100", tolerance=1.0)
    ax_acc, ax_es = fig.axes[:2]
    lo, hi = ax_acc.get_xlim()
    assert ax_acc.get_xscale() == "log" and lo > hi  # 100% on the left
    labels = ax_acc.get_legend_handles_labels()[1]
    assert "unpruned, trained on S2" in labels and "S2 last within tolerance" in labels
    assert {unseen.CURVES[("ticket", "half2")], unseen.CURVES[("reinit", "half2")]} <= set(labels)
    dashed = [ln for ln in ax_acc.get_lines() if ln.get_linestyle() == "--"]
    assert dashed and dashed[0].get_ydata()[0] == pytest.approx(98.0)
    assert ax_es.get_ylabel() == "early-stopping iteration"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend for both panels, below them
    assert "unpruned ± 1 point (tolerance)" in legend and ax_acc.get_legend() is None
    # the paper's Figure 1 top, point for point; the x axis reaches its sparsest point
    paper = paper_series("Figure 1", "top")
    drawn = {c.get_label(): c.lines[0].get_data() for c in ax_acc.containers if c.get_label().startswith("paper")}
    assert set(drawn) == {f"paper: {s}" for s in paper["series"]}
    for series, pts in paper.groupby("series"):
        x, y = drawn[f"paper: {series}"]
        assert sum(sorted(zip(x, y)), ()) == pytest.approx(sum(sorted(zip(pts["x"], pts["value"])), ()))
    assert min(ax_acc.get_xlim()) < paper["x"].min()
    assert {"paper: " + s for s in paper["series"]} <= set(legend)
    assert unseen.figure1(rows.assign(network="shufflenet"), "shufflenet", 1.0).axes[0].containers == []  # no counterpart
    files = save_figure(fig, "fig1_" + FIGURE_STEM["lenet_300_100"])
    assert all(p.exists() and p.stat().st_size > 0 for p in files)
    plt.close(fig)


def test_the_experiment_end_to_end_on_synthetic_data():
    cfg = unseen.unseen_config("lenet_300_100", controls=["reinit", "random_prune"], rounds=2, iterations=20,
                               batch_size=50, eval_every=10, val_size=100, train_limit=600)
    rows = pd.DataFrame(run_in_memory(IMPRunner(cfg, synthetic_dataset(), progress=False)).rows)
    rows["setting"] = "table1"  # one run's rows (the notebook labels them with label_settings)
    d = unseen.label_curves(rows)
    assert d["curve"].value_counts().to_dict() == {unseen.CURVES[("ticket", "half1")]: 3,
                                                   unseen.CURVES[("ticket", "half2")]: 3,
                                                   unseen.CURVES[("reinit", "half2")]: 2,
                                                   unseen.CURVES[("random_prune", "half2")]: 2}
    f = unseen.findings(rows, tolerance=1.0).iloc[0]
    assert f["sparsest_level"] == pytest.approx(rows["pct_remaining"].min())
    assert {"reinit_lead", "random_prune_lead"} <= set(f.index)
    plt.close(unseen.figure1(rows, "lenet_300_100", 1.0))
