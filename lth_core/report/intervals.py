"""Confidence intervals over seeds: the mean of a few values and its Student-t interval.

- `t_quantile(p, df)`: the p-quantile of Student's t distribution with `df` degrees of freedom;
- `mean_interval(values, level)`: (mean, low, high) of the mean of `values` (NaN bounds from one value).

With three seeds the normal approximation (1.96) would understate the interval's width by more than half
(t with 2 degrees of freedom: 4.30), and a bootstrap of three values cannot reach past their extremes; so
claims judged on a few seeds use the t interval. Computed here with the standard library (the t density
integrated by Simpson's rule, inverted by bisection): the project has no SciPy.
"""
import math
from functools import lru_cache
from typing import Iterable

SIMPSON_STEPS = 2000  # even; the quantiles it gives agree with tables to 4 decimals for df >= 1


def _t_density(x: float, df: float) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf(x: float, df: float) -> float:
    """P(T <= x) for x >= 0: 1/2 plus the density integrated over [0, x]."""
    h = x / SIMPSON_STEPS
    inner = sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, SIMPSON_STEPS))
    return 0.5 + h / 3 * (_t_density(0.0, df) + inner + _t_density(x, df))


@lru_cache(maxsize=None)  # a claims table asks for the same few quantiles many times
def t_quantile(p: float, df: float) -> float:
    """The `p`-quantile of Student's t with `df` degrees of freedom (p in (0, 1), df > 0)."""
    if not 0 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs p in (0, 1) and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:  # bracket the quantile
        lo, hi = hi, 2 * hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided `level` t interval of the mean; low and high are NaN for one value."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    half = t_quantile(0.5 + level / 2, len(xs) - 1) * sd / math.sqrt(len(xs))
    return mean, mean - half, mean + half
