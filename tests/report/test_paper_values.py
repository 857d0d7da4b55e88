"""The paper's figure points and Table 1 in report/paper_values.csv: every panel read, values in range,
and `plots.draw_paper` drawing exactly a panel's points."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from lth_core.report.paper import paper_series, paper_value, paper_values
from lth_core.report.plots import draw_paper

PANELS = [(f"Figure {n}", panel) for n in (1, 2, 3, 4) for panel in ("top", "bottom")]
RANGES = {"test_acc": (0, 100), "val_acc": (0, 100), "es_iteration": (0, 30000)}  # Table 1: 30K iterations


def paper_containers(ax):
    """(label, x, y) of each errorbar on `ax` labelled "paper..."."""
    return [(c.get_label(), *c.lines[0].get_data()) for c in ax.containers if c.get_label().startswith("paper")]


@pytest.mark.parametrize("source, panel", PANELS)
def test_every_panel_has_points_in_range(source, panel):
    pts = paper_series(source, panel)
    assert len(pts) >= 10, f"{source} {panel}: no points read"
    assert pts["x"].gt(0).all() and pts["x"].le(100).all()
    assert pts["uncertainty"].gt(0).all()  # a reading is never exact
    for quantity, sub in pts.groupby("quantity"):
        lo, hi = RANGES[quantity]
        assert sub["value"].between(lo, hi).all(), (source, panel, quantity)
    assert not pts.duplicated(["series", "quantity", "x"]).any()  # one reading per plotted point
    assert pts["stated_as"].str.startswith("read off the plot").all()


def test_figure_points_follow_the_papers_curves():
    # the paper's text: LeNet's 100% subset early-stops around 9000 iterations, its 10% subset around 1200
    fig3 = paper_series("Figure 3", "top")
    mean = fig3.groupby("series")["value"].mean()
    assert 8000 < mean["s: 100% - base experiment"] < 11000 and 600 < mean["s: 10%"] < 1500
    # Figure 4 top: the dense ShuffleNet's test accuracy is 80%, the paper's winning-ticket level
    top = paper_series("Figure 4", "top")
    dense = top[(top["series"] == "test acc.") & (top["x"] == 100)]
    assert dense["value"].iloc[0] == pytest.approx(80, abs=0.5)


def test_table1_rows():
    assert paper_value("table1.lenet_300_100.all_weights") == 266_000
    assert paper_value("table1.conv2.batch_size") == 200
    assert {paper_value(f"table1.{n}.iterations") for n in ("lenet_300_100", "conv2", "shufflenet")} == {30000}
    assert paper_value("table1.shufflenet.fc_prune_pct") == 5
    t1 = paper_values()[paper_values()["source"] == "Table 1"]
    assert t1["stated_as"].str.startswith("Table 1, column").all()


def test_draw_paper_draws_each_series_of_a_panel_in_one_style():
    pts = paper_series("Figure 4", "top")
    fig, ax = plt.subplots()
    assert draw_paper(ax, pts, ("test_acc", "val_acc"), x="pct_pruned")
    drawn = paper_containers(ax)
    assert [label for label, _, _ in drawn] == ["paper: validation acc.", "paper: test acc."]  # no "iteration"
    test = pts[pts["series"] == "test acc."].sort_values("x", ascending=False)
    _, x, y = drawn[1]
    assert list(x) == pytest.approx(list(100 - test["x"])) and list(y) == pytest.approx(list(test["value"]))
    assert not draw_paper(ax, pts, ("lr",))  # nothing of that quantity: nothing drawn
    with pytest.raises(ValueError, match="x must be"):
        draw_paper(ax, pts, x="iteration")
    plt.close(fig)
