"""Faster tickets (paper section 4, Figures 2 and 3): find tickets on an s% subset, retrain on the full set.

For each network and subset size s, one IMP trajectory per seed finds its tickets
on S1 = a seeded s% subset of the training pool and retrains every round's ticket,
from its reset weights, on S2 = the full pool. s = 100 is the reference: its
tickets are found on the full pool, and that finding run is also its S2 training
(`found_on == trained_on == "all"`), so it is not trained twice.

Definitions used by every table, figure and sentence here:
- finding rows: `kind == "ticket"` and `trained_on == found_on` (the runs that
  find the tickets; their `es_iteration` is Figure 3's early-stopping iteration);
- retrained rows: `kind == "ticket"` and `trained_on == "all"` (Figure 2);
- ticket-finding cost: the `wall_seconds` of the finding rows summed over the
  rounds of one trajectory (all the tickets of a figure line), mean over seeds.
  That is the time a user pays; `seconds_to_es_est` is the part of it up to the
  early-stopping iteration (wall_seconds * es_iteration / iterations), what a
  user would pay with a perfect stopping rule;
- a level is one pruning round; every subset size reaches the same percent of
  weights remaining at the same round, so levels are matched by round;
- budget protocol (`protocol` column): "iterations" gives every training the same
  budget (Table 1: 30,000 iterations); "epochs" gives each training that many epochs
  of its own training rows (the authors: 20), so a 10% subset gets a tenth of the
  100% budget. Everything is compared within a protocol;
- budget-bound: an early-stopping iteration in the last tenth of its budget
  (`training.budget_bound`); a longer budget might have moved it. A speed-up whose
  100% reference is budget-bound is a lower bound, one whose subset runs are an
  upper bound, and neither is judged on the side it bounds.

The verdict on the paper's 7.5x is a row of the claims table (`claims`), decided by
`SPEEDUP_RULE` (`paper_numbers()`: the paper's numbers it reads); the other
sentences are computed from the rows too (`cost_sentences`, `caveat_sentences`).
"""
import matplotlib.pyplot as plt
import pandas as pd

from lth_core.data import TRAIN_SIZE
from lth_core.config import IMPConfig, iterations_per_epoch, paper_config
from lth_core.imp import make_splits
from lth_core.models import network_title
from lth_core.report.claims import LEARNED_FRACTION, claim, claims_frame, learned, not_learned
from lth_core.report.paper import FIGURE_PANEL, paper_series, paper_value
from lth_core.report.rules import Precondition, Rule, paper_numbers_table
from lth_core.params.notebook import PARAM_PREFIX, SUBSET_PERCENTS, network_overrides
from lth_core.report.plots import mark_budget_bound, new_figure, plot_vs_remaining
from lth_core.report.tables import fmt, plural, points
from lth_core.runs.experiment import grid
from lth_core.config import BUDGET_PROTOCOLS as PROTOCOLS
from lth_core.training import budget_bound
from lth_core.studies.analysis import mean_gap

NOTEBOOK = "02_faster_tickets"

REFERENCE_PERCENT = 100.0
NETWORKS = tuple(PARAM_PREFIX)
# Section 4's claim: tickets found on the paper's subset early-stop that many times sooner, at equal accuracy: the
# mean gap to the 100% tickets over the levels where those have not collapsed, within tolerance (`accuracy_gap`)
SPEEDUP_RULE = Rule("es_speedup >= paper['faster.speedup'] and acc_gap_high >= -(tolerance + acc_allowance)")
# A ratio of early stops can be no larger than the 100% budget over the subset's validation interval (the 100% runs
# stop within their budget, the subset's at an evaluation at the earliest): below the paper's, no run could show it
RATIO_CAP = Precondition(Rule("ratio_cap >= paper['faster.speedup']"),
                         "a {budget_ref:,.0f}-iteration budget on 100% and validation every {eval_every:,.0f} "
                         "iterations on the subset cap the ratio at {ratio_cap:.1f}x, below the paper's "
                         "{paper[faster.speedup]:g}x")

LEVEL_KEYS = ["protocol", "network", "subset_percent", "round"]
TABLE_KEYS = ["protocol", "network", "subset_percent"]
# beside each row of the table (rows carry their own resolved budget; the config's fills older rows)
CONFIG_COLUMNS = {"budget": "train.iterations", "patience": "train.patience", "budget_epochs": "train.epochs"}


def with_protocol(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its `protocol` column (from `budget_epochs`), and `budget_bound` for finding rows' use."""
    out = df.copy()
    if "protocol" not in out:
        epochs = out["budget_epochs"] if "budget_epochs" in out else pd.Series(float("nan"), index=out.index)
        out["protocol"] = epochs.notna().map({True: "epochs", False: "iterations"})
    out["budget_bound"] = budget_bound(out["es_iteration"], out["budget"])
    return out


def check_subset_percents(percents, network: str) -> list[float]:
    """Sorted subset sizes as floats (as the configs store them); [] skips the network. The list's rule
    (distinct, includes 100, each a valid subset_percent) is the notebook's `SUBSET_PERCENTS`."""
    valid = SUBSET_PERCENTS(percents)
    if valid is not None:
        raise ValueError(f"{network}: subset sizes {percents!r} are out of range; valid: {valid}")
    return sorted(float(p) for p in percents)


def subset_configs(network: str, subset_percents, seeds, **overrides) -> list[IMPConfig]:
    """One IMP config per (subset size, seed): find on the s% subset, retrain on the full pool.

    `overrides` go to `paper_config` (IMPConfig and TrainConfig fields: iterations, epochs, rounds, ...).
    """
    configs = []
    for s in check_subset_percents(subset_percents, network):
        if s == REFERENCE_PERCENT:
            base = paper_config(network, find_on="all", retrain_on=("all",), **overrides)
        else:
            base = paper_config(network, find_on="subset", subset_percent=s, retrain_on=("all",), **overrides)
        configs += grid(base, seeds=seeds)
    return configs


def configs_from_parameters(P: dict) -> list[IMPConfig]:
    """The notebook's IMP runs from its validated parameters: per network, subset size and seed. `faster_rounds`,
    when given, replaces every network's `*_rounds` here (a profile shared with notebook 01 sizes Figure 1 deeper
    than Figures 2-3 need); None (or a P without it) keeps them, and so every run name."""
    configs = []
    for protocol in P["faster_protocols"]:
        for network in ("lenet_300_100", "conv2"):
            prefix = PARAM_PREFIX[network]
            epochs = P[f"{prefix}_budget_epochs"] if protocol == "epochs" else None
            overrides = network_overrides(P, network)
            if P.get("faster_rounds") is not None:
                overrides["rounds"] = P["faster_rounds"]
            configs += subset_configs(network, P[f"{prefix}_subset_percents"], P["seeds"],
                                      criterion=P["faster_criterion"], epochs=epochs, **overrides)
    return configs


def finding_setup(configs: list[IMPConfig]) -> pd.DataFrame:
    """Per (protocol, network, subset_percent): size of the finding set, its epoch length, budget (in
    iterations) and eval interval."""
    out = {}
    for cfg in configs:
        protocol = "iterations" if cfg.train.epochs is None else "epochs"
        key = (protocol, cfg.network, float(cfg.subset_percent))
        if key in out:
            continue
        n_rows = len(make_splits(cfg, TRAIN_SIZE[cfg.dataset])[cfg.find_on])
        t = cfg.train
        out[key] = {"protocol": protocol, "network": cfg.network, "subset_percent": key[2],
                    "finding_set_rows": n_rows, "batch_size": min(t.batch_size, n_rows),
                    "iterations_per_epoch": iterations_per_epoch(n_rows, t.batch_size),
                    "eval_every": t.eval_every, "budget": t.budget_for(n_rows).iterations,
                    "patience": -1 if t.patience is None else t.patience}
    return pd.DataFrame(list(out.values()))


def _speedup_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Ticket rows of this experiment: found on a subset, or on the full pool (the 100% reference)."""
    tickets = with_protocol(df[df["kind"] == "ticket"])
    mine = (tickets["found_on"] == "subset") | ((tickets["found_on"] == "all")
                                                 & (tickets["subset_percent"] == REFERENCE_PERCENT))
    out = tickets[mine].copy()
    out["subset_percent"] = out["subset_percent"].astype(float)
    return out


def finding_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ticket-finding runs (trained on the data the ticket was found on): Figure 3."""
    t = _speedup_rows(df)
    return t[t["trained_on"] == t["found_on"]]


def retrained_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Every ticket trained from its reset weights on the full pool S2: Figure 2."""
    t = _speedup_rows(df)
    return t[t["trained_on"] == "all"]


def _need_reference(df: pd.DataFrame, what: str) -> None:
    for (protocol, network), g in df.groupby(["protocol", "network"]):
        if not (g["subset_percent"] == REFERENCE_PERCENT).any():
            raise ValueError(f"{network} ({protocol} budget): no 100% rows to compare {what} with; include 100 in "
                             "the subset sizes")


def accuracy_by_level(df: pd.DataFrame) -> pd.DataFrame:
    """Per (network, subset, round): retrained accuracy and finding ES iteration (means over seeds),
    their differences / ratios to the 100% tickets of the same round."""
    ret, find = retrained_rows(df), finding_rows(df)
    if ret.empty:
        raise ValueError("no retrained ticket rows (kind 'ticket', trained_on 'all') in the table")
    _need_reference(ret, "accuracies")
    acc = ret.groupby(LEVEL_KEYS, as_index=False).agg(pct_remaining=("pct_remaining", "mean"),
                                                      retrained_test_acc=("test_acc", "mean"),
                                                      seeds=("seed", "nunique"))
    es = find.groupby(LEVEL_KEYS, as_index=False).agg(finding_es_iteration=("es_iteration", "mean"),
                                                      finding_budget_bound=("budget_bound", "mean"),
                                                      finding_seconds=("wall_seconds", "mean"))
    lv = acc.merge(es, on=LEVEL_KEYS, how="left")
    ref = lv[lv["subset_percent"] == REFERENCE_PERCENT][["protocol", "network", "round", "pct_remaining",
                                                          "retrained_test_acc", "finding_es_iteration"]]
    lv = lv.merge(ref, on=["protocol", "network", "round"], how="left", suffixes=("", "_ref"))
    mismatch = lv["pct_remaining_ref"].notna() & ((lv["pct_remaining"] - lv["pct_remaining_ref"]).abs() > 1e-6)
    if mismatch.any():
        raise ValueError("subset and 100% tickets of the same round have different sparsities; "
                         "were they run with different pruning rates?")
    lv["acc_diff_vs_100"] = lv["retrained_test_acc"] - lv["retrained_test_acc_ref"]
    lv["es_speedup_vs_100"] = lv["finding_es_iteration_ref"] / lv["finding_es_iteration"]
    lv = lv.rename(columns={"retrained_test_acc_ref": "retrained_test_acc_100"})
    cols = ["protocol", "network", "subset_percent", "round", "pct_remaining", "seeds", "retrained_test_acc",
            "retrained_test_acc_100", "acc_diff_vs_100", "finding_es_iteration", "finding_budget_bound",
            "es_speedup_vs_100", "finding_seconds"]
    return lv[cols].sort_values(LEVEL_KEYS, ignore_index=True)


def accuracy_gap(df: pd.DataFrame, protocol: str, network: str, percent: float) -> dict:
    """The s% tickets' retrained accuracy against the 100% tickets' (`analysis.mean_gap`, paired by seed and
    round) over the rounds where the 100% tickets have not collapsed (mean accuracy at least LEARNED_FRACTION of
    their unpruned network's): past that the paper's own 100% tickets fall to chance while its 10% ones do not,
    and a gap of 50 points says nothing about "the same accuracy"."""
    ret = retrained_rows(df)
    mine = ret[(ret["protocol"] == protocol) & (ret["network"] == network)]
    ref, sub = mine[mine["subset_percent"] == REFERENCE_PERCENT], mine[mine["subset_percent"] == percent]
    by_round = ref.groupby("round")["test_acc"].mean()
    alive = by_round.index[by_round >= LEARNED_FRACTION * by_round.get(0, float("nan"))]
    return mean_gap(sub[sub["round"].isin(alive)], ref[ref["round"].isin(alive)], on=["round"])


def speedup_table(df: pd.DataFrame, setup: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row per (network, subset size): the speed-up of ticket finding and the accuracy cost.

    mean_es_iteration / mean_es_epochs: finding runs, mean over seeds and rounds;
    budget_bound: fraction of finding runs that early-stopped in the last tenth of their budget;
    finding_seconds: finding wall-clock per trajectory (sum over rounds, mean over seeds);
    seconds_to_es_est: its part up to the early-stopping iteration;
    largest_group: the most trainings fused with a finding run (1: each trained alone; above, the seconds
    are shared group times);
    *_speedup: the 100% value divided by this one (> 1: faster);
    acc_diff_*: retrained accuracy minus the 100% tickets' at the same round (mean, worst over rounds);
    levels_within_tolerance: rounds whose accuracy difference is >= -tolerance;
    acc_gap, acc_gap_high, acc_allowance, acc_levels: what the claim reads (`accuracy_gap`).
    """
    find = finding_rows(df)
    if find.empty:
        raise ValueError("no ticket-finding rows in the table")
    _need_reference(find, "early-stopping iterations")
    groups = find["group_size"].fillna(1) if "group_size" in find else 1  # rows stored before it: solo
    find = find.assign(bound=find["budget_bound"].astype(float), group_size=groups,
                       to_es=find["wall_seconds"] * find["es_iteration"] / find["iterations"])
    keys = TABLE_KEYS
    per_seed = find.groupby(keys + ["seed"], as_index=False).agg(finding_seconds=("wall_seconds", "sum"),
                                                                  seconds_to_es_est=("to_es", "sum"))
    t = find.groupby(keys, as_index=False).agg(seeds=("seed", "nunique"), levels=("round", "nunique"),
                                               mean_es_iteration=("es_iteration", "mean"),
                                               budget_bound=("bound", "mean"), largest_group=("group_size", "max"))
    t = t.merge(per_seed.groupby(keys, as_index=False)[["finding_seconds", "seconds_to_es_est"]].mean(), on=keys)
    t = t.merge(setup[keys + ["finding_set_rows", "batch_size", "iterations_per_epoch", "eval_every", "budget"]],
                on=keys, how="left")
    t["mean_es_epochs"] = t["mean_es_iteration"] / t["iterations_per_epoch"]
    ref = t[t["subset_percent"] == REFERENCE_PERCENT].set_index(["protocol", "network"])
    at = pd.MultiIndex.from_frame(t[["protocol", "network"]])
    for col, ratio in (("mean_es_iteration", "es_speedup"), ("finding_seconds", "wall_speedup"),
                       ("seconds_to_es_est", "es_wall_speedup")):
        t[ratio] = ref[col].reindex(at).to_numpy() / t[col]
    lv = accuracy_by_level(df)
    acc = lv.groupby(keys, as_index=False).agg(
        acc_diff_mean=("acc_diff_vs_100", "mean"), acc_diff_worst=("acc_diff_vs_100", "min"),
        levels_within_tolerance=("acc_diff_vs_100", lambda d: int((d >= -tolerance).sum())))
    t = t.merge(acc, on=keys, how="left").assign(tolerance=float(tolerance))
    gaps = pd.DataFrame([{"acc_gap": g["gap"], "acc_gap_high": g["gap_high"], "acc_allowance": g["allowance"],
                          "acc_levels": g["levels"]} for g in
                         (accuracy_gap(df, p, n, s) for p, n, s in zip(t["protocol"], t["network"], t["subset_percent"]))],
                         index=t.index)
    t = pd.concat([t, gaps], axis=1)
    cols = ["protocol", "network", "subset_percent", "finding_set_rows", "batch_size", "iterations_per_epoch",
            "eval_every", "budget", "seeds", "levels", "mean_es_iteration", "mean_es_epochs", "budget_bound",
            "es_speedup",
            "finding_seconds", "wall_speedup", "seconds_to_es_est", "es_wall_speedup", "largest_group",
            "acc_diff_mean", "acc_diff_worst", "levels_within_tolerance", "acc_gap", "acc_gap_high", "acc_allowance",
            "acc_levels", "tolerance"]
    order = {n: i for i, n in enumerate(df["network"].unique())}  # the experiment's order, not alphabetical
    t = t.assign(_order=t["network"].map(order), _protocol=t["protocol"].map(PROTOCOLS.index))
    t = t.sort_values(["_protocol", "_order", "subset_percent"], ascending=[True, True, False])
    return t[cols].reset_index(drop=True)


def accuracy_pivot(by_level: pd.DataFrame, network: str, protocol: str = "iterations") -> pd.DataFrame:
    """Retrained accuracy difference to the 100% tickets: one row per subset size, one column per level."""
    d = by_level[(by_level["network"] == network) & (by_level["protocol"] == protocol)]
    p = d.pivot_table(index="subset_percent", columns="pct_remaining", values="acc_diff_vs_100")
    p = p.sort_index(ascending=False)[sorted(p.columns, reverse=True)]
    p.columns = [f"{c:.3g}% left" for c in p.columns]
    p.index = [subset_label(s) for s in p.index]
    return p.round(2)


# --- figures ---------------------------------------------------------------------------------

def subset_label(percent: float) -> str:
    return "s = 100% (full set)" if percent == REFERENCE_PERCENT else f"s = {percent:g}%"


def _with_labels(rows: pd.DataFrame) -> pd.DataFrame:
    order = [subset_label(s) for s in sorted(rows["subset_percent"].unique(), reverse=True)]
    rows = rows.assign(subset=pd.Categorical([subset_label(s) for s in rows["subset_percent"]], categories=order))
    return rows.sort_values(["subset", "round"])


def _protocol_panels(rows: pd.DataFrame):
    """(figure, [(protocol, its rows, its axes)]): one panel per budget protocol present. The panels show one
    quantity, so only the first names it (`_one_ylabel`): a second label would sit against the first panel."""
    protocols = [p for p in PROTOCOLS if (rows["protocol"] == p).any()]
    fig, axes = new_figure(ncols=max(1, len(protocols)))
    return fig, [(p, rows[rows["protocol"] == p], axes[0][i]) for i, p in enumerate(protocols)]


def _one_ylabel(panels) -> None:
    for _, _, ax in panels[1:]:
        ax.set_ylabel("")


def protocol_title(protocol: str) -> str:
    return ("budget: the same iterations for every subset" if protocol == "iterations"
            else "budget: epochs of each run's own rows")


def _paper(source: str, network: str) -> pd.DataFrame | None:
    return paper_series(source, FIGURE_PANEL[network]) if network in FIGURE_PANEL else None


def figure2(df: pd.DataFrame, network: str, min_span: float = 4.0):
    """Test accuracy at early stopping of tickets found on s% and retrained on the full set (Figure 2),
    one panel per budget protocol, the paper's Figure 2 points of the network on each. The y axis spans at
    least `min_span` accuracy points."""
    rows = retrained_rows(df)
    fig, panels = _protocol_panels(rows[rows["network"] == network])
    for protocol, mine, ax in panels:
        plot_vs_remaining(_with_labels(mine), "test_acc", ax, hue="subset", paper=_paper("Figure 2", network),
                          ylabel="test accuracy at early stopping (%)", title=protocol_title(protocol))
        lo, hi = ax.get_ylim()
        if hi - lo < min_span:  # do not magnify differences of a few tenths into the whole axis
            mid = (lo + hi) / 2
            ax.set_ylim(max(0.0, mid - min_span / 2), min(100.0, mid + min_span / 2))
    _one_ylabel(panels)
    fig.suptitle(f"{network_title(network)}: tickets found on s% of the data, retrained on 100%", y=1.0)
    plt.close(fig)
    return fig


def figure3(df: pd.DataFrame, network: str):
    """Early-stopping iteration of the ticket-finding runs on the s% subset (Figure 3), one panel per
    budget protocol, the paper's Figure 3 points of the network on each; budget-bound runs (early stopping
    in the last tenth of the budget) are crossed."""
    rows = finding_rows(df)
    fig, panels = _protocol_panels(rows[rows["network"] == network])
    for protocol, mine, ax in panels:
        plot_vs_remaining(_with_labels(mine), "es_iteration", ax, hue="subset", paper=_paper("Figure 3", network),
                          ylabel="early-stopping iteration while finding", title=protocol_title(protocol))
        mark_budget_bound(ax, mine)
    _one_ylabel(panels)
    fig.suptitle(f"{network_title(network)}: finding tickets on s% of the data", y=1.0)
    plt.close(fig)
    return fig


# --- computed prose --------------------------------------------------------------------------

def _pick(table: pd.DataFrame, protocol: str, network: str, percent: float) -> pd.Series | None:
    hit = table[(table["protocol"] == protocol) & (table["network"] == network) & (table["subset_percent"] == percent)]
    return None if hit.empty else hit.iloc[0]


def claim_subset(table: pd.DataFrame, network: str) -> float | None:
    """The paper's 10% if it was run, else the smallest subset below 100%, else None."""
    sizes = sorted(s for s in table.loc[table["network"] == network, "subset_percent"] if s < REFERENCE_PERCENT)
    if not sizes:
        return None
    paper = paper_value("faster.subset_percent")
    return paper if paper in sizes else sizes[0]


def _claim_rows(table: pd.DataFrame):
    """(protocol, network, claim subset, its table row, the 100% row) per protocol and network with a claim subset."""
    for protocol, network in table[["protocol", "network"]].drop_duplicates().itertuples(index=False):
        s = claim_subset(table[table["protocol"] == protocol], network)
        if s is not None:
            yield protocol, network, s, _pick(table, protocol, network, s), _pick(table, protocol, network,
                                                                                 REFERENCE_PERCENT)


def bound_reason(row: pd.Series, ref: pd.Series, fast: bool) -> str | None:
    """Why a speed-up cannot be judged because early stopping met a budget, or None.

    A budget-bound 100% reference might have stopped later (the ratio is a lower bound: it decides only
    when it already reaches the claim); budget-bound subset runs might have too (an upper bound: it
    decides only when it falls short)."""
    ref_bound, sub_bound = ref["budget_bound"] > 0, row["budget_bound"] > 0
    if ref_bound and sub_bound:
        return (f"{100 * ref['budget_bound']:.0f}% of the 100% and {100 * row['budget_bound']:.0f}% of the "
                f"{row['subset_percent']:g}% finding runs are budget-bound, so {row['es_speedup']:.1f}x reflects the "
                "budgets, not when the runs would have stopped")
    if ref_bound and not fast:
        return (f"{100 * ref['budget_bound']:.0f}% of the 100% finding runs are budget-bound, so "
                f"{row['es_speedup']:.1f}x is a lower bound")
    if sub_bound and fast:
        return (f"{100 * row['budget_bound']:.0f}% of the {row['subset_percent']:g}% finding runs are budget-bound, "
                f"so {row['es_speedup']:.1f}x is an upper bound")
    return None


def claims(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The claims table of Figures 2-3: per budget protocol and network, the paper's 7.5x fewer iterations
    at equal accuracy."""
    out = []
    paper_percent, paper_ratio = paper_value("faster.subset_percent"), paper_value("faster.speedup")
    for protocol, network, s, row, ref in _claim_rows(table):
        tol = row["tolerance"]
        dense = retrained_rows(df)
        dense = dense[(dense["protocol"] == protocol) & (dense["network"] == network)
                      & (dense["subset_percent"] == REFERENCE_PERCENT) & (dense["round"] == 0)]["test_acc"].mean()
        cap = ref["budget"] / row["eval_every"]  # unknown for the paper's figures: they state no interval
        values = {"es_speedup": row["es_speedup"], "acc_gap_high": row["acc_gap_high"],
                  "acc_allowance": row["acc_allowance"], "tolerance": tol, "ratio_cap": cap,
                  "budget_ref": ref["budget"], "eval_every": row["eval_every"]}
        fast = row["es_speedup"] >= paper_ratio
        other = None if s == paper_percent else f"the paper's {paper_percent:g}% was not run; {s:g}% is the closest"
        capped = None if pd.isna(cap) else RATIO_CAP.unmet(values)
        es_sub, es_full = (paper_value(f"faster.es_{which}.{network}") for which in ("subset", "full"))
        budget = (f"{fmt(ref['budget'], ',.0f')} iterations for every run" if protocol == "iterations" else
                  f"{fmt(ref['budget'] / ref['iterations_per_epoch'], '.3g')} epochs of each run's own rows")
        out.append(claim(
            NOTEBOOK, network, f"finding tickets on a {paper_percent:g}% subset takes {paper_ratio:g}x "
            f"fewer iterations, at retrained accuracy within {points(tol)} of the 100% tickets (mean gap over the "
            f"levels where those have not collapsed; budget: {budget})",
            "Figs. 2-3", f"{paper_ratio:g}x ({fmt(es_sub, ',.0f')} vs {fmt(es_full, ',.0f')})",
            f"{row['es_speedup']:.1f}x ({fmt(row['mean_es_iteration'], ',.0f')} vs "
            f"{fmt(ref['mean_es_iteration'], ',.0f')}); mean gap {fmt(row['acc_gap'], '+.2f')} points over "
            f"{row['acc_levels']:.0f} levels (upper 95% bound {fmt(row['acc_gap_high'], '+.2f')}, reading allowance "
            f"{row['acc_allowance']:.2f}); worst level {row['acc_diff_worst']:+.2f}",
            SPEEDUP_RULE, values, [not_learned(network, dense), capped, bound_reason(row, ref, fast), other],
            int(row["seeds"])))
    return claims_frame(out)


def paper_numbers() -> pd.DataFrame:
    """The paper's numbers this notebook's claims read, with where the paper states each."""
    return paper_numbers_table([SPEEDUP_RULE, RATIO_CAP, *(learned(n) for n in NETWORKS)],
                               ["faster.subset_percent"] + [f"faster.es_{which}.{n}" for n in NETWORKS
                                                            for which in ("subset", "full")])


def protocol_sentences(table: pd.DataFrame) -> str:
    """Markdown: per network, the speed-up under each budget protocol and how much of it the budgets set."""
    out = []
    rows = list(_claim_rows(table))
    for network in dict.fromkeys(r[1] for r in rows):
        mine = {protocol: (s, row, ref) for protocol, net, s, row, ref in rows if net == network}
        parts = []
        for protocol, (s, row, ref) in mine.items():
            budgets = ref["budget"] / row["budget"]
            text = (f"with {protocol_title(protocol).removeprefix('budget: ')} ({fmt(row['budget'], ',.0f')} iterations "
                    f"on {s:g}%, {fmt(ref['budget'], ',.0f')} on 100%) the {s:g}% finding runs early-stop "
                    f"{row['es_speedup']:.1f}x sooner")
            if budgets > 1:
                text += (f"; the budgets alone differ {budgets:.1f}x, and {100 * row['budget_bound']:.0f}% of the "
                         f"{s:g}% and {100 * ref['budget_bound']:.0f}% of the 100% runs are budget-bound")
            else:
                text += (f"; {100 * row['budget_bound']:.0f}% of the {s:g}% and {100 * ref['budget_bound']:.0f}% "
                         "of the 100% runs are budget-bound")
            parts.append(text)
        line = f"- **{network_title(network)}**: " + "; ".join(parts) + "."
        if set(mine) == set(PROTOCOLS):
            it, ep = mine["iterations"][1]["es_speedup"], mine["epochs"][1]["es_speedup"]
            line += (f" Of the paper's {paper_value('faster.speedup'):g}x, the iteration budget gives {it:.1f}x and the "
                     f"authors' epoch budget {ep:.1f}x: the protocol accounts for a factor of {ep / it:.2f}.")
        out.append(line)
    return "\n".join(out)


def patience_sentence(configs: list[IMPConfig]) -> str:
    """Markdown: whether finding runs trained their whole budget (what the wall-clock figures cover)."""
    rules = {network_title(c.network): c.train.patience for c in configs}
    if all(p is None for p in rules.values()):
        return "Here every run trained its full budget (no patience)."
    return "Here " + "; ".join(f"{name} runs trained their full budget" if p is None else
                               f"{name} runs stopped after {p} evaluations without improvement"
                               for name, p in rules.items()) + "."


def cost_sentences(table: pd.DataFrame) -> str:
    """Markdown: the wall-clock cost of ticket finding, what a user pays, for the claim's subset; when
    trainings were fused, a warning that these seconds are shared group times."""
    out, largest = [], 1
    for protocol, network, s, row, ref in _claim_rows(table):
        largest = max(largest, row["largest_group"], ref["largest_group"])
        out.append(f"- **{network_title(network)}** ({protocol_title(protocol)}): finding one trajectory of tickets (every round's finding run) took "
                   f"{fmt(row['finding_seconds'], ',.1f')} s on {s:g}% against {fmt(ref['finding_seconds'], ',.1f')} s on 100% "
                   f"({row['wall_speedup']:.1f}x); up to the early-stopping iterations it was "
                   f"{fmt(row['seconds_to_es_est'], ',.1f')} s against {fmt(ref['seconds_to_es_est'], ',.1f')} s "
                   f"({row['es_wall_speedup']:.1f}x).")
    if largest > 1:
        out.append(f"- These trainings ran fused, up to {largest:.0f} at a time: a training's seconds run from its "
                   "group's start to its own stop, shared with the others, so the seconds and their ratios are "
                   "group times, not what each run costs alone; the iteration ratios are the measure here.")
    return "\n".join(out)


def caveat_sentences(table: pd.DataFrame) -> str:
    """Markdown: why early-stopping iterations on a small subset are bounded by its short epochs."""
    out = []
    for protocol, network, s, row, ref in _claim_rows(table):
        if protocol != "iterations" and "iterations" in set(table["protocol"]):
            continue  # the same sets and epochs under both protocols
        text = (f"- **{network_title(network)}**: the {s:g}% set has {fmt(row['finding_set_rows'], ',.0f')} rows, so one epoch is "
                f"{plural(row['iterations_per_epoch'], 'iteration')}, against {fmt(ref['iterations_per_epoch'], ',.0f')} on 100%. "
                f"Finding runs early-stopped after {row['mean_es_epochs']:.1f} epochs of their data on "
                f"{s:g}% and {ref['mean_es_epochs']:.1f} on 100%: ")
        ratio_epochs = ref["iterations_per_epoch"] / row["iterations_per_epoch"]
        text += (f"the epoch-length ratio alone is {ratio_epochs:.1f}x, against the {row['es_speedup']:.1f}x "
                 "measured in iterations. ")
        if row["batch_size"] < ref["batch_size"]:
            text += (f"The {s:g}% set is smaller than one batch of {fmt(ref['batch_size'], ',.0f')}, so its batches hold "
                     f"{fmt(row['batch_size'], ',.0f')} rows and its iterations are cheaper than those on 100%. ")
        if row["eval_every"] > row["iterations_per_epoch"]:
            text += (f"Validation runs every {fmt(row['eval_every'], ',.0f')} iterations, "
                     f"{row['eval_every'] / row['iterations_per_epoch']:.1f} epochs of the subset: its "
                     f"early-stopping iteration cannot be resolved more finely, nor fall below "
                     f"{fmt(row['eval_every'], ',.0f')}.")
        else:
            text += (f"Validation runs every {fmt(row['eval_every'], ',.0f')} iterations, within one epoch of the subset, "
                     "so the early-stopping iteration is resolved finely enough.")
        out.append(text)
    return "\n".join(out)
