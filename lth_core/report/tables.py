"""Tables and the numbers in sentences: one writer, one number formatter.

- `save_table(df, stem)`: tidy CSV (and optionally Markdown) under `outputs/tables/`;
  every table is written by exactly one caller.
- `fmt(x, spec)`: a number as sentences and tables print it ("n/a" when missing);
  `plural(n, unit)`, `points(x)`: counted words ("3 iterations", "1 point").
- `format_count(n)`: weight counts as Table 1 prints them (266K, 4.3M);
  `format_float(x)`: rates as the paper writes them (1e-3, 0.95).
"""
from pathlib import Path

import numpy as np
import pandas as pd

from lth_core import paths


def save_table(df: pd.DataFrame, stem: str, markdown: bool = False) -> list[Path]:
    out = paths.tables_dir()
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.csv"]
    df.to_csv(files[0], index=False)
    if markdown:
        files.append(out / f"{stem}.md")
        files[1].write_text(df.to_markdown(index=False) + "\n")
    return files


def is_missing(x) -> bool:
    """None or NaN: how a table stores a value that does not exist."""
    return x is None or (isinstance(x, (float, np.floating)) and np.isnan(x))


def fmt(x, spec: str = ",.2f", missing: str = "n/a") -> str:
    """`x` formatted with `spec` ("," groups thousands), or `missing` for None/NaN."""
    return missing if is_missing(x) else format(x, spec)


def plural(n: float, unit: str, spec: str = ",.0f") -> str:
    """"1 iteration", "1,100 iterations"."""
    return f"{fmt(n, spec)} {unit}" + ("" if round(n) == 1 else "s")


def points(x: float) -> str:
    """An accuracy difference in words: "1 point", "0.5 points"."""
    return f"{x:g} point" + ("" if x == 1 else "s")


def format_count(n: int) -> str:
    """A weight count the way Table 1 prints it: 266K, 946K, 4.3M."""
    if n < 0:
        raise ValueError(f"a weight count cannot be negative, got {n}")
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{round(n / 1e3)}K"
    return str(n)


def format_float(x: float) -> str:
    """1e-3, 2e-4, 0.95: the shortest exact form, scientific below 0.1."""
    if x != 0 and abs(x) < 0.1:
        return np.format_float_scientific(x, trim="-", exp_digits=1)
    return f"{x:g}"
