"""Claim rules written once: a Python expression that both decides a verdict and is the text the notebook shows.

A `Rule` is an expression over
- named values the study computes (findings columns, the notebook's `tolerance`),
- the paper's keyed numbers, written `paper['key']` (`report.paper`; the key a string literal),
- the project's own named thresholds (`constants`, e.g. a fit's R² cut-off).
`Rule.holds(values)` evaluates it with only those names in scope (no builtins;
the syntax is checked to arithmetic, comparisons and boolean logic when the rule
is made); `Rule.text()` is the same expression followed by the paper numbers and
constants it reads, resolved. The claims table's `rule` column is `text()`, so
the rule shown cannot drift from the rule applied.

A `Precondition` is a rule that must hold before a claim is judged, with the
reason (a `str.format` template over the same names) given when it does not.

`paper_numbers_table(rules, quoted)`: the paper's numbers that some rules read (and
that claims quote), one row each: key, value, the reading's uncertainty, where the
paper states it, its words.
"""
import ast
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

import pandas as pd

from lth_core.report.paper import paper_source, paper_value, paper_values

PAPER = "paper"  # the name under which a rule reads the paper's numbers
# the syntax a rule may use: arithmetic, comparisons, boolean logic, names, literals, paper['key']
_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
            ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Compare, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
            ast.Name, ast.Load, ast.Constant, ast.Subscript)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _number(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)


@dataclass(frozen=True)
class Rule:
    """An expression over named values, `paper['key']` numbers and `constants`; see the module docstring."""
    expression: str
    constants: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        try:
            tree = ast.parse(self.expression, mode="eval")
        except SyntaxError as e:
            raise ValueError(f"rule {self.expression!r} is not a Python expression: {e.msg}") from None
        keys, names = [], []
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise ValueError(f"rule {self.expression!r} uses {type(node).__name__}; a rule may use only "
                                 "arithmetic, comparisons, and/or/not, names and paper['key']")
            if isinstance(node, ast.Subscript):
                if not (isinstance(node.value, ast.Name) and node.value.id == PAPER
                        and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                    raise ValueError(f"rule {self.expression!r}: only paper['key'] with a literal key may be "
                                     "subscripted")
                paper_value(node.slice.value)  # an unknown key fails here, when the rule is made
                keys.append(node.slice.value)
            elif isinstance(node, ast.Name) and node.id != PAPER and node.id not in self.constants:
                names.append(node.id)
        object.__setattr__(self, "constants", MappingProxyType(dict(self.constants)))
        object.__setattr__(self, "_code", compile(tree, f"<rule {self.expression}>", "eval"))
        object.__setattr__(self, "paper_keys", tuple(dict.fromkeys(keys)))
        object.__setattr__(self, "names", tuple(dict.fromkeys(names)))

    def namespace(self, values: Mapping) -> dict:
        """The names the expression sees: its values (a missing one as None), constants and the paper's numbers."""
        absent = [n for n in self.names if n not in values]
        if absent:
            raise ValueError(f"rule {self.expression!r} needs values {absent}; given {sorted(values)}")
        ns = {n: None if _missing(values[n]) else values[n] for n in self.names}
        return ns | dict(self.constants) | {PAPER: {k: paper_value(k) for k in self.paper_keys}}

    def holds(self, values: Mapping) -> bool | None:
        """The expression's truth on `values`; None when a value it compares is missing (the rule cannot apply)."""
        try:
            return bool(eval(self._code, {"__builtins__": {}}, self.namespace(values)))
        except TypeError:  # None met arithmetic or an order comparison: a value the rule needs is missing
            return None

    def text(self) -> str:
        """The expression as written, then the paper's numbers and constants it reads, resolved."""
        resolved = ([f"{PAPER}['{k}'] = {_number(paper_value(k))}" for k in self.paper_keys]
                    + [f"{k} = {_number(v)}" for k, v in self.constants.items()])
        return self.expression + (", where " + ", ".join(resolved) if resolved else "")


@dataclass(frozen=True)
class Precondition:
    """A rule that must hold before a claim is judged, and why not (a template over the rule's names and
    `paper`, a dict of the numbers it reads) when it does not."""
    rule: Rule
    reason: str

    def unmet(self, values: Mapping) -> str | None:
        """None when the rule holds on `values`, else the reason, naming the rule that failed."""
        held = self.rule.holds(values)
        if held:
            return None
        if held is None:
            return f"{self.rule.expression} cannot be evaluated: a value it needs is missing"
        return f"{self.reason.format(**(dict(values) | self.rule.namespace(values)))} (needs {self.rule.expression})"


def paper_numbers_table(rules: Iterable[Rule | Precondition], quoted: Iterable[str] = ()) -> pd.DataFrame:
    """The paper's numbers that `rules` read, then the `quoted` keys (numbers a claim's text cites without a
    rule deciding on them): key, value, uncertainty, where the paper states it, its words."""
    keys = dict.fromkeys([k for r in rules for k in (r.rule if isinstance(r, Precondition) else r).paper_keys]
                         + list(quoted))
    table = paper_values().set_index("key")
    return pd.DataFrame([{"key": k, "value": paper_value(k), "uncertainty": table.loc[k, "uncertainty"],
                          "where": paper_source(k), "stated_as": table.loc[k, "stated_as"]} for k in keys],
                        columns=["key", "value", "uncertainty", "where", "stated_as"])
