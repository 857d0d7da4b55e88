"""Reading results: the dense reference, how far tickets stay within tolerance, winning tickets.

All functions take the tidy rows of `run_experiment` and compute, never hard-code,
the statements the notebooks make in prose. A level's value is the mean over seeds.
"""
import pandas as pd


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


def sparsest_within_tolerance(df: pd.DataFrame, reference_acc: float, tolerance: float) -> float | None:
    """Smallest percent remaining such that every level from dense down to it is within tolerance."""
    last = None
    for _, row in level_means(df).iterrows():
        if row["test_acc"] < reference_acc - tolerance:
            break
        last = float(row["pct_remaining"])
    return last


def winning_levels(df: pd.DataFrame, reference: pd.Series, tolerance: float) -> pd.DataFrame:
    """Levels whose mean accuracy is within tolerance of dense and early stopping is not later."""
    m = level_means(df)
    m["winning"] = ((m["test_acc"] >= reference["test_acc"] - tolerance)
                    & (m["es_iteration"] <= reference["es_iteration"]))
    return m
