"""lth_core.studies.shufflenet: arm configs, winning-ticket bookkeeping, computed sentences, figures."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from lth_core.runs import executors

from lth_core import paths

from lth_core.report.plots import BUDGET_BOUND_LABEL
from lth_core.studies import shufflenet as ss
from lth_core.imp import planned_remaining_pct, trainings_per_run
from conftest import synthetic_dataset

SMALL = dict(iterations=10, rounds=2, eval_every=5, train_limit=100, val_size=50, test_limit=50, batch_size=10)


def rows(arm, accs, es, kind="ticket", seeds=(0,), rate=0.2, label=None, val=None):
    """Synthetic tidy rows of one arm: round r has (1-rate)^r remaining; accs/es per round (mean over seeds)."""
    out = []
    for seed in seeds:
        jitter = 0.5 * (seed - (len(seeds) - 1) / 2)  # seeds straddle the given mean
        for r, (a, e) in enumerate(zip(accs, es)):
            if kind != "ticket" and r == 0:
                continue
            if a is None:
                continue
            out.append({"arm": arm, "arm_label": label or arm, "kind": kind, "seed": seed, "round": r,
                        "pct_remaining": 100.0 * (1 - rate) ** r, "test_acc": a + jitter,
                        "val_acc": (val or a) + jitter, "es_iteration": e})
    return ss.add_pct_pruned(pd.DataFrame(out))


# ---------- configs ----------

def test_study_configs_builds_every_arm_with_its_one_difference():
    arms = ss.study_configs(**SMALL, seeds=[0, 1], rewind_iteration=3)
    assert list(arms) == ["reset", "bn_pruned", "constant_lr", "rewind"]
    assert all(len(c) == 2 and [x.seed for x in c] == [0, 1] for c in arms.values())
    reset, bn, const, rew = (arms[a][0] for a in arms)
    assert reset.network == "shufflenet" and reset.prune_rate == 0.1 and reset.output_rate is None
    assert reset.train.lr == 1e-2 and reset.train.lr_schedule == "step" and reset.train.lr_step_epochs == 10
    assert reset.train.batch_size == 10 and reset.train.iterations == 10 and reset.train_limit == 100
    assert reset.controls == ("reinit",) and not reset.prune_bn and reset.rewind_iteration is None
    assert bn.prune_bn and bn.controls == () and bn.train == reset.train
    assert const.train.lr == 2e-4 and const.train.lr_schedule == "constant" and not const.prune_bn
    assert rew.rewind_iteration == 3 and rew.train == reset.train and not rew.prune_bn
    # arms differ from each other, so the run store keeps them apart
    from lth_core.runs.store import config_hash
    assert len({config_hash(a[0]) for a in arms.values()}) == 4


def test_study_configs_switches_and_checks():
    arms = ss.study_configs(**SMALL, seeds=[0], reinit_control=False, bn_pruned=False, constant_lr=None,
                            rewind_iteration=None, prune_rate=0.3)
    assert list(arms) == ["reset"]
    assert arms["reset"][0].controls == () and arms["reset"][0].prune_rate == 0.3
    with pytest.raises(ValueError, match="within the training budget"):
        ss.study_configs(**SMALL, seeds=[0], rewind_iteration=11)
    with pytest.raises(ValueError, match="seeds is empty"):
        ss.study_configs(**SMALL, seeds=[])


def test_arm_label_reads_the_config():
    arms = ss.study_configs(**SMALL, seeds=[0], rewind_iteration=4)
    assert ss.arm_label("constant_lr", arms["constant_lr"][0]) == "constant lr 0.0002"
    assert ss.arm_label("rewind", arms["rewind"][0]) == "rewind to iteration 4"
    assert "BN pruned" in ss.arm_label("bn_pruned", arms["bn_pruned"][0])
    assert ss.arm_label("reset", arms["reset"][0]) == "lr 0.01 with x0.1 every 10 epochs; BN kept; reset to init"


# ---------- levels and summary ----------

def test_arm_levels_winning_needs_accuracy_and_no_later_stopping_and_excludes_dense_and_controls():
    df = pd.concat([rows("reset", [80, 80.5, 79.5, 78.0, 75], [500, 400, 600, 300, 200]),
                    rows("reset", [None, 90, 90, 90, 90], [0, 1, 1, 1, 1], kind="reinit")])
    lv = ss.arm_levels(df, "reset", tolerance=1.0)
    assert list(lv["round"]) == [0, 1, 2, 3, 4]
    # round 0 is the reference; round 2 is within tolerance but stops later; 3 and 4 are too inaccurate
    assert list(lv["winning"]) == [False, True, False, False, False]
    assert lv.loc[1, "test_acc"] == pytest.approx(80.5)  # the control's 90s did not leak in
    assert np.allclose(lv["pct_pruned"], 100 - lv["pct_remaining"])


def test_arm_summary_and_linear_fit():
    pruned = 100 - 100 * 0.8 ** np.arange(5)
    linear = list(85 - 0.3 * pruned)  # exactly linear: -3 points per 10% pruned
    df = pd.concat([rows("reset", [80, 80.2, 79.6, 77, 70], [500, 450, 500, 300, 100], seeds=(0, 1)),
                    rows("bn_pruned", linear, [500] * 5, seeds=(0, 1))])
    s = ss.arm_summary(df, tolerance=1.0).set_index("arm")
    assert list(s.index) == ["reset", "bn_pruned"]
    r = s.loc["reset"]
    assert r["seeds"] == 2 and r["levels"] == 5
    assert r["dense_test_acc"] == pytest.approx(80) and r["dense_es_iteration"] == 500
    assert r["winning_levels"] == 2 and r["sparsest_winning_pct_pruned"] == pytest.approx(36.0)
    assert r["winning_pct_pruned"] == "20.0, 36.0"
    assert r["within_tolerance_until_pct_pruned"] == pytest.approx(36.0)
    assert r["sparsest_test_acc"] == pytest.approx(70)
    b = s.loc["bn_pruned"]
    assert b["slope_val_per_10pct_pruned"] == pytest.approx(-3.0) and b["linear_r2_val"] == pytest.approx(1.0)
    # 67.3% at 59% pruned is below 0.8 of the unpruned 85%: the network has collapsed there, out of the fit
    assert b["fit_levels_val"] == 4 and b["dense_val_acc"] == pytest.approx(85)
    assert b["winning_levels"] == 0 and pd.isna(b["sparsest_winning_pct_pruned"])
    assert ss.linear_fit(pd.DataFrame({"pct_pruned": [0.0], "test_acc": [1.0]})) is None


def test_tickets_of_an_absent_arm_is_an_error():
    with pytest.raises(ValueError, match="no ticket rows for arm 'rewind'"):
        ss.tickets(rows("reset", [1, 2], [1, 1]), "rewind")


# ---------- computed sentences ----------

@pytest.mark.parametrize("reset, rewind, want", [
    (None, None, "neither"), (20.0, None, "only reset"), (None, 20.0, "only late rewinding"),
    (20.0, 20.0, "same sparsity"), (20.0, 36.0, "late rewinding finds sparser"),
    (48.8, 36.0, "reset to init finds sparser"), (float("nan"), 20.0, "only late rewinding")])
def test_sparser_verdict(reset, rewind, want):
    assert want in ss.sparser_verdict(reset, rewind)


def study_rows():
    return pd.concat([
        rows("reset", [80, 80.5, 80.1, 76], [500, 400, 500, 300], label="lr 0.01 with steps; BN kept; reset to init"),
        rows("reset", [None, 70, 60, 50], [0, 300, 300, 300], kind="reinit"),
        rows("bn_pruned", [80, 77, 74, 71, 68], [500, 500, 400, 400, 400], label="BN pruned"),
        rows("constant_lr", [70, 65, 60, 55], [900, 900, 900, 900], label="constant lr 0.0002"),
        rows("rewind", [80, 80.6, 80.2, 80.0], [500, 400, 450, 480], label="rewind to iteration 5"),
    ])


def test_sentences_state_the_computed_facts():
    df = study_rows()
    s = ss.arm_summary(df, tolerance=1.0)
    top = ss.top_sentence(df, s, 1.0)
    assert "80.00% test accuracy" in top and "winning tickets at 20.0, 36.0% pruned, the sparsest at 36.0% pruned" in top
    assert "within 1 accuracy point of" in top
    assert "up to 48.8% pruned" not in top and "up to 36.0% pruned" in top
    assert "beats its random re-initialisation control (76.00% vs 50.00% at 48.8% pruned)" in top
    bn = ss.bn_sentence(s, 1.0)
    assert "falls by" in bn and "finds no winning ticket" in bn.split("With BN pruned, IMP")[1]
    lr = ss.lr_sentence(s, 1.0)
    assert "with constant lr 0.0002, IMP finds no winning ticket" in lr
    assert "With lr 0.01 with steps, IMP finds winning tickets" in lr
    assert "(80.00% and 70.00% test accuracy)" in lr
    rw = ss.rewind_sentence(s, 1.0)
    assert "late rewinding finds sparser winning tickets" in rw
    assert "80.00% against 76.00%" in rw


def test_sentences_when_nothing_wins_and_an_arm_is_missing():
    df = pd.concat([rows("reset", [80, 70, 60], [500, 400, 400]),
                    rows("reset", [None, 75, 65], [0, 1, 1], kind="reinit")])
    s = ss.arm_summary(df, tolerance=1.0)
    top = ss.top_sentence(df, s, 1.0)
    assert "finds no winning ticket" in top and "at no pruned level" in top
    assert "does not beat its random re-initialisation control (60.00% vs 65.00%" in top
    with pytest.raises(ValueError, match="arm 'rewind' was not run"):
        ss.rewind_sentence(s, 1.0)


# ---------- figure ----------

def test_arm_figure_marks_the_sparsest_winning_ticket():
    df = study_rows()
    fig = ss.arm_figure(df, ["reset"], 1.0, "top", control=True, val_acc=True)
    ax_acc, ax_es = fig.axes[:2]
    vlines = [l for l in ax_acc.lines if len(set(l.get_xdata())) == 1 and l.get_color() == "black"]
    assert [l.get_xdata()[0] for l in vlines] == [pytest.approx(36.0)]
    stars = [c for c in ax_acc.collections if len(c.get_offsets()) == 2]
    assert sorted(np.asarray(stars[0].get_offsets())[:, 0]) == pytest.approx([20.0, 36.0])
    labels = ax_acc.get_legend_handles_labels()[1]
    assert {"ticket (test)", "ticket (validation)", "random re-init", "unpruned", "winning ticket"} <= set(labels)
    assert ax_es.get_ylabel() == "early-stopping iteration"
    fig2 = ss.arm_figure(df, ["reset", "rewind"], 1.0, "rewinding")
    assert len(fig2.axes[0].get_legend_handles_labels()[1]) >= 4


def test_arm_figure_crosses_budget_bound_early_stops():
    df = study_rows().assign(budget=520)  # es 500 and 480 are in the last tenth of 520; 400 and 300 are not
    fig = ss.arm_figure(df, ["reset"], 1.0, "top", control=True)
    ax_es = fig.axes[1]
    crosses = [c for c in ax_es.collections if c.get_label() == BUDGET_BOUND_LABEL]
    bound = df[(df["arm"] == "reset") & (df["es_iteration"] > 0.9 * 520)]
    assert len(crosses) == 1 and sorted(np.asarray(crosses[0].get_offsets())[:, 0]) == pytest.approx(
        sorted(bound["pct_pruned"]))
    assert "training budget" in ax_es.get_legend_handles_labels()[1]


# ---------- the whole pipeline on a synthetic CIFAR-shaped dataset ----------

def test_run_arms_end_to_end_on_synthetic_data(monkeypatch):
    data = synthetic_dataset("cifar10", n_train=160, n_test=40)
    monkeypatch.setattr(executors, "load_dataset", lambda name: data)
    arms = ss.study_configs(iterations=2, rounds=1, eval_every=1, train_limit=40, val_size=20, test_limit=20,
                            batch_size=8, seeds=[0], rewind_iteration=1)
    df = ss.run_arms(arms, device="cpu", progress=False)
    assert set(df["arm"]) == set(ss.ARMS) and df["arm_label"].notna().all()
    assert len(df) == 2 * 4 + 1  # two levels per arm, one control row
    saved = pd.read_csv(paths.tables_dir() / "fig4_shufflenet.csv")
    assert list(saved["arm"]) == list(df["arm"])
    assert (df[df["kind"] == "reinit"]["arm"] == "reset").all() and (df["kind"] == "reinit").sum() == 1
    assert np.allclose(df["pct_pruned"], 100 - df["pct_remaining"])
    r1 = df[df["round"] == 1].set_index(["arm", "kind"])
    bn_col = "pct_remaining[units.0.bn1.weight]"
    assert r1.loc[("bn_pruned", "ticket"), bn_col] == pytest.approx(100 * (1 - round(0.1 * 36) / 36))
    assert pd.isna(r1.loc[("reset", "ticket"), bn_col])  # BN not masked when kept
    assert r1.loc[("reset", "ticket"), "pct_remaining[fc.weight]"] == pytest.approx(100 * (1 - 288 / 5760))
    for arm in ("reset", "bn_pruned"):  # the levels announced before training are the levels reached
        got = df[(df["arm"] == arm) & (df["kind"] == "ticket")].sort_values("round")["pct_pruned"]
        assert list(got) == pytest.approx([100 - p for p in planned_remaining_pct(arms[arm][0])])
    by_arm = df.groupby("arm").first()
    assert by_arm.loc["constant_lr", "lr_schedule"] == "constant" and by_arm.loc["rewind", "rewind_iteration"] == 1
    s = ss.arm_summary(df, tolerance=1.0)
    assert list(s["arm"]) == list(ss.ARMS)
    for sentence in (ss.top_sentence(df, s, 1.0), ss.bn_sentence(s, 1.0), ss.lr_sentence(s, 1.0),
                     ss.rewind_sentence(s, 1.0)):
        assert isinstance(sentence, str) and "nan" not in sentence


def test_planned_levels_trainings_and_scale_sentence():
    arms = ss.study_configs(**SMALL, seeds=[0, 1], rewind_iteration=2)
    levels = [100 - p for p in planned_remaining_pct(arms["reset"][0])]
    assert len(levels) == 3 and levels[0] == 0
    # 946,008 weights: convs lose 10% each round, the 5,760-weight output layer 5%
    convs, fc = 946008 - 5760, 5760
    for r in (1, 2):
        assert levels[r] == pytest.approx(100 * (1 - (0.9 ** r * convs + 0.95 ** r * fc) / 946008), abs=0.01)
    bn_levels = [100 - p for p in planned_remaining_pct(arms["bn_pruned"][0])]
    assert bn_levels[1] != levels[1]  # BN gammas are counted in the pruned fraction
    assert trainings_per_run(arms["reset"][0]) == 3 + 2 and trainings_per_run(arms["rewind"][0]) == 3
    text = ss.scale_sentence(arms, 946008)
    assert "946,008 prunable weights" in text and "28 trainings in all" in text
    assert "10 iterations at batch 10 on 100 training images" in text and "2 seed(s)" in text
    assert "0.0, 10.0, 18.9" in text


def test_one_winning_level_is_stated_in_the_singular():
    df = rows("reset", [80, 80, 70], [500, 400, 400])
    top = ss.top_sentence(df, ss.arm_summary(df, tolerance=0.5), 0.5)
    assert "IMP finds a winning ticket at 20.0% pruned." in top and "within 0.5 accuracy points" in top
    assert "up to 20.0% pruned" in top


def test_claims_table_of_figure_4(tmp_outputs):
    df, arms = study_rows(), ss.study_configs(**SMALL, seeds=[0])
    summary = ss.arm_summary(df, tolerance=1.0)
    c = ss.claims(df, summary, arms, tolerance=1.0).set_index("claim")
    assert set(c["notebook"]) == {"03_shufflenet"} and set(c["verdict"]) <= {"holds", "does not hold", "not judged"}
    floor = c.loc[[k for k in c.index if k.startswith("test accuracy stays above 75%")][0]]
    assert floor["verdict"] == "not judged" and "scaled-down" in floor["why"]


@pytest.mark.parametrize("budget, judged", [(520, False), (5000, True)])
def test_winning_ticket_claims_need_an_unpruned_early_stop_inside_the_budget(tmp_outputs, budget, judged):
    """A winning ticket stops no later than its unpruned network: when that one stopped in the last tenth
    of its budget every level does by construction, so the claims resting on it are not judged."""
    df, arms = study_rows().assign(budget=budget), ss.study_configs(**SMALL, seeds=[0])
    summary = ss.arm_summary(df, tolerance=1.0)
    c = ss.claims(df, summary, arms, tolerance=1.0).set_index("claim")
    for key in ("IMP finds a winning ticket", "a constant lr of 2e-4"):
        row = c.loc[[k for k in c.index if k.startswith(key)][0]]
        assert ("budget-bound" in row["why"]) is not judged
        assert (row["verdict"] != "not judged") is judged
    bn = c.loc[[k for k in c.index if k.startswith("with BN gamma pruned")][0]]
    assert "budget-bound" not in bn["why"]  # accuracy alone: no early-stopping iteration involved


def test_winning_ticket_claims_are_not_judged_before_the_run_reaches_the_papers_sparsity(tmp_outputs):
    """Two rounds at rate 0.1 reach 19% pruned: every level winning there (or none, for the constant lr)
    says nothing about the paper's marked winning ticket at 34.4%, so neither claim may read holds or does not hold."""
    df = pd.concat([rows("reset", [80, 80.2, 80.1], [500, 400, 400], rate=0.1),
                    rows("constant_lr", [70, 65, 60], [500, 500, 500], rate=0.1)])
    arms = ss.study_configs(**SMALL, seeds=[0])
    c = ss.claims(df, ss.arm_summary(df, tolerance=1.0), arms, tolerance=1.0).set_index("claim")
    for key in ("IMP finds a winning ticket", "a constant lr of 2e-4"):
        row = c.loc[[k for k in c.index if k.startswith(key)][0]]
        assert row["verdict"] == "not judged" and "reaches only 19.0% pruned" in row["why"]


def test_a_claim_resting_on_two_networks_names_the_one_that_did_not_learn(tmp_outputs):
    df = pd.concat([rows("reset", [80, 80.5, 80.1, 76], [500, 400, 500, 300]),
                    rows("constant_lr", [12, 11, 11, 10], [900, 900, 900, 900])])
    arms = ss.study_configs(**SMALL, seeds=[0])
    c = ss.claims(df, ss.arm_summary(df, tolerance=1.0), arms, tolerance=1.0).set_index("claim")
    lr = c.loc[[k for k in c.index if k.startswith("a constant lr of 2e-4")][0]]
    assert lr["verdict"] == "not judged"
    assert lr["why"].startswith("the constant-lr arm's unpruned network did not learn (12.0% test accuracy")


def _claim(c, start):
    return c.loc[[k for k in c.index if k.startswith(start)][0]]


def test_changing_a_rule_changes_the_verdict_and_the_rule_shown(tmp_outputs, monkeypatch):
    """The rule column is the text of the rule that decides: replace the rule and both change together."""
    df, arms = study_rows().assign(budget=5000), ss.study_configs(**SMALL, seeds=[0])
    summary = ss.arm_summary(df, tolerance=5.0)  # 48.8% pruned wins
    before = _claim(ss.claims(df, summary, arms, tolerance=5.0).set_index("claim"), "IMP finds a winning ticket")
    assert before["verdict"] == "holds"  # 48.8 >= the paper's marked 34.4
    assert before["rule"] == ("winning_levels > 0 and sparsest_winning_pct_pruned >= "
                              "paper['shufflenet.marked_winning_pct_pruned'], where "
                              "paper['shufflenet.marked_winning_pct_pruned'] = 34.4")
    monkeypatch.setattr(ss, "WINNING_RULE", ss.Rule(
        "sparsest_winning_pct_pruned >= paper['shufflenet.acc_floor_until_pct_pruned']"))
    after = _claim(ss.claims(df, summary, arms, tolerance=5.0).set_index("claim"), "IMP finds a winning ticket")
    assert after["verdict"] == "does not hold"  # 48.8 < 80
    assert after["rule"] == ("sparsest_winning_pct_pruned >= paper['shufflenet.acc_floor_until_pct_pruned'], "
                             "where paper['shufflenet.acc_floor_until_pct_pruned'] = 80")


def test_no_claim_is_judged_on_a_network_far_below_the_papers_accuracy(tmp_outputs):
    """An unpruned ShuffleNet at 21% (the paper's: 80%) learned too little for any claim about its tickets,
    however its curves look: every claim about the run is not judged, naming the paper's accuracy."""
    df = study_rows().assign(budget=5000)
    df["test_acc"] = df["test_acc"] * 21 / 80
    df["val_acc"] = df["val_acc"] * 21 / 80
    summary = ss.arm_summary(df, tolerance=1.0)
    c = ss.claims(df, summary, ss.study_configs(**SMALL, seeds=[0]), tolerance=1.0)
    assert len(c) == 4 and set(c["verdict"]) == {"not judged"}
    assert c["why"].str.startswith("the unpruned network did not learn (21.0% test accuracy; the paper's unpruned "
                                   "network reaches 80% (Figure 4 top)").all()
    # the arms trained as far below the paper are named too
    assert "the BN arm's unpruned network did not learn" in _claim(c.set_index("claim"), "with BN gamma")["why"]


def test_verdicts_on_a_network_that_learned_are_unchanged(tmp_outputs):
    df, arms = study_rows().assign(budget=5000), ss.study_configs(**SMALL, seeds=[0])
    wide = ss.claims(df, ss.arm_summary(df, tolerance=5.0), arms, tolerance=5.0).set_index("claim")
    assert _claim(wide, "IMP finds a winning ticket")["verdict"] == "holds"  # 48.8% pruned wins
    c = ss.claims(df, ss.arm_summary(df, tolerance=1.0), arms, tolerance=1.0).set_index("claim")
    assert _claim(c, "with BN gamma pruned")["verdict"] == "holds"  # 80 down to 68: a straight falling line
    assert _claim(c, "a constant lr of 2e-4")["verdict"] == "holds"  # none at constant lr, some with steps
    assert "scaled-down" in _claim(c, "test accuracy stays above 75%")["why"]
    assert "did not learn" not in " ".join(c["why"])


def test_the_paper_numbers_table_lists_what_the_rules_read():
    t = ss.paper_numbers().set_index("key")
    assert {"shufflenet.winning_pct_pruned", "shufflenet.acc_floor", "shufflenet.acc_floor_until_pct_pruned",
            "shufflenet.dense_test_acc"} <= set(t.index)
    assert t.loc["shufflenet.dense_test_acc", "value"] == 80 and t.loc["shufflenet.dense_test_acc", "where"] == "Figure 4 top"
    assert t.loc["shufflenet.winning_pct_pruned", "where"] == "Section 5"
    assert "40% of the weights are pruned" in t.loc["shufflenet.winning_pct_pruned", "stated_as"]


def test_arm_figure_draws_the_papers_figure_4_panel_against_percent_pruned():
    from lth_core.report.paper import paper_series
    df = study_rows()
    for arms, panel, series in ((["reset"], "top", ["validation acc.", "test acc."]),
                                (["bn_pruned", "reset"], "bottom", ["batch-norm layers pruned too"])):
        if not set(arms) <= set(df["arm"]):
            df = pd.concat([df, df[df["arm"] == "reset"].assign(arm=arms[0])])
        ax_acc, ax_es = ss.arm_figure(df, arms, 1.0, panel, val_acc=True, paper_panel=panel).axes[:2]
        drawn = {c.get_label(): c.lines[0].get_data() for c in ax_acc.containers}
        pts = paper_series("Figure 4", panel)
        labels = [f"paper: {s}" for s in series] if len(series) > 1 else ["paper"]
        assert list(drawn) == labels and ax_es.containers == []  # the unitless "iteration" is not drawn
        for label, s in zip(labels, series):
            mine = pts[pts["series"] == s]
            assert sum(sorted(zip(*drawn[label])), ()) == pytest.approx(sum(sorted(zip(100 - mine["x"], mine["value"])), ()))
        assert set(labels) <= set(ax_acc.get_legend_handles_labels()[1])
    assert ss.arm_figure(df, ["reset"], 1.0, "no paper").axes[0].containers == []
