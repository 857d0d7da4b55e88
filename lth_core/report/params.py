"""Notebook parameters: declared once in a notebook's `parameters` cell, validated right after.

A notebook's parameters cell holds flat annotated assignments
(`seeds: list = [0]  # comment`, `limit: Optional[int] = None  # comment`), in
the form papermill's own parser reads (`--help-notebook`, its unknown-parameter
warnings): `Optional[...]` rather than `... | None`, and no `=` in comments.
`declared_parameters(notebook)` reads them from the notebook file with `ast`;
`validate_parameters(globals(), notebook)` checks the values papermill injected:
a name no project notebook declares is an error naming the valid ones (papermill
itself only warns), and a value whose type does not match its annotation is an
error. Names declared by another notebook
are accepted, so one profile file (`notebooks/params/<profile>.yaml`) can serve
every notebook. `load_profile(name)` reads such a file; `network_overrides(P, network)`
turns a network's prefixed parameters (`lenet_iterations`, ...) into config overrides.
"""
import ast
import json
import types
from pathlib import Path

import yaml

from lth_core import paths

PARAM_PREFIX = {"lenet_300_100": "lenet", "conv2": "conv2"}  # notebook parameter names: lenet_iterations, ...
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


class ParameterError(ValueError):
    pass


def _notebook_path(notebook: str, notebooks_dir: Path | None = None) -> Path:
    path = Path(notebooks_dir or paths.NOTEBOOKS_DIR) / f"{notebook}.ipynb"
    if not path.exists():
        raise ParameterError(f"no notebook {notebook!r} in {path.parent}")
    return path


def _parameters_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ParameterError(f"{path.name} must have exactly one cell tagged 'parameters', found {len(tagged)}")
    src = tagged[0]["source"]
    return "".join(src) if isinstance(src, list) else src


def _type_names(annotation: ast.expr) -> list[str]:
    """`int` -> [int]; `Optional[int]` and `int | None` -> [int, None]. Notebooks write Optional[...]:
    papermill's parameter parser does not read `|`, and would call those parameters unknown."""
    if (isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name)
            and annotation.value.id == "Optional"):
        return _type_names(annotation.slice) + ["None"]
    return [n.strip() for n in ast.unparse(annotation).split("|")]


def declared_parameters(notebook: str, notebooks_dir: Path | None = None
                        ) -> dict[str, tuple[tuple[type, ...], bool, object]]:
    """{name: (accepted types, None allowed, default)} from the notebook's parameters cell."""
    out = {}
    for node in ast.parse(_parameters_source(_notebook_path(notebook, notebooks_dir))).body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            raise ParameterError(f"{notebook}: parameters cell lines must be `name: type = value`, "
                                 f"got {ast.unparse(node)!r}")
        names = _type_names(node.annotation)
        unknown = [n for n in names if n not in _TYPES and n != "None"]
        if unknown:
            raise ParameterError(f"{notebook}: parameter {node.target.id} has unsupported type {unknown}")
        accepted = tuple(_TYPES[n] for n in names if n != "None")
        if float in accepted:
            accepted += (int,)  # 1 is a fine float
        out[node.target.id] = (accepted, "None" in names, ast.literal_eval(node.value))
    return out


def all_declared(notebooks_dir: Path | None = None) -> dict[str, dict]:
    d = Path(notebooks_dir or paths.NOTEBOOKS_DIR)
    return {p.stem: declared_parameters(p.stem, d) for p in sorted(d.glob("[0-9]*.ipynb"))}


def check_value(notebook: str, name: str, value, spec) -> None:
    accepted, nullable, _ = spec
    if value is None and nullable:
        return
    if isinstance(value, bool) and bool not in accepted:  # bool is an int subclass; 1 != True here
        ok = False
    else:
        ok = isinstance(value, accepted)
    if not ok:
        want = " or ".join(t.__name__ for t in accepted) + (" or None" if nullable else "")
        raise ParameterError(f"{notebook}: parameter {name!r} must be {want}, got {value!r} "
                             f"({type(value).__name__})")


def validate_parameters(namespace: dict, notebook: str, notebooks_dir: Path | None = None) -> dict:
    """Check the notebook's parameter values in `namespace`; return {name: value} of its parameters.

    Call it from the cell right after the parameters cell: globals then hold only
    imports and parameters (papermill's injected values included)."""
    mine = declared_parameters(notebook, notebooks_dir)
    others = {n for nb, decl in all_declared(notebooks_dir).items() if nb != notebook for n in decl}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IPYTHON_NAMES or name in mine or name in others:
            continue
        if isinstance(value, (types.ModuleType, types.FunctionType, type)) or callable(value):
            continue
        raise ParameterError(f"{notebook}: unknown parameter {name!r}; valid parameters: {', '.join(mine)}")
    for name, spec in mine.items():
        check_value(notebook, name, namespace[name], spec)
    return {name: namespace[name] for name in mine}


def network_overrides(params: dict, network: str) -> dict:
    """The per-network notebook parameters (lenet_iterations, ...) as paper_config overrides."""
    p = PARAM_PREFIX[network]
    return {"iterations": params[f"{p}_iterations"], "eval_every": params[f"{p}_eval_every"],
            "rounds": params[f"{p}_rounds"], "train_limit": params[f"{p}_train_limit"],
            "val_size": params[f"{p}_val_size"], "test_limit": params[f"{p}_test_limit"]}


def profile_path(profile: str) -> Path:
    path = paths.PARAMS_DIR / f"{profile}.yaml"
    if not path.exists():
        valid = ", ".join(p.stem for p in sorted(paths.PARAMS_DIR.glob("*.yaml")))
        raise ParameterError(f"unknown profile {profile!r}; valid profiles: {valid}")
    return path


def load_profile(profile: str) -> dict:
    values = yaml.safe_load(profile_path(profile).read_text()) or {}
    known = {n for decl in all_declared().values() for n in decl}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(f"profile {profile!r} sets unknown parameters {unknown}; "
                             f"valid parameters: {', '.join(sorted(known))}")
    return values
