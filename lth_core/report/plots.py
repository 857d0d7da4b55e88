"""Figures in the paper's style: metrics against percent of weights remaining (or pruned).

- `new_figure(ncols, nrows)`: a grid of axes in the project's seaborn style (set here,
  not on import, so importing lth_core never changes a user's matplotlib settings);
- `line_with_band(ax, df, x, y, ...)`: the one way a metric is drawn: the mean over
  seeds with a 95% confidence band when there are several seeds;
- `plot_vs_remaining`: that line on a log x axis running from 100% on the left
  down to the sparsest ticket, with an optional reference line (the dense network);
- `mark_budget_bound(ax, rows, x)`: on an early-stopping-iteration axis, the budget
  (dotted) and a cross on every budget-bound early stop (`training.budget_bound`), the
  axis up to the budget (or to what else is drawn above it);
- `draw_paper(ax, points, quantities, x)`: the paper's own points of one figure panel
  (`report.paper.paper_series`) as a reference in one style, apart from our curves;
- `place_legend(ax)`: the axes' legend, below the axes when it lists the paper's series
  (inside, it would cover them: they span the whole x range);
- `curves_figure(curves, rows, panel)`: validation loss against iteration for a few
  pruning levels, early-stopping points marked, budget-bound ones crossed (the curves
  the run store keeps);
- `save_figure` writes PNG and PDF under `outputs/figures/`; `show_figure` saves,
  displays (in a notebook) and closes, so every notebook shows figures the same way.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FixedLocator, NullLocator

from lth_core import paths
from lth_core.training import budget_bound

BUDGET_BOUND_LABEL = "budget-bound (last tenth of budget)"
PAPER_MARKERS = ("o", "s", "^", "D", "v")  # one per paper series of a panel, all hollow and black


def line_with_band(ax, df: pd.DataFrame, x: str, y: str, **style):
    """Mean of `y` per `x` over seeds, with a 95% CI band when `df` holds several seeds."""
    n_seeds = df["seed"].nunique() if "seed" in df else 1
    sns.lineplot(data=df, x=x, y=y, ax=ax, marker=style.pop("marker", "o"), markersize=4,
                 errorbar=("ci", 95) if n_seeds > 1 else None, **style)
    return ax


def plot_vs_remaining(df: pd.DataFrame, y: str, ax, hue: str | None = None, style: str | None = None,
                      reference: float | None = None, reference_label: str = "unpruned",
                      x: str = "pct_remaining", ylabel: str | None = None, title: str | None = None,
                      paper: pd.DataFrame | None = None):
    """Mean of `y` over seeds with a 95% CI band, against percent remaining (log, decreasing);
    `paper`: the paper's points of the matching panel, drawn by `draw_paper` (quantity `y`) and
    kept inside the x range."""
    line_with_band(ax, df, x, y, hue=hue, style=style)
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label=reference_label)
    ax.set_xscale("log")
    levels = sorted(df[x].unique())
    with_paper = paper is not None and draw_paper(ax, paper, (y,), x)
    if with_paper:
        shown = paper.loc[paper["quantity"] == y, "x"]
        levels = sorted({*levels, shown.min(), shown.max()})
    ax.set_xlim(max(levels) * 1.15, min(levels) / 1.15)  # 100% on the left, as in the paper
    if len(levels) <= 8 and not with_paper:  # few levels of ours alone: label each one
        ticks = levels[::-1]
    else:  # over more than a decade, every other tick (neighbours would collide)
        every = (100, 80, 51, 33, 21, 11, 7, 4.4, 2.9, 1.8, 1.2, 0.7, 0.5, 0.3)
        ticks = [v for v in (every if max(levels) / min(levels) < 10 else every[::2]) if
                 min(levels) / 1.15 <= v <= max(levels) * 1.15]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:.3g}" for t in ticks])
    ax.set_xlabel("percent of weights remaining" if x == "pct_remaining" else x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    place_legend(ax)
    return ax


def draw_paper(ax, points: pd.DataFrame, quantities=("test_acc",), x: str = "pct_remaining") -> bool:
    """The paper's points (rows of `report.paper.paper_series`) whose quantity is in `quantities`, one
    black dashed line with hollow markers per paper series, error bars the reading uncertainty, labelled
    "paper" ("paper: <series>" when several are drawn); True when something was drawn.

    `x` is the axis: "pct_remaining" as the table stores it, or "pct_pruned" (100 minus it). A series
    whose quantity no axis of ours shows is left out by `quantities`: Figure 4 top's "iteration"
    has no unit in the paper (it shares the accuracy axis, values 20-30), so it is not put on an
    early-stopping-iteration axis. The y limits grow to hold the points (a budget-limited axis too:
    the paper's values may exceed a scaled-down run's budget)."""
    if x not in ("pct_remaining", "pct_pruned"):
        raise ValueError(f"draw_paper: x must be 'pct_remaining' or 'pct_pruned', not {x!r}")
    pts = points[points["quantity"].isin(quantities)]
    series = list(dict.fromkeys(pts["series"]))
    for i, name in enumerate(series):
        s = pts[pts["series"] == name].sort_values("x", ascending=False)
        xs = s["x"] if x == "pct_remaining" else 100 - s["x"]
        ax.errorbar(xs, s["value"], yerr=s["uncertainty"], color="black", ls="--", lw=0.9, elinewidth=0.7,
                    capsize=1.5, marker=PAPER_MARKERS[i % len(PAPER_MARKERS)], ms=4, mfc="none", zorder=4,
                    label="paper" if len(series) == 1 else f"paper: {name}")
    if series:
        lo, hi = ax.get_ylim()
        top, bottom = (pts["value"] + pts["uncertainty"]).max(), (pts["value"] - pts["uncertainty"]).min()
        pad = 0.03 * (max(hi, top) - min(lo, bottom))
        ax.set_ylim(min(lo, bottom - pad), max(hi, top + pad))
    return bool(series)


def mark_budget_bound(ax, rows: pd.DataFrame, x: str = "pct_remaining") -> None:
    """Dotted budget line(s) and a cross at each budget-bound early stop of `rows` (needs `budget`,
    rows stored before budgets were kept have none: nothing is drawn then)."""
    if "budget" not in rows or rows["budget"].isna().all():
        return
    for i, budget in enumerate(sorted(rows["budget"].dropna().unique())):  # early stopping can't be later
        ax.axhline(budget, color="grey", ls=":", lw=1.5, label="training budget" if i == 0 else None)
    bound = rows[budget_bound(rows["es_iteration"], rows["budget"])]
    if len(bound):
        ax.scatter(bound[x], bound["es_iteration"], marker="x", color="black", s=40, zorder=6,
                   label=BUDGET_BOUND_LABEL)
    # the budget bounds our early stops; anything drawn above it (the paper's points) stays in view
    ax.set_ylim(0, max(rows["budget"].max() * 1.05, ax.dataLim.y1 * 1.03))
    place_legend(ax)


def place_legend(ax, fontsize: str = "small") -> None:
    """The legend of `ax` (none without labelled artists): inside the axes, or below them when it lists
    the paper's points: in two columns under a lone axes, in one beside other panels (two columns are
    wider than a panel and run into its neighbour's legend)."""
    labels = ax.get_legend_handles_labels()[1]
    if not labels:
        return
    if any(label.startswith("paper") for label in labels):
        ncol = 2 if len(ax.figure.axes) == 1 else 1
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)
    else:
        ax.legend(fontsize=fontsize)


def curves_figure(curves: pd.DataFrame, rows: pd.DataFrame, panel: str | list[str] | None = None, levels: int = 4,
                  title: str | None = None):
    """Validation loss against iteration, one line per pruning level (mean over seeds, 95% band), the
    early-stopping points marked; one panel per value of `panel` (a rows column, or several: one panel
    per combination), at most `levels` levels spread from dense to the sparsest. `curves` and `rows`
    are the same trainings' (filtered alike); curves join rows on run, round, kind and trained_on.
    A panel must hold one training per seed and round: a line averages seeds, never different runs
    (two budget protocols, say), and a ValueError names the columns that tell them apart."""
    keys = ["run", "round", "kind", "trained_on"]
    extra = [panel] if isinstance(panel, str) else list(panel or [])
    rows = rows.assign(bound=budget_bound(rows["es_iteration"], rows["budget"]) if "budget" in rows else False)
    per_line = rows.groupby([*extra, "seed", "round"], dropna=False)
    if (per_line.size() > 1).any():
        differ = [c for c in ("network", "protocol", "subset_percent", "found_on", "budget")
                  if c in rows and per_line[c].nunique(dropna=False).gt(1).any()]
        raise ValueError(f"curves_figure: a panel holds several trainings per seed and round (different runs); "
                         f"add the columns that tell them apart to `panel` (here: {differ or 'see the rows'})")
    d = curves.merge(rows[keys + ["pct_remaining", "es_iteration", "val_loss", "bound", *extra]]
                     .rename(columns={"val_loss": "es_val_loss"}), on=keys)
    if d.empty:
        raise ValueError("no stored curves for these rows (runs stored before curves were kept have none)")
    rounds = sorted(d["round"].unique())
    keep = sorted({rounds[round(i * (len(rounds) - 1) / max(1, levels - 1))] for i in range(min(levels, len(rounds)))})
    d = d[d["round"].isin(keep)].copy()
    d["level"] = [f"{p:.3g}% left" for p in d["pct_remaining"]]
    order = [f"{p:.3g}% left" for p in sorted(d["pct_remaining"].unique(), reverse=True)]
    panels = list(dict.fromkeys(d[extra].itertuples(index=False, name=None))) if extra else [()]
    fig, axes = new_figure(ncols=len(panels), width=5.0, height=3.8)
    for ax, value in zip(axes[0], panels):
        sub = d[(d[extra] == pd.Series(value, index=extra)).all(axis=1)] if extra else d
        line_with_band(ax, sub, "iteration", "val_loss", hue="level", hue_order=order, marker="")
        es = sub.drop_duplicates(["run", "round"])
        for bound, marker, label in ((False, "v", "early stopping"), (True, "x", BUDGET_BOUND_LABEL)):
            points = es[es["bound"] == bound]
            if len(points):
                ax.scatter(points["es_iteration"], points["es_val_loss"], marker=marker, color="black", s=30,
                           zorder=5, label=label)
        ax.set_ylabel("validation loss")
        ax.set_title(", ".join(f"{c} = {v}" for c, v in zip(extra, value)))
        ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, stem: str) -> list[Path]:
    out = paths.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(files[0], dpi=150, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight")
    return files


def new_figure(ncols: int = 2, nrows: int = 1, width: float = 5.5, height: float = 4.0):
    """(figure, 2-d array of axes) in the project's style."""
    sns.set_theme(style="whitegrid", context="notebook")
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)


def show_figure(fig, stem: str) -> list[Path]:
    """Save `fig` as outputs/figures/<stem>.{png,pdf}, show it once in a notebook, and close it."""
    files = save_figure(fig, stem)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:  # in a notebook or IPython shell
        display(fig)
    plt.close(fig)  # else the inline backend would show it a second time
    return files
