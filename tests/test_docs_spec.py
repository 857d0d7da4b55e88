"""docs/reproduction-spec.md says what the code does: its names exist, its defaults and parameter tables are true.

- Every code span naming an `lth_core` object (`config.PAPER_TRAINING`, `TrainConfig.patience`, ...)
  names one that exists; a span `name = value` with a literal value states that object's value
  (a dataclass field's default).
- The parameter tables (in "The experiments and their parameters", rows of parameter, field,
  default, quick, paper) give each notebook parameter's default as its parameters cell declares
  it, and each profile's value as `notebooks/params/<profile>.yaml` sets it ("default": the
  profile keeps the notebook's).
- Every notebook parameter that changes what runs compute has a row.
"""
import ast
import dataclasses
import importlib
import importlib.util
import re

import yaml

from lth_core import paths
from lth_core.params.notebook import declared_parameters

SPEC = paths.REPO_ROOT / "docs" / "reproduction-spec.md"
NOTEBOOKS = sorted(p.stem for p in paths.NOTEBOOKS_DIR.glob("*.ipynb"))
PROFILE_COLUMNS = ("quick", "paper")  # the tables' columns after the notebook default, in order
WHERE_NOT_WHAT = {"device", "executor", "executor_options"}  # parameters with no row: where runs execute
CLASSES = {"IMPConfig": "config", "TrainConfig": "config"}  # classes the spec names without their module
CODE_SPAN = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\s*=\s*(.+))?")
ROW = re.compile(r"^\|\s*`(\w+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|\s*$", re.MULTILINE)
PARAMETER_SECTION = "## The experiments and their parameters"
MISSING = object()


def resolve(dotted: str):
    """The lth_core object `dotted` names (module path then attributes), MISSING when it names none, or
    None when its first part is not an lth_core module or class (another library's name)."""
    parts = dotted.split(".")
    if parts[0] in CLASSES:
        parts = [CLASSES[parts[0]], *parts]
    obj = None
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("lth_core." + ".".join(parts[:i]))
            break
        except ModuleNotFoundError:
            continue
    if obj is None:
        return None
    for attr in parts[i:]:
        fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
        if attr in fields and fields[attr].default is not dataclasses.MISSING:
            obj = fields[attr].default
        else:
            obj = getattr(obj, attr, MISSING)
        if obj is MISSING:
            return MISSING
    return obj


def name_problems(text: str) -> list[str]:
    """Code spans naming an lth_core object that does not exist, or stating a value it does not have."""
    out = []
    for span in CODE_SPAN.findall(text):
        match = DOTTED.match(span)
        if not match:
            continue
        obj = resolve(match.group(1))
        if obj is MISSING:
            out.append(f"`{span}`: lth_core has no {match.group(1)}")
            continue
        if obj is None or match.group(2) is None:
            continue
        try:
            stated = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            continue  # a placeholder such as `TrainConfig.epochs = E`
        if stated != obj:
            out.append(f"`{span}`: the code has {obj!r}")
    return out


def cell_value(cell: str, default):
    cell = cell.strip()
    return default if cell == "default" else ast.literal_eval(cell.strip("`"))


def table_problems(text: str, declared: dict[str, dict], profiles: dict[str, dict]) -> list[str]:
    """Rows of the parameter tables whose default or profile values differ from the notebooks' and profiles'."""
    out = []
    for name, _field, default_cell, *profile_cells in ROW.findall(text):
        defaults = {nb: params[name][2] for nb, params in declared.items() if name in params}
        if not defaults:
            out.append(f"{name}: no notebook declares it")
            continue
        default = cell_value(default_cell, None)
        out += [f"{name}: default {default!r} in the spec, {value!r} in {nb}"
                for nb, value in defaults.items() if value != default]
        for profile, cell in zip(PROFILE_COLUMNS, profile_cells):
            stated, actual = cell_value(cell, default), profiles[profile].get(name, default)
            if stated != actual:
                out.append(f"{name}: {stated!r} for the {profile} profile in the spec, {actual!r} in its yaml")
    return out


def parameter_section(text: str) -> str:
    """The spec's section holding the parameter tables (to the next level-2 heading)."""
    start = text.index(PARAMETER_SECTION) + len(PARAMETER_SECTION)
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


def declared_all() -> dict[str, dict]:
    return {nb: declared_parameters(nb) for nb in NOTEBOOKS}


def profiles_all() -> dict[str, dict]:
    return {p: yaml.safe_load((paths.PARAMS_DIR / f"{p}.yaml").read_text()) or {} for p in PROFILE_COLUMNS}


def test_named_objects_exist_with_the_stated_values():
    problems = name_problems(SPEC.read_text())
    assert not problems, "docs/reproduction-spec.md disagrees with the code: " + "; ".join(problems)


def test_parameter_tables_match_notebooks_and_profiles():
    problems = table_problems(parameter_section(SPEC.read_text()), declared_all(), profiles_all())
    assert not problems, "docs/reproduction-spec.md's parameter tables: " + "; ".join(problems)


def test_every_notebook_parameter_has_a_row():
    rows = {name for name, *_ in ROW.findall(parameter_section(SPEC.read_text()))}
    missing = sorted({n for params in declared_all().values() for n in params} - WHERE_NOT_WHAT - rows)
    assert not missing, f"add a row to docs/reproduction-spec.md's parameter tables for {missing}"


def test_the_checks_catch_a_wrong_spec():
    """A wrong default, a name the code lacks and a wrong table entry are each reported; true ones are not."""
    text = "\n".join([
        "`TrainConfig.eval_every = 100` `TrainConfig.eval_every = 7` `imp.NO_SUCH_NAME` `torch.optim.Adam`",
        "`TrainConfig.epochs = E` `training.ADAM_BETAS = (0.9, 0.999)`",
        "| `lenet_rounds` | `IMPConfig.rounds` | 3 | 10 | default |",
        "| `not_a_parameter` | x | 1 | 1 | 1 |",
    ])
    assert name_problems(text) == ["`TrainConfig.eval_every = 7`: the code has 100",
                                   "`imp.NO_SUCH_NAME`: lth_core has no imp.NO_SUCH_NAME"]
    declared = {"nb": {"lenet_rounds": ((int,), False, 3)}}
    assert table_problems(text, declared, {"quick": {"lenet_rounds": 10}, "paper": {}}) == [
        "not_a_parameter: no notebook declares it"]
    assert table_problems(text, declared, {"quick": {"lenet_rounds": 9}, "paper": {"lenet_rounds": 18}}) == [
        "lenet_rounds: 10 for the quick profile in the spec, 9 in its yaml",
        "lenet_rounds: 3 for the paper profile in the spec, 18 in its yaml",
        "not_a_parameter: no notebook declares it"]


def _spec_tables():
    """docs/make_spec_tables.py, the generator of the parameter tables' profile columns."""
    spec = importlib.util.spec_from_file_location("make_spec_tables", paths.REPO_ROOT / "docs" / "make_spec_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_columns_are_generated_from_the_yaml():
    text = SPEC.read_text()
    assert _spec_tables().render(text) == text, (
        "docs/reproduction-spec.md's profile columns differ from notebooks/params/*.yaml: "
        "run `python docs/make_spec_tables.py` (`--check` lists the rows)")


def test_the_generator_writes_each_profile_column():
    """Set values as the spec writes them, "default" where a profile leaves the parameter; other cells kept."""
    text = "\n".join([
        "## The experiments and their parameters", "",
        "| parameter | field | default | `a` | `b` |", "|---|---|---|---|---|",
        "| `rounds` | `IMPConfig.rounds` (`x | y`) | 3 | 1 | 2 |",
        "| `lr` | `TrainConfig.lr` | 2e-4 | default | default |",
        "| `controls` | `IMPConfig.controls` | `[\"reinit\"]` | 7 | default |",
        "", "| `rounds` | not a parameter table | 3 | 1 | 2 |", "", "## Next", "| `rounds` | x | 1 | 1 | 1 |"])
    out = _spec_tables().render(text, {"a": {"rounds": 8, "lr": 0.0002, "limit": None},
                                       "b": {"controls": ["reinit", "random_prune"], "rounds": None}})
    assert out.splitlines()[4:7] == [
        "| `rounds` | `IMPConfig.rounds` (`x | y`) | 3 | 8 | `None` |",
        "| `lr` | `TrainConfig.lr` | 2e-4 | 2e-4 | default |",
        "| `controls` | `IMPConfig.controls` | `[\"reinit\"]` | default | `[\"reinit\", \"random_prune\"]` |"]
    assert out.splitlines()[7:] == text.splitlines()[7:]  # outside the tables and the section: unchanged
