"""Mask overlap against chance: do two runs that prune to the same level keep the same weights?

Two masks of one layer of N weights keeping k_a and k_b of them have `common` kept weights in common. Two
random masks of those counts would share a hypergeometric number: mean k_a*k_b/N, variance
k_a*k_b*(N-k_a)*(N-k_b) / (N^2 (N-1)); over the layers, drawn independently, means and variances add.
The share of kept weights in common is common / min(k_a, k_b): the part of the smaller mask that the other
keeps too (1 for identical masks, 0 for disjoint ones; within a level the counts are equal anyway, since
every run prunes each layer at the same rate); over all layers, the common counts summed over the layers'
minima summed.

- `chance_overlap(weights, kept_a, kept_b)`: the hypergeometric (mean, variance) of the common count;
- `mask_overlap(masks_a, masks_b)`: one row per layer and an "overall" row: counts, `common`, `share`, the
  chance mean and sd as counts (`chance_mean`, `chance_sd`) and as shares, and `z` (sds above chance);
- `run_pairs(configs)`: every pair of runs that find masks at the same levels (configs equal but for the seed
  and the data the tickets are found on), and `comparison(a, b)` its name: "10% vs 100%, same seed",
  "10% vs 10%, other seeds", "S1 vs S1, other seeds", ...;
- `overlap_table(configs)`: `mask_overlap` of every pair at every pruned level both have stored, read from
  the run store (`store.level_masks`): no training;
- `verdict(...)`, `verdicts(table)`: per comparison and level, whether the runs found the same tickets, ones
  more alike than chance, as alike as chance or less alike (`VERDICT_RULE`);
- `plot_overlap(table)`: the overall share against percent of weights left, one line per comparison (95%
  band over pairs), the chance mean dashed in its +-3 sd band, and below it the share minus chance's; one
  column per network and setting;
- `verdict_sentences(verdicts)`: the verdicts in words (markdown).
"""
import dataclasses
import itertools
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lth_core.config import TABLE1, IMPConfig, setting_of
from lth_core.models import network_title
from lth_core.report.plots import new_figure, plot_vs_remaining
from lth_core.runs import store
from lth_core.studies.unseen import SETTING_LABEL

OVERALL = "overall"
SAME_SHARE = 0.99
CHANCE_SDS = 3.0
SAME, MORE, AS, LESS = ("the same tickets", "more alike than chance", "as alike as chance",
                        "less alike than chance")
MIXED = "mixed across pairs"
VERDICTS = (SAME, MORE, AS, LESS)
VERDICT_RULE = (f"per pair, over all layers: a common count above the chance mean + {CHANCE_SDS:g} sd is {MORE!r}, "
                f"and {SAME!r} when besides at least {SAME_SHARE:g} of the kept weights are common (at dense levels "
                f"random masks share that much too); below the mean - {CHANCE_SDS:g} sd {LESS!r}; else {AS!r}. A "
                f"comparison's verdict at a level is the one all its pairs get, else {MIXED!r}")
PAIR_KEYS = ["group", "network", "protocol", "setting", "comparison", "run_a", "run_b", "seed_a", "seed_b",
             "found_a", "found_b"]
LEVEL_KEYS = ["group", "network", "protocol", "setting", "comparison", "round"]
# the share of the pool each split's tickets are found on: orders a pair's two runs, the smaller set first
POOL_PERCENT = {"all": 100.0, "half1": 50.0, "half2": 50.0}
SPLIT_LABEL = {"all": "100%", "half1": "S1", "half2": "S2"}
BAND_STYLE = {"color": "grey", "alpha": 0.35, "label": f"random masks (chance, mean +-{CHANCE_SDS:g} sd)"}
CHANCE_LINE = {"color": "grey", "ls": "--", "lw": 1}


def chance_overlap(weights, kept_a, kept_b):
    """(mean, variance) of the weights two random masks of `weights` weights keeping `kept_a` and `kept_b`
    have in common (hypergeometric); numbers or arrays."""
    n, ka, kb = (np.asarray(v, dtype=float) for v in (weights, kept_a, kept_b))
    mean = ka * kb / n
    # factored so that a 4M-weight layer's products stay far from float overflow; one weight: no variance
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 1, mean * (n - ka) * (n - kb) / (n * (n - 1)), 0.0)
    return mean, var


def mask_overlap(masks_a: dict, masks_b: dict) -> pd.DataFrame:
    """Per layer and overall: weights, kept_a, kept_b, common, share, chance_mean, chance_sd, chance_share,
    chance_sd_share, z (see the module docstring)."""
    if set(masks_a) != set(masks_b):
        raise ValueError(f"the masks cover different layers: {sorted(masks_a)} and {sorted(masks_b)}")
    rows = []
    for name, a in masks_a.items():
        b = masks_b[name]
        if a.shape != b.shape:
            raise ValueError(f"layer {name}: masks of shapes {tuple(a.shape)} and {tuple(b.shape)}")
        a, b = a.bool(), b.bool()
        rows.append({"layer": name, "weights": a.numel(), "kept_a": int(a.sum()), "kept_b": int(b.sum()),
                     "common": int((a & b).sum())})
    t = pd.DataFrame(rows)
    t["chance_mean"], t["chance_var"] = chance_overlap(t["weights"], t["kept_a"], t["kept_b"])
    t["smaller"] = np.minimum(t["kept_a"], t["kept_b"])
    total = t.drop(columns="layer").sum().to_dict()  # counts, chance means and variances all add up
    t = pd.concat([t, pd.DataFrame([{"layer": OVERALL, **total}])], ignore_index=True)
    t["chance_sd"] = np.sqrt(t["chance_var"])
    smaller = t["smaller"].where(t["smaller"] > 0)  # a layer pruned away has no share
    t["share"] = t["common"] / smaller
    t["chance_share"] = t["chance_mean"] / smaller
    t["chance_sd_share"] = t["chance_sd"] / smaller
    t["z"] = (t["common"] - t["chance_mean"]) / t["chance_sd"].where(t["chance_sd"] > 0)
    for col in ("weights", "kept_a", "kept_b", "common"):
        t[col] = t[col].astype(int)
    return t.drop(columns=["chance_var", "smaller"])


def found_label(cfg: IMPConfig) -> str:
    """The data a run's tickets are found on: "10%" (a subset of the pool), "100%", "S1", "S2"."""
    return f"{cfg.subset_percent:g}%" if cfg.find_on == "subset" else SPLIT_LABEL[cfg.find_on]


def _pool_percent(cfg: IMPConfig) -> float:
    return cfg.subset_percent if cfg.find_on == "subset" else POOL_PERCENT[cfg.find_on]


def comparison(a: IMPConfig, b: IMPConfig) -> str:
    return f"{found_label(a)} vs {found_label(b)}, {'same seed' if a.seed == b.seed else 'other seeds'}"


def _setting(cfg: IMPConfig) -> IMPConfig:
    """`cfg` but for its seed, the data its tickets are found on and what else its rounds train (which leaves
    the masks alone): runs with the same setting prune to the same levels, so their masks pair."""
    return dataclasses.replace(cfg, seed=0, find_on="all", subset_percent=100.0, retrain_on=(), controls=())


def run_pairs(configs: list[IMPConfig]) -> list[tuple[IMPConfig, IMPConfig]]:
    """Every pair of distinct ticket-finding runs of one setting in `configs`, the run on the smaller share of
    the pool (then the lower seed) first."""
    finders = {}  # runs that differ only in what else they train find the same masks: one of them
    for cfg in configs:
        finders.setdefault((_setting(cfg), cfg.seed, found_label(cfg)), cfg)
    ordered = sorted(finders.values(), key=lambda c: (_pool_percent(c), c.seed))
    return [(a, b) for a, b in itertools.combinations(ordered, 2) if _setting(a) == _setting(b)]


def overlap_table(configs: list[IMPConfig]) -> pd.DataFrame:
    """`mask_overlap` of every pair of `run_pairs(configs)` at every pruned level both runs have stored, one
    row per pair, level and layer (and "overall"); `pct_remaining`: the level's percent of weights left."""
    masks = {}

    def stored(cfg):
        name = store.run_name(cfg)
        if name not in masks:
            masks[name] = store.level_masks(cfg)
            if not masks[name]:
                raise ValueError(f"run {name} has no pruned level stored: compute it first (run_experiment)")
        return masks[name]

    frames = []
    for a, b in run_pairs(configs):
        pair = {"group": store.run_name(_setting(a)), "network": a.network,
                "protocol": "iterations" if a.train.epochs is None else "epochs",
                "setting": setting_of(a.network, a.train), "comparison": comparison(a, b),
                "run_a": store.run_name(a), "run_b": store.run_name(b), "seed_a": a.seed, "seed_b": b.seed,
                "found_a": found_label(a), "found_b": found_label(b)}
        ma, mb = stored(a), stored(b)
        for level in sorted(set(ma) & set(mb)):
            t = mask_overlap(ma[level], mb[level])
            total = t[t["layer"] == OVERALL].iloc[0]
            pct = 100.0 * (total["kept_a"] + total["kept_b"]) / (2 * total["weights"])
            frames.append(t.assign(**pair, round=level, pct_remaining=pct))
    if not frames:
        raise ValueError("no two runs of one setting find masks at the same levels: overlap needs two seeds or two "
                         "finding sets of one setting")
    out = pd.concat(frames, ignore_index=True)
    # a setting's pairs together (pairs come ordered by the runs' finding data, across settings)
    order = {g: i for i, g in enumerate(dict.fromkeys(out["group"]))}
    out = out.sort_values("group", key=lambda g: g.map(order), kind="stable", ignore_index=True)
    first = PAIR_KEYS + ["round", "pct_remaining"]
    return out[first + [c for c in out.columns if c not in first]]


def verdict(share: float, common: float, chance_mean: float, chance_sd: float) -> str:
    """`VERDICT_RULE` applied to one pair's overall overlap."""
    if common > chance_mean + CHANCE_SDS * chance_sd:
        return SAME if share >= SAME_SHARE else MORE
    return LESS if common < chance_mean - CHANCE_SDS * chance_sd else AS


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Per comparison and level (over all layers): the pairs, their shares (mean, min, max), the chance share
    and its sd, the least z, the verdict (`VERDICT_RULE`) and `verdict_counts`, each pair's."""
    t = table[table["layer"] == OVERALL]
    t = t.assign(verdict=[verdict(r.share, r.common, r.chance_mean, r.chance_sd) for r in t.itertuples()])
    out = t.groupby(LEVEL_KEYS, sort=False, dropna=False).agg(
        pct_remaining=("pct_remaining", "mean"), pairs=("run_a", "size"), share_mean=("share", "mean"),
        share_min=("share", "min"), share_max=("share", "max"), chance_share=("chance_share", "mean"),
        chance_sd_share=("chance_sd_share", "max"), z_min=("z", "min"),
        verdict=("verdict", lambda v: v.iloc[0] if v.nunique() == 1 else MIXED),
        verdict_counts=("verdict", _counts))
    return out.reset_index()


def _counts(pair_verdicts) -> str:
    """"more alike than chance: 2, as alike as chance: 1": how many pairs got each verdict, strongest first."""
    counts = Counter(pair_verdicts)
    return ", ".join(f"{v}: {counts[v]}" for v in VERDICTS if v in counts)


def _title(row) -> str:
    """"LeNet-300-100 on MNIST, iterations budget", and the training setting where it is not Table 1's."""
    setting = row["setting"]
    under = f", {SETTING_LABEL.get(setting, setting)}" if isinstance(setting, str) and setting != TABLE1 else ""
    return f"{network_title(row['network'])}{under}, {row['protocol']} budget"


def plot_overlap(table: pd.DataFrame, title: str | None = None):
    """Overall share of kept weights in common against percent of weights left, one line per comparison (mean
    over its pairs, 95% band), random masks' chance mean dashed in a grey band of +-`CHANCE_SDS` sd (the
    verdicts' threshold); below it the same share minus chance's, where a lead of a few hundredths over a
    share of 0.5 shows. One column of two panels per network and setting."""
    overall = table[table["layer"] == OVERALL]
    # line_with_band's 95% band runs over its `seed` column: here a comparison's replicates are its pairs; a
    # categorical comparison gives each one colour in every panel, so one legend names them all
    overall = overall.assign(above=overall["share"] - overall["chance_share"],
                             seed=overall["run_a"] + "|" + overall["run_b"],
                             comparison=pd.Categorical(overall["comparison"],
                                                       categories=list(dict.fromkeys(overall["comparison"]))))
    groups = list(dict.fromkeys(overall["group"]))
    fig, axes = new_figure(ncols=len(groups), nrows=2, width=4.6, height=3.4)
    for i, ((top, bottom), group) in enumerate(zip(axes.T, groups)):
        d = overall[overall["group"] == group]
        chance = d.groupby("pct_remaining", as_index=False).agg(
            mean=("chance_share", "mean"), lo=("chance_share", "min"), hi=("chance_share", "max"),
            sd=("chance_sd_share", "max"))
        x, band = chance["pct_remaining"], CHANCE_SDS * chance["sd"]
        top.fill_between(x, chance["lo"] - band, chance["hi"] + band, **BAND_STYLE)
        top.plot(x, chance["mean"], **CHANCE_LINE)
        # the panel below subtracts each pair's own chance share: its band lies around 0
        bottom.fill_between(x, -band, band, **BAND_STYLE)
        bottom.axhline(0, **CHANCE_LINE)
        plot_vs_remaining(d, "share", top, hue="comparison", ylabel="share of kept weights in common",
                          title=_title(d.iloc[0]))
        top.get_legend().remove()
        top.set_xlabel("")
        plot_vs_remaining(d, "above", bottom, hue="comparison", ylabel="share in common minus chance's")
        if i > 0:  # the first panel's legend names every panel's lines
            bottom.get_legend().remove()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _span(values, spec: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, spec) if format(lo, spec) == format(hi, spec) else f"{format(lo, spec)}-{format(hi, spec)}"


def _levels(pcts) -> str:
    hi, lo = max(pcts), min(pcts)
    return f"at {hi:.3g}%" if hi == lo else f"from {hi:.3g}% to {lo:.3g}%"


def _what(level) -> str:
    """A level's verdict in words; where pairs disagree, how many got which."""
    return f"{MIXED} ({level.verdict_counts})" if level.verdict == MIXED else level.verdict


def verdict_sentences(verdicts_table: pd.DataFrame) -> str:
    """Markdown: per network and setting, each comparison's verdict over the levels, its shares beside
    chance's."""
    blocks = []
    for _, g in verdicts_table.groupby("group", sort=False):
        out = [f"**{_title(g.iloc[0])}**:"]
        for comp, c in g.groupby("comparison", sort=False):
            pairs = c["pairs"].max()
            # consecutive levels with the same verdict are told together
            runs = [list(run) for _, run in itertools.groupby(c.sort_values("round").itertuples(), key=_what)]
            parts = [f"{_what(run[0])} {_levels([r.pct_remaining for r in run])} of weights left (shares in common "
                     f"{_span([r.share_mean for r in run], '.3f')}, random masks "
                     f"{_span([r.chance_share for r in run], '.3f')})" for run in runs]
            out.append(f"- {comp} ({pairs} pair{'s' if pairs > 1 else ''}): " + "; ".join(parts) + ".")
        blocks.append("\n".join(out))
    return "\n\n".join(blocks)  # a blank line ends each list: else the next title would join its last item
