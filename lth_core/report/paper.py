"""The paper's own numbers, in one tidy table: `paper_values.csv` beside this file.

One row per number the paper reports: values stated in its text and Table 1
(`uncertainty` 0) and points read off its figures (`../shared/paper/figures/`;
`uncertainty` is the half-width of the reading). Columns:
- `key`: a unique name for a number a claim's rule uses (empty for figure points);
- `source`, `panel`: where the paper gives it ("Figure 1", "top"; "Section 4");
- `network`, `series`, `quantity`, `x`: what it is (`x`: percent of weights
  remaining for figure points, empty for scalars);
- `value`, `uncertainty`, `stated_as`: the number, how sure, and the paper's words
  or how it was read.

`paper_values()` reads and checks the table; `has_paper_value(key)`, `paper_value(key)` and
`paper_source(key)` give one keyed number and where the paper states it;
`paper_series(source, panel)` the figure points of one panel; `FIGURE_PANEL` which
panel of Figures 1-3 shows a network.
"""
from functools import cache
from pathlib import Path

import pandas as pd

PAPER_VALUES_CSV = Path(__file__).with_name("paper_values.csv")
FIGURE_PANEL = {"lenet_300_100": "top", "conv2": "bottom"}  # Figures 1-3: LeNet above, Conv-2 below
COLUMNS = ["key", "source", "panel", "network", "series", "quantity", "x", "value", "uncertainty", "stated_as"]


@cache
def paper_values() -> pd.DataFrame:
    """The whole table, checked: the expected columns, unique keys, a number in every `value`."""
    table = pd.read_csv(PAPER_VALUES_CSV, dtype={"key": str, "panel": str, "network": str, "series": str},
                        keep_default_na=False, na_values={"x": [""], "value": [""], "uncertainty": [""]})
    if list(table.columns) != COLUMNS:
        raise ValueError(f"{PAPER_VALUES_CSV}: columns {list(table.columns)}, expected {COLUMNS}")
    keys = table.loc[table["key"] != "", "key"]
    if keys.duplicated().any():
        raise ValueError(f"{PAPER_VALUES_CSV}: repeated keys {sorted(set(keys[keys.duplicated()]))}")
    if table["value"].isna().any():
        raise ValueError(f"{PAPER_VALUES_CSV}: rows without a value: {table.index[table['value'].isna()].tolist()}")
    return table


def _row(key: str) -> pd.Series:
    table = paper_values()
    hit = table[table["key"] == key]
    if hit.empty:
        raise KeyError(f"no paper value {key!r} in {PAPER_VALUES_CSV.name}")
    return hit.iloc[0]


def has_paper_value(key: str) -> bool:
    """Whether `paper_values.csv` has a number named `key`."""
    return bool((paper_values()["key"] == key).any())


def paper_value(key: str) -> float:
    """The paper's number named `key`."""
    return float(_row(key)["value"])


def paper_source(key: str) -> str:
    """Where the paper states `key` ("Section 4", "Figure 4 top")."""
    row = _row(key)
    return f"{row['source']} {row['panel']}".strip()


def paper_series(source: str, panel: str = "") -> pd.DataFrame:
    """The points read off one figure panel (`source` "Figure 1", `panel` "top")."""
    table = paper_values()
    return table[(table["source"] == source) & (table["panel"] == panel) & (table["key"] == "")].reset_index(drop=True)
