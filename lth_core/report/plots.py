"""Figures in the paper's style: metrics against percent of weights remaining.

`plot_vs_remaining` draws seaborn lines with a 95% confidence band over seeds on
a log x axis running from 100% on the left down to the sparsest ticket, with
optional reference line (the dense network). `save_figure` writes PNG and PDF
under `outputs/figures/`; `save_table` writes tidy CSV (and Markdown) under
`outputs/tables/`.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FixedLocator, NullLocator

from lth_core import paths

sns.set_theme(style="whitegrid", context="notebook")


def plot_vs_remaining(df: pd.DataFrame, y: str, ax, hue: str | None = None, style: str | None = None,
                      reference: float | None = None, reference_label: str = "unpruned",
                      x: str = "pct_remaining", ylabel: str | None = None, title: str | None = None):
    """Mean of `y` over seeds with a 95% CI band, against percent remaining (log, decreasing)."""
    n_seeds = df["seed"].nunique() if "seed" in df else 1
    sns.lineplot(data=df, x=x, y=y, hue=hue, style=style, ax=ax, marker="o", markersize=4,
                 errorbar=("ci", 95) if n_seeds > 1 else None)
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label=reference_label)
    ax.set_xscale("log")
    levels = sorted(df[x].unique())
    ax.set_xlim(max(levels) * 1.15, min(levels) / 1.15)  # 100% on the left, as in the paper
    if len(levels) <= 8:  # few levels: label each one
        ticks = levels[::-1]
    else:
        ticks = [v for v in (100, 80, 51, 33, 21, 11, 7, 4.4, 2.9, 1.8, 1.2, 0.7, 0.5, 0.3) if
                 min(levels) / 1.15 <= v <= max(levels) * 1.15]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:.3g}" for t in ticks])
    ax.set_xlabel("percent of weights remaining" if x == "pct_remaining" else x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def save_figure(fig, stem: str) -> list[Path]:
    out = paths.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(files[0], dpi=150, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight")
    return files


def save_table(df: pd.DataFrame, stem: str, markdown: bool = False) -> list[Path]:
    out = paths.tables_dir()
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.csv"]
    df.to_csv(files[0], index=False)
    if markdown:
        files.append(out / f"{stem}.md")
        files[1].write_text(df.to_markdown(index=False) + "\n")
    return files


def new_figure(ncols: int = 2, nrows: int = 1, width: float = 5.5, height: float = 4.0):
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
