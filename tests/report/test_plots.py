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
