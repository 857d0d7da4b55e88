"""Claims tables: each notebook's verdicts on the paper's claims, as data before prose.

One row per (claim, network): `notebook`, `network`, `claim` (what the paper
says), `paper_figure` (where it says it), `paper` (its value), `ours` (the value
measured here), `rule` (the `rules.Rule` that decides, its text as evaluated, with
the paper's numbers it reads resolved), `verdict` and `why`.

A verdict is "holds" or "does not hold" when the rule could be applied, and
"not judged" when a precondition fails; `why` then says which. Preconditions:
- the network learned what the claim is about: its unpruned test accuracy is at
  least `LEARNED_FRACTION` of the paper's unpruned network's
  (`<network>.dense_test_acc` in the paper's table; `learned`). Tickets of a
  network far below the paper's support no statement about the paper's tickets;
  every claim about a run carries this precondition of that run;
- the run reached the sparsity the claim is about (each study's own rule);
- claims about the paper's absolute numbers need the paper's scale (budget,
  data); a scaled-down run is not judged on them;
- claims resting on early-stopping iterations need a reference (the unpruned
  network) that did not stop in the last tenth of its budget
  (`training.budget_bound`): there "stops no later" holds at every level by
  construction (`budget_bound_reference`).
A verdict from a single seed stays a verdict, and `why` says it rests on one seed.

`claim(...)` applies a rule and its preconditions (`judge`); `save_claims(claims,
notebook)` merges a notebook's rows into `outputs/tables/claims.csv`, which holds
all notebooks' claims (`table="paper_claims"`: the same rules on the paper's own figures,
`studies/paper_run.py`).
"""
from typing import Mapping

import pandas as pd

from lth_core import paths
from lth_core.report.paper import paper_source
from lth_core.report.rules import Precondition, Rule
from lth_core.report.tables import save_table
from lth_core.training import budget_bound

COLUMNS = ["notebook", "network", "claim", "paper_figure", "paper", "ours", "rule", "verdict", "why"]
VERDICTS = ("holds", "does not hold", "not judged")
# The share of the paper's unpruned test accuracy a network needs before its tickets are judged. The paper's own
# Conv-2 trained on half the data (Figure 1 bottom, about 57%) reaches 0.87 of its full-data accuracy (Figure 2
# bottom, about 65%), so 0.8 admits the paper's settings and refuses a network far below what the paper trained.
LEARNED_FRACTION = 0.8


def learned(network: str, what: str = "the unpruned network", quantity: str = "test_acc") -> Precondition:
    """The precondition that `what`, a `network`, learned: on the value `dense_<quantity>` (test_acc, or val_acc
    where the paper plots only validation accuracy)."""
    key, name = f"{network}.dense_{quantity}", f"dense_{quantity}"
    words = {"test_acc": "test", "val_acc": "validation"}[quantity]
    return Precondition(
        Rule(f"{name} >= LEARNED_FRACTION * paper['{key}']", {"LEARNED_FRACTION": LEARNED_FRACTION}),
        what + f" did not learn ({{{name}:.1f}}% {words} accuracy; the paper's unpruned network reaches "
        f"{{paper[{key}]:g}}% ({paper_source(key)}), and at least {LEARNED_FRACTION:.0%} of that is needed)")


def not_learned(network: str, dense_acc: float, what: str = "the unpruned network") -> str | None:
    """Why `what` (a `network` with this unpruned test accuracy) cannot be judged, or None when it learned."""
    return learned(network, what).unmet({"dense_test_acc": dense_acc})


def budget_bound_reference(es_iteration: float, budget: float | None, what: str = "the unpruned network") -> str | None:
    """Why a claim comparing early-stopping iterations with `what`'s cannot be judged, or None:
    `what` early-stopped in the last tenth of its budget (no budget known: None)."""
    if budget is None or pd.isna(budget) or not budget_bound(es_iteration, budget):
        return None
    return (f"{what} early-stopped at iteration {es_iteration:.0f} of a {budget:.0f}-iteration budget "
            "(budget-bound), so no level can stop later than it")


def judge(holds: bool | None, blockers: list[str | None], seeds: int) -> tuple[str, str]:
    """(verdict, why): "not judged" with its reasons when any blocker is set or `holds` is None."""
    reasons = [b for b in blockers if b]
    if reasons or holds is None:
        return "not judged", "; ".join(reasons) or "the rule could not be applied"
    note = "one seed only: no confidence interval" if seeds == 1 else f"mean over {seeds} seeds"
    return ("holds" if holds else "does not hold"), note


def claim(notebook: str, network: str, claim: str, paper_figure: str, paper: str, ours: str, rule: Rule,
          values: Mapping, blockers: list[str | None], seeds: int) -> dict:
    """One row of the claims table: `rule` applied to `values`, not judged when a blocker is set."""
    verdict, why = judge(rule.holds(values), blockers, seeds)
    return dict(zip(COLUMNS, (notebook, network, claim, paper_figure, paper, ours, rule.text(), verdict, why)))


def claims_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def save_claims(claims: pd.DataFrame, notebook: str, table: str = "claims") -> pd.DataFrame:
    """Replace `notebook`'s rows in outputs/tables/<table>.csv (other notebooks' rows stay); the whole table.
    `table` "claims" holds the verdicts on our runs, "paper_claims" the same rules on the paper's own figures."""
    if set(claims["notebook"]) - {notebook}:
        raise ValueError(f"claims of other notebooks {sorted(set(claims['notebook']) - {notebook})} "
                         f"passed as {notebook!r}'s")
    path = paths.tables_dir() / f"{table}.csv"
    others = pd.read_csv(path) if path.exists() else claims_frame([])
    merged = pd.concat([others[others["notebook"] != notebook], claims], ignore_index=True)
    merged = merged.sort_values("notebook", kind="stable", ignore_index=True)
    save_table(merged, table)
    return merged
