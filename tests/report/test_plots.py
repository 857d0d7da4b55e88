"""Figures: the validation-curve figure joins curves to rows and marks early stopping."""
import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lth_core.report.plots import curves_figure  # noqa: E402


def _data(rounds=5, seeds=(0, 1)):
    curves, rows = [], []
    for seed in seeds:
        for r in range(rounds):
            run = f"run{seed}"
            for it in (10, 20, 30):
                curves.append({"run": run, "round": r, "kind": "ticket", "trained_on": "all", "iteration": it,
                               "val_loss": 1.0 / it + r})
            rows.append({"run": run, "round": r, "kind": "ticket", "trained_on": "all", "seed": seed,
                         "pct_remaining": 100 * 0.8 ** r, "es_iteration": 30, "val_loss": 1 / 30 + r,
                         "subset_percent": 10.0})
    return pd.DataFrame(curves), pd.DataFrame(rows)


def test_curves_figure_draws_a_few_levels_and_the_early_stopping_points():
    curves, rows = _data()
    fig = curves_figure(curves, rows, levels=3)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels[:3] == ["100% left", "64% left", "41% left"] and "early stopping" in labels  # rounds 0, 2, 4
    points = ax.collections[-1].get_offsets()
    assert len(points) == 3 * 2  # one per level and seed


def test_curves_figure_panels_and_missing_curves():
    curves, rows = _data()
    assert len(curves_figure(curves, rows, panel="subset_percent").axes) == 1
    with pytest.raises(ValueError, match="no stored curves"):
        curves_figure(curves.iloc[0:0], rows)


def test_budget_bound_early_stops_are_crossed_under_their_budget_line():
    from lth_core.report.plots import BUDGET_BOUND_LABEL, mark_budget_bound, new_figure
    rows = pd.DataFrame({"pct_remaining": [100.0, 80.0, 64.0], "es_iteration": [950, 500, 900],
                         "budget": [1000, 1000, 1000]})
    fig, axes = new_figure(ncols=1)
    ax = axes[0][0]
    mark_budget_bound(ax, rows)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training budget", BUDGET_BOUND_LABEL]
    [crosses] = ax.collections
    assert crosses.get_offsets().tolist() == [[100.0, 950.0]]  # 900 is not past 90% of 1,000
    assert ax.get_ylim() == (0, 1050)
    fig2, axes2 = new_figure(ncols=1)
    mark_budget_bound(axes2[0][0], rows.drop(columns="budget"))  # older rows without budgets: nothing drawn
    assert not axes2[0][0].collections and not axes2[0][0].lines


def test_curves_figure_never_averages_two_runs_of_one_seed_into_one_line():
    """Two budget protocols of one seed are two trainings per level: one panel each, or an error naming why."""
    curves, rows = _data(seeds=(0,))
    other = curves.assign(run="run0-epochs", val_loss=curves["val_loss"] + 2)
    both_curves = pd.concat([curves, other])
    both_rows = pd.concat([rows.assign(protocol="iterations"), rows.assign(run="run0-epochs", protocol="epochs")])
    with pytest.raises(ValueError, match=r"several trainings per seed and round.*\['protocol'\]"):
        curves_figure(both_curves, both_rows, panel="subset_percent")
    fig = curves_figure(both_curves, both_rows, panel=["protocol", "subset_percent"])
    assert [ax.get_title() for ax in fig.axes] == ["protocol = iterations, subset_percent = 10.0",
                                                   "protocol = epochs, subset_percent = 10.0"]
    # each panel's lines are its own run's: the epochs panel sits 2 higher
    low, high = (min(line.get_ydata().min() for line in ax.get_lines() if len(line.get_ydata())) for ax in fig.axes)
    assert high == pytest.approx(low + 2)
