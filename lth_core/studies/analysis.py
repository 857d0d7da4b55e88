"""Reading results: the dense reference, how far tickets stay within tolerance, winning tickets, mean gaps.

All functions take the tidy rows of `run_experiment` (or the paper's figure points as rows of the same
form, `studies/paper_run.py`) and compute, never hard-code, the statements the notebooks make in prose. A
level's value is the mean over seeds.

Every accuracy comparison here is judged one way, for our runs and the paper's figures alike: a gap
(curve minus reference, paired by seed) is within tolerance when the upper end of its 95% interval over
seeds (the gap itself from one seed) is at least `-(tolerance + allowance)`. The allowance is the reading
uncertainty of a figure's points (column `uncertainty`, the two readings' combined half-width; 0 for our
own runs, which have no reading error). So a verdict "outside tolerance" needs evidence that the curve is
below it, not one noisy point.
"""
import math

import pandas as pd

from lth_core.report.intervals import mean_interval


def level_means(df: pd.DataFrame, by=("pct_remaining",), cols=("test_acc", "es_iteration")) -> pd.DataFrame:
    """Mean (over seeds) of `cols` per pruning level, sorted from dense to sparse."""
    return (df.groupby(list(by), as_index=False)[list(cols)].mean()
              .sort_values("pct_remaining", ascending=False, ignore_index=True))


def dense_reference(df: pd.DataFrame) -> pd.Series:
    """Mean test accuracy and early-stopping iteration of the unpruned network (round 0), and its
    training budget when the rows carry one (NaN otherwise)."""
    dense = df[df["round"] == 0]
    if dense.empty:
        raise ValueError("no round-0 (unpruned) rows to compare with")
    return dense.reindex(columns=["test_acc", "es_iteration", "budget"]).mean()


def _uncertainty(df: pd.DataFrame) -> pd.Series:
    return df["uncertainty"].fillna(0.0) if "uncertainty" in df else pd.Series(0.0, index=df.index)


def gap_bound(gaps: pd.Series) -> tuple[float, float]:
    """(mean, upper end of its 95% interval over seeds) of per-seed gaps; the upper end is the mean from one seed."""
    mean, _, high = mean_interval(gaps)
    return mean, mean if math.isnan(high) else high


def level_gaps(df: pd.DataFrame, tolerance: float, y: str = "test_acc") -> pd.DataFrame:
    """Per level, dense to sparse: the mean of `y` over seeds, its gap to the unpruned level (round 0) of the
    same seed, the gap's upper 95% bound over seeds, the reading allowance and `within` (module docstring)."""
    dense = df[df["round"] == 0]
    if dense.empty:
        raise ValueError("no round-0 (unpruned) rows to compare with")
    ref = dense.groupby("seed")[y].mean()
    ref_u = _uncertainty(dense).groupby(dense["seed"]).mean()
    d = df.assign(gap=df[y] - df["seed"].map(ref), u=(_uncertainty(df) ** 2 + df["seed"].map(ref_u) ** 2) ** 0.5)
    out = []
    for level, g in d.groupby("pct_remaining"):
        gap, high = gap_bound(g["gap"])
        allowance = float(g["u"].mean())
        out.append({"pct_remaining": float(level), y: float(g[y].mean()), "gap": gap, "gap_high": high,
                    "allowance": allowance, "within": high >= -(tolerance + allowance)})
    return pd.DataFrame(out).sort_values("pct_remaining", ascending=False, ignore_index=True)


def sparsest_within_tolerance(df: pd.DataFrame, tolerance: float) -> float | None:
    """Smallest percent remaining such that every level from dense down to it is within tolerance of the
    unpruned level (`level_gaps`); None when even the unpruned level is not (it never is: its gap is 0)."""
    last = None
    for _, row in level_gaps(df, tolerance).iterrows():
        if not row["within"]:
            break
        last = row["pct_remaining"]
    return last


def winning_levels(df: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Levels whose accuracy is within tolerance of dense (`level_gaps`) and whose mean early stopping is not
    later than dense's."""
    m = level_means(df)
    within = level_gaps(df, tolerance).set_index("pct_remaining")["within"]
    m["winning"] = (m["pct_remaining"].map(within).astype(bool)
                    & (m["es_iteration"] <= dense_reference(df)["es_iteration"]))
    return m


def mean_gap(curve: pd.DataFrame, reference: pd.DataFrame, on: list[str], y: str = "test_acc") -> dict:
    """`curve` against `reference` over the levels both have (matched on `on` and the seed): per seed the mean
    over those levels of curve minus reference, then its mean and upper 95% bound over seeds (`gap`,
    `gap_high`), the reading allowance of one gap (`allowance`: root mean square of the two readings'
    combined uncertainty) and the `levels` compared."""
    keys = ["seed", *on]
    both = curve.merge(reference, on=keys, suffixes=("", "_ref"))
    both = both.assign(u=_uncertainty(both) ** 2 + (both["uncertainty_ref"].fillna(0.0) ** 2
                                                      if "uncertainty_ref" in both else 0.0))
    if both.empty:
        return {"gap": None, "gap_high": None, "allowance": 0.0, "levels": 0}
    per_seed = (both[y] - both[f"{y}_ref"]).groupby(both["seed"]).mean()
    gap, high = gap_bound(per_seed)
    return {"gap": gap, "gap_high": high, "allowance": float(both["u"].mean() ** 0.5),
            "levels": int(both[on].drop_duplicates().shape[0])}
