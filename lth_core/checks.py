"""The vocabulary of value checks: rules that say whether a value is valid, and in words what is.

A rule is a function of one value that returns None when the value is valid, else the valid
range in words ("an integer >= 1"). The configuration types (`config.py`) declare one rule per
field and apply them when a config is made; the notebook parameter check (`params/notebook.py`)
calls the same rules, so a library user and a notebook user are told the same words.

- constructors: `integer`, `number`, `fraction_open`, `percent`, `boolean`, `one_of`, `distinct`
  (a list of distinct names from a vocabulary), `distinct_list` (a list of distinct values each
  valid by one rule), `instance_of`, `explained` (a rule with a reason added to its words);
- `ConfigError(owner, field, value, valid)`: the one error of a value out of range;
- `check(owner, field, value, rule)` raises a value's ConfigError; `apply(owner, obj, rules)` the first
  of `obj`'s fields under `rules`.
"""
import math
import numbers
from typing import Callable

Rule = Callable[[object], str | None]


class ConfigError(ValueError):
    """A value out of its range: who owns it (`owner`, e.g. "IMPConfig"), the `field`, the `value`
    and the valid range in words (`valid`), in a one-line message."""

    def __init__(self, owner: str, field: str, value, valid: str):
        self.owner, self.field, self.value, self.valid = owner, field, value, valid
        super().__init__(f"{owner}: {field} = {value!r} is out of range; valid: {valid}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional(words: str, optional: bool) -> str:
    return f"None or {words}" if optional else words


def integer(lo: int, hi: int | None = None, optional: bool = False) -> Rule:
    """An integer (not a float, not a bool) in [lo, hi]; no upper bound when `hi` is None."""
    words = _optional(f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}", optional)

    def rule(value):
        if value is None and optional:
            return None
        return None if _is_int(value) and lo <= value and (hi is None or value <= hi) else words
    return rule


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
           optional: bool = False, words: str | None = None) -> Rule:
    """A finite int or float between `lo` and `hi` (either bound open or absent); NaN is never in range."""
    if words is None:
        if lo is not None and hi is not None:
            words = f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        elif lo is not None:
            words = f"a finite number {'>' if lo_open else '>='} {lo}"
        else:
            words = "a finite number"
    words = _optional(words, optional)

    def rule(value):
        if value is None and optional:
            return None
        if not (_is_number(value) and math.isfinite(value)):
            return words
        above = lo is None or (value > lo if lo_open else value >= lo)
        below = hi is None or (value < hi if hi_open else value <= hi)
        return None if above and below else words
    return rule


def fraction_open(optional: bool = False) -> Rule:
    """A number in (0, 1), both ends excluded (a pruning rate: 0 prunes nothing, 1 every weight)."""
    return number(0, 1, lo_open=True, hi_open=True, optional=optional, words="a fraction in (0, 1)")


def percent() -> Rule:
    """A number in (0, 100]: a share of a set that holds some of it."""
    return number(0, 100, lo_open=True)


def boolean() -> Rule:
    """True or False (not 0 or 1, which would store as another type)."""
    return lambda value: None if isinstance(value, bool) else "True or False"


def one_of(choices) -> Rule:
    """One of `choices` (names)."""
    choices = tuple(choices)
    words = f"one of {', '.join(map(str, choices))}"
    return lambda value: None if isinstance(value, str) and value in choices else words


def distinct(choices, what: str, non_empty: bool = False) -> Rule:
    """A list (or tuple) of distinct members of `choices`; a repeated name would repeat its runs."""
    choices = tuple(choices)
    words = f"{'a non-empty' if non_empty else 'a'} list of distinct {what} from {list(choices)}"

    def rule(values):
        ok = (isinstance(values, (list, tuple)) and all(isinstance(v, str) and v in choices for v in values)
              and len(set(values)) == len(values) and (values or not non_empty))
        return None if ok else words
    return rule


def distinct_list(item: Rule, what: str, non_empty: bool = False, including=None) -> Rule:
    """A list (or tuple) of distinct values, each valid by `item`; when `including` is given, a non-empty
    list holds it (an empty one is still valid unless `non_empty`)."""
    head = "a non-empty list" if non_empty else "a list"
    needs = f" that includes {including!r}" if including is not None else ""
    words = f"{head} of distinct {what}{needs}, each {item(object())}"  # an object() is no valid item: its words

    def rule(values):
        if not isinstance(values, (list, tuple)):
            return words
        if not values:
            return words if non_empty else None
        ok = (all(item(v) is None for v in values) and len(set(values)) == len(values)
              and (including is None or including in values))
        return None if ok else words
    return rule


def instance_of(cls: type) -> Rule:
    """An instance of `cls`."""
    return lambda value: None if isinstance(value, cls) else f"a {cls.__name__}"


def explained(rule: Rule, why: str) -> Rule:
    """`rule`, its words followed by `why` in parentheses (where the range comes from)."""
    def explained_rule(value):
        words = rule(value)
        return words and f"{words} ({why})"
    return explained_rule


def plain(value):
    """`value` as a plain Python number when it is another kind of number (a NumPy scalar): configs are
    stored and named as JSON, which knows only Python's numbers. Other values are returned as they are."""
    if isinstance(value, bool) or type(value) in (int, float) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check(owner: str, field: str, value, rule: Rule):
    """`value` when `rule` accepts it; else its ConfigError."""
    valid = rule(value)
    if valid is not None:
        raise ConfigError(owner, field, value, valid)
    return value


def apply(owner: str, obj, rules: dict[str, Rule]) -> None:
    """Raise the ConfigError of the first field of `obj` (in `rules`' order) that its rule refuses."""
    for field, rule in rules.items():
        check(owner, field, getattr(obj, field), rule)
