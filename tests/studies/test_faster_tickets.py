import pandas as pd
import pytest

from lth_core.studies import faster_tickets as speedup
from lth_core.config import PAPER_TRAINING
from lth_core.report.paper import paper_series

PCT = {0: 100.0, 1: 80.0, 2: 64.0}


def _rows(es=None, acc=None, secs=None, budget=1000, seeds=(0, 1), extra=True):
    """Synthetic rows of a 10%/100% experiment, three rounds; es/acc/secs: {subset: value or {round: value}}."""
    es = es or {10.0: 100, 100.0: 800}
    acc = acc or {10.0: 97.0, 100.0: 97.5}
    secs = secs or {10.0: 2.0, 100.0: 4.0}

    def val(d, s, r):
        v = d[s]
        return v[r] if isinstance(v, dict) else v

    rows = []
    for seed in seeds:
        for r, pct in PCT.items():
            base = {"network": "lenet_300_100", "seed": seed, "round": r, "pct_remaining": pct, "kind": "ticket",
                    "iterations": budget, "budget": budget, "val_acc": 0.0, "test_loss": 0.0}
            # 10%: a finding run on the subset, and a retrain on the full pool
            rows.append({**base, "found_on": "subset", "trained_on": "subset", "subset_percent": 10.0,
                         "es_iteration": val(es, 10.0, r), "test_acc": 50.0, "wall_seconds": val(secs, 10.0, r)})
            rows.append({**base, "found_on": "subset", "trained_on": "all", "subset_percent": 10.0,
                         "es_iteration": 999, "test_acc": val(acc, 10.0, r), "wall_seconds": 99.0})
            # 100%: the finding run is also the training on the full pool
            rows.append({**base, "found_on": "all", "trained_on": "all", "subset_percent": 100.0,
                         "es_iteration": val(es, 100.0, r), "test_acc": val(acc, 100.0, r),
                         "wall_seconds": val(secs, 100.0, r)})
            if extra and r > 0:  # rows other experiments put in a table: must be ignored
                rows.append({**base, "kind": "reinit", "found_on": "subset", "trained_on": "all",
                             "subset_percent": 10.0, "es_iteration": 5, "test_acc": 10.0, "wall_seconds": 1.0})
                rows.append({**base, "found_on": "half1", "trained_on": "half2", "subset_percent": 100.0,
                             "es_iteration": 7, "test_acc": 11.0, "wall_seconds": 1.0})
    return pd.DataFrame(rows)


def _setup():
    return pd.DataFrame([
        {"protocol": "iterations", "network": "lenet_300_100", "subset_percent": 10.0, "finding_set_rows": 500, "batch_size": 100,
         "iterations_per_epoch": 5, "eval_every": 50, "budget": 1000},
        {"protocol": "iterations", "network": "lenet_300_100", "subset_percent": 100.0, "finding_set_rows": 5000, "batch_size": 100,
         "iterations_per_epoch": 50, "eval_every": 50, "budget": 1000}])


def test_subset_percents_are_checked():
    assert speedup.check_subset_percents([100, 4, 10], "n") == [4.0, 10.0, 100.0]
    assert speedup.check_subset_percents([], "n") == []
    for bad in ([10, 40], [0, 100], [10, 150, 100], [10, 10.0, 100], [True, 100], ["10", 100], 10):
        with pytest.raises(ValueError):
            speedup.check_subset_percents(bad, "n")


def test_configs_find_on_the_subset_and_retrain_on_the_full_pool():
    cfgs = speedup.subset_configs("conv2", [100, 10], seeds=[0, 1], iterations=40, rounds=2, train_limit=900)
    assert [(c.seed, c.find_on, c.subset_percent) for c in cfgs] == [
        (0, "subset", 10.0), (1, "subset", 10.0), (0, "all", 100.0), (1, "all", 100.0)]
    assert all(c.retrain_on == ("all",) for c in cfgs)
    assert all(c.train.iterations == 40 and c.rounds == 2 and c.train_limit == 900 for c in cfgs)
    assert cfgs[0].train.lr == PAPER_TRAINING["conv2"].lr and cfgs[0].train.batch_size == 200
    assert cfgs[0].prune_rate == 0.2
    assert speedup.subset_configs("conv2", [], seeds=[0]) == []
    # 10 and 10.0 are the same run (same cache entry); training options reach TrainConfig
    same = speedup.subset_configs("conv2", [10.0, 100.0], seeds=[0, 1], iterations=40, rounds=2, train_limit=900)
    assert same == cfgs
    opts = speedup.subset_configs("lenet_300_100", [10, 100], seeds=[0], patience=3, criterion="val_acc")
    assert all(c.train.patience == 3 and c.train.criterion == "val_acc" for c in opts)


def test_finding_setup_counts_the_epoch_of_each_finding_set():
    cfgs = speedup.subset_configs("lenet_300_100", [10, 100], seeds=[0, 1], train_limit=6000, val_size=1000)
    setup = speedup.finding_setup(cfgs).set_index("subset_percent")
    assert len(setup) == 2  # one row per subset size, not per seed
    assert setup.loc[10.0, "finding_set_rows"] == 600 and setup.loc[10.0, "iterations_per_epoch"] == 6
    assert setup.loc[100.0, "finding_set_rows"] == 6000 and setup.loc[100.0, "iterations_per_epoch"] == 60


def test_finding_and_retrained_rows_pick_the_right_trainings():
    df = _rows()
    find, ret = speedup.finding_rows(df), speedup.retrained_rows(df)
    assert set(zip(find["found_on"], find["trained_on"])) == {("subset", "subset"), ("all", "all")}
    assert set(zip(ret["found_on"], ret["trained_on"])) == {("subset", "all"), ("all", "all")}
    assert (find["kind"] == "ticket").all() and (ret["kind"] == "ticket").all()
    assert len(find) == len(ret) == 2 * 2 * 3  # subsets x seeds x rounds


def test_speedup_table_ratios_costs_and_accuracy_differences():
    es = {10.0: {0: 100, 1: 200, 2: 300}, 100.0: 1000}  # 100% early-stops at the budget's end
    acc = {10.0: {0: 97.5, 1: 97.0, 2: 95.0}, 100.0: 97.5}
    secs = {10.0: 1.0, 100.0: {0: 3.0, 1: 4.0, 2: 5.0}}
    t = speedup.speedup_table(_rows(es, acc, secs), _setup(), tolerance=1.0).set_index("subset_percent")
    assert list(t.index) == [100.0, 10.0]
    s, ref = t.loc[10.0], t.loc[100.0]
    assert s["mean_es_iteration"] == 200 and ref["mean_es_iteration"] == 1000
    assert s["es_speedup"] == pytest.approx(5.0) and ref["es_speedup"] == pytest.approx(1.0)
    assert s["mean_es_epochs"] == pytest.approx(40.0)
    assert s["finding_seconds"] == pytest.approx(3.0) and ref["finding_seconds"] == pytest.approx(12.0)
    assert s["wall_speedup"] == pytest.approx(4.0)
    # the time up to early stopping: 1 s * es / 1000 per round, summed
    assert s["seconds_to_es_est"] == pytest.approx(0.6) and ref["seconds_to_es_est"] == pytest.approx(12.0)
    assert s["budget_bound"] == 0 and ref["budget_bound"] == 1
    assert s["acc_diff_mean"] == pytest.approx((0 - 0.5 - 2.5) / 3) and s["acc_diff_worst"] == pytest.approx(-2.5)
    assert s["levels_within_tolerance"] == 2 and s["levels"] == 3 and s["seeds"] == 2 and s["tolerance"] == 1.0
    assert ref["acc_diff_worst"] == 0 and ref["levels_within_tolerance"] == 3


def test_accuracy_by_level_matches_rounds_and_refuses_mismatched_sparsities():
    lv = speedup.accuracy_by_level(_rows(acc={10.0: {0: 98.0, 1: 97.0, 2: 96.0}, 100.0: 97.0}))
    s = lv[lv["subset_percent"] == 10.0].set_index("round")
    assert list(s["acc_diff_vs_100"]) == pytest.approx([1.0, 0.0, -1.0])
    assert list(s["pct_remaining"]) == [100.0, 80.0, 64.0]
    assert list(s["es_speedup_vs_100"]) == pytest.approx([8.0, 8.0, 8.0])
    pivot = speedup.accuracy_pivot(lv, "lenet_300_100")
    assert list(pivot.columns) == ["100% left", "80% left", "64% left"]
    assert list(pivot.index) == ["s = 100% (full set)", "s = 10%"]
    assert list(pivot.loc["s = 10%"]) == pytest.approx([1.0, 0.0, -1.0])
    df = _rows()
    df.loc[(df["subset_percent"] == 10.0) & (df["round"] == 2), "pct_remaining"] = 60.0
    with pytest.raises(ValueError, match="different sparsities"):
        speedup.accuracy_by_level(df)


def test_a_table_without_the_100_percent_runs_is_refused():
    df = _rows()
    df = df[df["subset_percent"] != 100.0]
    with pytest.raises(ValueError, match="100%"):
        speedup.speedup_table(df, _setup(), 1.0)
    with pytest.raises(ValueError, match="100%"):
        speedup.accuracy_by_level(df)


def _claim(df, tolerance=1.0):
    table = speedup.speedup_table(df, _setup(), tolerance=tolerance)
    got = speedup.claims(df, table)
    assert len(got) == 1 and list(got["notebook"]) == ["02_faster_tickets"]
    return got.iloc[0]


def test_the_claims_table_gives_the_verdict_and_its_rule():
    c = _claim(_rows(es={10.0: 100, 100.0: 900}))
    assert c["verdict"] == "holds" and c["ours"].startswith("9.0x (100 vs 900)")
    assert c["rule"] == ("es_speedup >= paper['faster.speedup'] and acc_gap_high >= -(tolerance + acc_allowance), "
                         "where paper['faster.speedup'] = 7.5") and c["why"] == "mean over 2 seeds"
    assert _claim(_rows(es={10.0: 300, 100.0: 900}))["verdict"] == "does not hold"  # 3.0x
    worse = _rows(es={10.0: 100, 100.0: 900}, acc={10.0: 95.0, 100.0: 97.5})
    assert _claim(worse)["verdict"] == "does not hold" and _claim(worse, tolerance=3.0)["verdict"] == "holds"
    one_seed = _claim(_rows(es={10.0: 100, 100.0: 900}, seeds=(0,)))
    assert one_seed["verdict"] == "holds" and "one seed" in one_seed["why"]


def test_a_budget_and_validation_interval_that_cap_the_ratio_below_the_papers_are_not_judged():
    """1,000 iterations on 100% over validation every 200 on 10%: no run could show more than 5x."""
    rows = _rows(es={10.0: 200, 100.0: 800})
    table = speedup.speedup_table(rows, _setup().assign(eval_every=200), tolerance=1.0)
    c = speedup.claims(rows, table).iloc[0]
    assert c["verdict"] == "not judged" and "cap the ratio at 5.0x, below the paper's 7.5x" in c["why"]
    assert _claim(rows)["verdict"] == "does not hold"  # validation every 50: a cap of 20x, so 4.0x is judged


def test_the_accuracy_gap_is_a_mean_over_the_levels_where_the_100_tickets_have_not_collapsed():
    # 100% tickets collapse at round 2 (10% of their 97.5): that level is left out, the 10% ones' -2 at round 1 kept
    rows = _rows(es={10.0: 100, 100.0: 900}, acc={10.0: {0: 97.5, 1: 95.5, 2: 96.0}, 100.0: {0: 97.5, 1: 97.5, 2: 10.0}})
    t = speedup.speedup_table(rows, _setup(), tolerance=1.0).set_index("subset_percent").loc[10.0]
    assert t["acc_levels"] == 2 and t["acc_gap"] == pytest.approx(-1.0) and t["acc_gap_high"] == pytest.approx(-1.0)
    assert _claim(rows)["verdict"] == "holds" and "mean gap -1.00 points over 2 levels" in _claim(rows)["ours"]


def test_a_budget_bound_reference_or_a_network_at_chance_is_not_judged():
    censored = _claim(_rows(es={10.0: 300, 100.0: 1000}))  # 100% stops at the budget's end: 3.3x is a floor
    assert censored["verdict"] == "not judged" and "lower bound" in censored["why"]
    # budget-bound means the last tenth of the budget: 900 of 1000 is not, 901 is
    assert _claim(_rows(es={10.0: 300, 100.0: 901}))["verdict"] == "not judged"
    assert _claim(_rows(es={10.0: 300, 100.0: 900}))["verdict"] == "does not hold"
    fast = _claim(_rows(es={10.0: 100, 100.0: 1000}))  # a lower bound that already reaches 7.5x decides
    assert fast["verdict"] == "holds"
    upper = _claim(_rows(es={10.0: 960, 100.0: 800}, budget=1000))  # subset runs bound: 0.8x could be lower
    assert upper["verdict"] == "does not hold"
    both = _claim(_rows(es={10.0: 95, 100.0: 1000}).assign(
        budget=lambda d: d["subset_percent"].map({10.0: 100, 100.0: 1000})))
    assert both["verdict"] == "not judged" and "reflects the budgets" in both["why"]
    chance = _claim(_rows(es={10.0: 100, 100.0: 900}, acc={10.0: 11.0, 100.0: 11.0}))
    assert chance["verdict"] == "not judged" and "did not learn (11.0%" in chance["why"]
    low = _claim(_rows(es={10.0: 100, 100.0: 900}, acc={10.0: 70.0, 100.0: 70.0}))  # the paper's: 97.9%
    assert low["verdict"] == "not judged" and "the paper's unpruned network reaches 97.9% (Figure 2 top)" in low["why"]


def test_changing_the_rule_changes_the_verdict_and_the_rule_shown(monkeypatch):
    rows = _rows(es={10.0: 100, 100.0: 900})  # 9.0x
    monkeypatch.setattr(speedup, "SPEEDUP_RULE", speedup.Rule("es_speedup >= 1.5 * paper['faster.speedup']"))
    c = _claim(rows)
    assert c["verdict"] == "does not hold"  # 9.0 < 11.25
    assert c["rule"] == "es_speedup >= 1.5 * paper['faster.speedup'], where paper['faster.speedup'] = 7.5"
    keys = speedup.paper_numbers()["key"].tolist()
    assert keys[0] == "faster.speedup" and {"faster.subset_percent", "faster.es_full.conv2"} <= set(keys)


def test_caveat_and_cost_sentences_use_the_setup():
    table = speedup.speedup_table(_rows(), _setup(), tolerance=1.0)
    caveat = speedup.caveat_sentences(table)
    assert "one epoch is 5 iterations" in caveat and "nor fall below 50" in caveat
    assert "10.0 epochs of the subset" in caveat and "smaller than one batch" not in caveat
    small = _setup().assign(batch_size=[40, 100], iterations_per_epoch=[1, 50])
    caveat = speedup.caveat_sentences(speedup.speedup_table(_rows(), small, tolerance=1.0))
    assert "one epoch is 1 iteration," in caveat and "smaller than one batch of 100" in caveat
    cost = speedup.cost_sentences(table)
    assert "6.0 s on 10%" in cost and "12.0 s on 100%" in cost and "(2.0x)" in cost
    assert "fused" not in cost and set(table["largest_group"]) == {1}  # rows stored without group_size: solo


def test_cost_sentences_say_when_the_seconds_are_shared_by_a_fused_group():
    table = speedup.speedup_table(_rows().assign(group_size=3), _setup(), tolerance=1.0)
    assert set(table["largest_group"]) == {3}
    assert "ran fused, up to 3 at a time" in speedup.cost_sentences(table)


def test_figures_draw_one_line_per_subset_and_save(tmp_outputs):
    from lth_core.report.plots import save_figure
    df = _rows()
    lo, hi = speedup.figure2(df, "lenet_300_100").axes[0].get_ylim()
    assert hi - lo >= 4.0  # accuracies 97.0 and 97.5 are not blown up to fill the axis
    for make, extra, source in ((speedup.figure2, [], "Figure 2"), (speedup.figure3, ["training budget"], "Figure 3")):
        fig = make(df, "lenet_300_100")
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        panel = paper_series(source, "top")  # LeNet is the paper's top panel
        assert labels[:2] == ["s = 100% (full set)", "s = 10%"]
        # the network is said once above the panels; a panel's own title is short enough not to run into the next
        assert fig._suptitle.get_text().startswith("LeNet-300-100") and len(ax.get_title()) <= 45
        assert sorted(labels[2:]) == sorted([f"paper: {s}" for s in set(panel["series"])] + extra)
        drawn = {c.get_label(): c.lines[0].get_data() for c in ax.containers}
        for series, pts in panel.groupby("series"):  # the paper's points, on the same quantity and x
            x, y = drawn[f"paper: {series}"]
            assert sum(sorted(zip(x, y)), ()) == pytest.approx(sum(sorted(zip(pts["x"], pts["value"])), ()))
        assert ax.get_xlim()[0] > ax.get_xlim()[1]  # 100% on the left
        files = save_figure(fig, "fig_test")
        assert all(f.exists() and f.stat().st_size > 0 for f in files)


def test_budget_protocols_give_their_own_configs_budgets_and_claims():
    P = {"faster_protocols": ["iterations", "epochs"], "lenet_budget_epochs": 20.0, "seeds": [0],
         "lenet_patience": None, "faster_criterion": "val_loss", "lenet_subset_percents": [10, 100],
         "conv2_subset_percents": [], "lenet_iterations": 3000, "lenet_rounds": 1, "lenet_eval_every": 10,
         "lenet_train_limit": 6000, "lenet_val_size": 1000, "lenet_test_limit": None}
    P.update({k.replace("lenet", "conv2"): v for k, v in P.items() if k.startswith("lenet_")}, conv2_subset_percents=[])
    cfgs = speedup.configs_from_parameters(P)
    assert [(c.train.epochs, c.subset_percent) for c in cfgs] == [(None, 10.0), (None, 100.0), (20.0, 10.0),
                                                                  (20.0, 100.0)]
    setup = speedup.finding_setup(cfgs).set_index(["protocol", "subset_percent"])["budget"]
    # 20 epochs of 6 and of 60 iterations; the iterations protocol keeps 3,000 for both
    assert setup.to_dict() == {("iterations", 10.0): 3000, ("iterations", 100.0): 3000,
                               ("epochs", 10.0): 120, ("epochs", 100.0): 1200}
    iters = _rows(es={10.0: 100, 100.0: 800}).assign(budget_epochs=float("nan"))
    epochs = _rows(es={10.0: 95, 100.0: 1000}).assign(
        budget_epochs=20.0, budget=lambda d: d["subset_percent"].map({10.0: 100, 100.0: 1000}))
    df = pd.concat([iters, epochs], ignore_index=True)
    setup = pd.concat([_setup(), _setup().assign(protocol="epochs", budget=[100, 1000])], ignore_index=True)
    table = speedup.speedup_table(df, setup, tolerance=1.0)
    assert list(zip(table["protocol"], table["subset_percent"])) == [
        ("iterations", 100.0), ("iterations", 10.0), ("epochs", 100.0), ("epochs", 10.0)]
    es = table.set_index(["protocol", "subset_percent"])["es_speedup"]
    assert es[("iterations", 10.0)] == pytest.approx(8.0) and es[("epochs", 10.0)] == pytest.approx(1000 / 95)
    got = speedup.claims(df, table)
    assert list(got["verdict"]) == ["holds", "not judged"]
    assert "30,000" not in got.iloc[0]["claim"] and "1,000 iterations for every run" in got.iloc[0]["claim"]
    assert "20 epochs of each run's own rows" in got.iloc[1]["claim"]
    text = speedup.protocol_sentences(table)
    assert "the budgets alone differ 10.0x" in text and "a factor of 1.32" in text
    fig = speedup.figure3(df, "lenet_300_100")
    assert len(fig.axes) == 2  # one panel per protocol
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "budget-bound (last tenth of budget)" in labels
    for make in (speedup.figure2, speedup.figure3):  # side by side, nothing of one panel runs into the other's
        fig = make(df.assign(network="conv2"), "conv2")  # the paper's Conv-2 series have the longest labels
        fig.canvas.draw()
        boxes = [ax.get_legend().get_window_extent() for ax in fig.axes]
        assert not boxes[0].overlaps(boxes[1])
        assert fig.axes[0].get_ylabel() and not fig.axes[1].get_ylabel()  # one quantity, named once
    assert len(speedup.accuracy_pivot(speedup.accuracy_by_level(df), "lenet_300_100", "epochs")) == 2
