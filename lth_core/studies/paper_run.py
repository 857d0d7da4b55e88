"""The paper as a run: its figures' points turned into rows of the form our runs give, judged by our rules.

A claim rule earns trust by passing on the paper's own data and failing on data it should fail on. Here the
plotted series of `report/paper_values.csv` become tidy rows (one seed, seed 0; the reading uncertainty of each
point in column `uncertainty`) and go through each study's own findings and claims functions, unchanged:

- `rows(notebook)`: the paper's rows for one notebook's study (Figure 1; Figures 2-3; Figure 4);
- `judge(notebook, rows, tolerance)`: that study's claims table computed from such rows (the paper's, or
  the paper's moved past a threshold, as the tests do to see every rule fail);
- `claims(notebook, tolerance)`: `judge` on the paper's own rows;
- `verdict_line(paper_claims)`: "applied to the paper's own figures, N of N claims hold", from that table.

What the figures do not give is set once here and said where it is set: levels are rounds of the paper's own
prune rate (x = 100 * (1 - rate)**round); every budget is Table 1's 30,000 iterations (the paper's stated
setting; the authors' code ran 20 epochs); the paper states no validation interval, so the speed-up's cap is
not applied to it; LeNet's Figure 1 has no unpruned point, so its unpruned network is Figure 2's (trained on
all the data: a stricter reference than one trained on a half). Claims about our own controls or arms the
paper has no figure of (re-initialisation, a constant learning rate) do not arise from these rows.
"""
import math
import re

import pandas as pd

from lth_core.config import PAPER_PRUNE_RATE, paper_config
from lth_core.data import TRAIN_SIZE
from lth_core.report.paper import FIGURE_PANEL, paper_series, paper_value, paper_values
from lth_core.studies import faster_tickets, shufflenet, unseen

BUDGET = 30_000  # Table 1's iterations, every network
# Figure 1's legends: which half each series trains on (the ticket is always found on S1)
FIGURE1_SERIES = {
    "Re-training with first half of the training dataset": unseen.S1,
    "Re-training with second half of the training dataset": unseen.S2,
    "Pruning and training on the same data": unseen.S1,
    "Pruning and training on new data": unseen.S2,
}
# Figure 4's panels: the arm each shows, its prune rate per round and what each series plots
FIGURE4_ARMS = {"top": ("reset", PAPER_PRUNE_RATE["shufflenet"]),
                "bottom": ("bn_pruned", paper_value("shufflenet.bn_prune_pct_per_round") / 100)}
FIGURE4_SERIES = {"test acc.": "test_acc", "validation acc.": "val_acc", "iteration": "es_iteration",
                  "batch-norm layers pruned too": "val_acc"}


def _round(pct_remaining: float, rate: float) -> int:
    """The pruning round of a plotted level: x = 100 * (1 - rate)**round."""
    return round(math.log(pct_remaining / 100) / math.log(1 - rate))


def _subset_percent(series: str) -> float:
    """The subset a Figure 2-3 series' tickets were found on: '... 10% ...' -> 10; Figure 3's 'Full training' -> 100."""
    found = re.search(r"(\d+)%", series)
    return float(found.group(1)) if found else faster_tickets.REFERENCE_PERCENT


def _base(network: str, points: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"network": network, "seed": 0, "pct_remaining": points["x"].astype(float),
                         "round": [_round(x, PAPER_PRUNE_RATE[network]) for x in points["x"]], "budget": BUDGET,
                         "uncertainty": points["uncertainty"].astype(float)})


def _source_panel(key: str) -> tuple[str, str]:
    """(source, panel) of a keyed figure reading ("Figure 2", "top")."""
    row = paper_values().set_index("key").loc[key]
    return row["source"], row["panel"]


def unseen_rows() -> pd.DataFrame:
    """Figure 1 as rows of notebook 01's study: the ticket trained on S1 and on S2 per network and level."""
    out = []
    for network in unseen.FIGURE1_NETWORKS:
        points = paper_series("Figure 1", FIGURE_PANEL[network])
        rows = _base(network, points).assign(kind="ticket", trained_on=points["series"].map(FIGURE1_SERIES).values,
                                             test_acc=points["value"].astype(float).values, es_iteration=float("nan"))
        for half in (unseen.S1, unseen.S2):
            if not ((rows["trained_on"] == half) & (rows["round"] == 0)).any():  # LeNet: Figure 2's unpruned point
                key = f"{network}.dense_test_acc"
                dense = paper_series(*_source_panel(key))
                dense = dense[(dense["x"] == 100) & (dense["value"] == paper_value(key))].iloc[:1]
                rows = pd.concat([rows, _base(network, dense).assign(kind="ticket", trained_on=half,
                                                                      test_acc=paper_value(key),
                                                                      es_iteration=float("nan"))])
        out.append(rows)
    return pd.concat(out, ignore_index=True).assign(setting=unseen.TABLE1, run="paper")


def faster_rows() -> pd.DataFrame:
    """Figures 2-3 as rows of notebook 02's study: per network, subset and level, the ticket retrained on all the
    data (Figure 2's accuracy) and its finding run (Figure 3's early stop); for 100% one row holds both, as
    the finding run on the full pool is its own retraining."""
    out = []
    for network in faster_tickets.NETWORKS:
        panel = FIGURE_PANEL[network]
        for source, quantity in (("Figure 2", "test_acc"), ("Figure 3", "es_iteration")):
            points = paper_series(source, panel)
            subsets = points["series"].map(_subset_percent).values
            full = subsets == faster_tickets.REFERENCE_PERCENT
            found_on = ["all" if f else "subset" for f in full]
            trained_on = ["all" if f or quantity == "test_acc" else "subset" for f in full]
            out.append(_base(network, points).assign(subset_percent=subsets, found_on=found_on, trained_on=trained_on,
                                                     **{quantity: points["value"].astype(float).values}))
    rows = pd.concat(out, ignore_index=True)
    keys = ["network", "seed", "subset_percent", "found_on", "trained_on", "round", "pct_remaining", "budget"]
    rows = rows.groupby(keys, as_index=False).agg(test_acc=("test_acc", "first"), es_iteration=("es_iteration", "first"),
                                                  uncertainty=("uncertainty", "first"))
    return rows.assign(kind="ticket", protocol="iterations", wall_seconds=float("nan"), iterations=float("nan"),
                       run="paper")


def faster_setup(rows: pd.DataFrame) -> pd.DataFrame:
    """`faster_tickets.finding_setup`'s table for the paper's rows: Table 1's batch and budget, this project's
    pool sizes (the paper states none) and no validation interval (the paper states none)."""
    out = []
    for network, percent in rows[["network", "subset_percent"]].drop_duplicates().itertuples(index=False):
        cfg = paper_config(network)
        n = round((TRAIN_SIZE[cfg.dataset] - cfg.val_size) * percent / 100)
        out.append({"protocol": "iterations", "network": network, "subset_percent": percent, "finding_set_rows": n,
                    "batch_size": cfg.train.batch_size, "iterations_per_epoch": max(1, n // cfg.train.batch_size),
                    "eval_every": float("nan"), "budget": BUDGET, "patience": -1})
    return pd.DataFrame(out)


def shufflenet_rows() -> pd.DataFrame:
    """Figure 4 as rows of notebook 03's study: the BN-kept arm (top: test and validation accuracy, early stop)
    and the BN-pruned arm (bottom: validation accuracy), one row per arm and level."""
    out = []
    for panel, (arm, rate) in FIGURE4_ARMS.items():
        points = paper_series("Figure 4", panel).assign(quantity=lambda d: d["series"].map(FIGURE4_SERIES))
        wide = points.pivot_table(index="x", columns="quantity", values="value", aggfunc="first")
        u = points.groupby("x")["uncertainty"].max()
        levels = pd.DataFrame({"x": wide.index, "uncertainty": u.reindex(wide.index).values})
        rows = _base("shufflenet", levels).assign(
            round=[_round(x, rate) for x in wide.index], kind="ticket", arm=arm, arm_label=f"the paper's Figure 4 {panel}",
            **{q: wide[q].values if q in wide else float("nan") for q in ("test_acc", "val_acc", "es_iteration")})
        out.append(rows)
    return shufflenet.add_pct_pruned(pd.concat(out, ignore_index=True).assign(run="paper"))


ROWS = {unseen.NOTEBOOK: unseen_rows, faster_tickets.NOTEBOOK: faster_rows, shufflenet.NOTEBOOK: shufflenet_rows}


def rows(notebook: str) -> pd.DataFrame:
    """The paper's figure points for `notebook`'s study, as rows of the form its runs give."""
    if notebook not in ROWS:
        raise ValueError(f"no paper rows for notebook {notebook!r}; valid: {', '.join(ROWS)}")
    return ROWS[notebook]()


def judge(notebook: str, rows: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """`notebook`'s claims table computed from `rows` by its study's own findings and claims functions."""
    if notebook == unseen.NOTEBOOK:
        return unseen.claims(unseen.findings(rows, tolerance))
    if notebook == faster_tickets.NOTEBOOK:
        return faster_tickets.claims(rows, faster_tickets.speedup_table(rows, faster_setup(rows), tolerance))
    if notebook == shufflenet.NOTEBOOK:
        arms = {arm: [paper_config("shufflenet", prune_rate=rate, prune_bn=arm == "bn_pruned")]
                for arm, rate in FIGURE4_ARMS.values()}
        return shufflenet.claims(rows, shufflenet.arm_summary(rows, tolerance), arms, tolerance)
    raise ValueError(f"no claims for notebook {notebook!r}; valid: {', '.join(ROWS)}")


def claims(notebook: str, tolerance: float) -> pd.DataFrame:
    """`notebook`'s claims judged on the paper's own figures."""
    return judge(notebook, rows(notebook), tolerance)


def verdict_line(paper_claims: pd.DataFrame) -> str:
    """'Applied to the paper's own figures, N of N claims hold', with any that do not named."""
    held = paper_claims["verdict"] == "holds"
    line = (f"Applied to the paper's own figures, {int(held.sum())} of {len(paper_claims)} claims hold "
            "(the same rules and preconditions as for our runs).")
    others = paper_claims[~held]
    if len(others):
        line += " Not holding: " + "; ".join(f"{r.network}: {r.claim} ({r.verdict}: {r.why})"
                                            for r in others.itertuples()) + "."
    return line
