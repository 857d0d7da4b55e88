"""Notebook parameters: declared once in a notebook's `parameters` cell, validated right after.

A notebook's parameters cell holds flat annotated assignments
(`seeds: list = [0]  # comment`, `limit: Optional[int] = None  # comment`), in
the form papermill's own parser reads (`--help-notebook`, its unknown-parameter
warnings): `Optional[...]` rather than `... | None`, and no `=` in comments.
The cell opens with `PARAMETERS_HEADER`. `declared_parameters(notebook)` reads
them from the notebook file with `ast`; `validate_parameters(globals(), notebook)`
checks the notebook's values. In a kernel it reads the declarations from the
parameters cell run last (the newest entry of IPython's input history `In` that
opens with the header), so an edited, unsaved parameters cell counts and the
validation cell can be re-run at any time; without that history it reads the
file. The names papermill injected (its cell opens with `INJECTED_HEADER`, run
after the parameters cell) must be parameters: a name no project notebook
declares is an error naming the valid ones (papermill itself only warns); other
names in the namespace (scratch variables, `P`) are not parameters and never
checked. A value whose type does not match its annotation is an error. Names
declared by another notebook are accepted, so one profile file
(`notebooks/params/<profile>.yaml`) can serve every notebook. Values are then
range-checked (`RANGES`, by parameter name): sizes,
limits, rates, tolerance, seeds, patience, the batch against the pool, the device (a
GPU when cuda is asked for), the precision (no tf32 on a CPU) and the executor, each error naming the parameter, its
value and the valid range, before any data loads (`params/profiles.py` checks a profile file the
same way). `network_overrides(P, network)` turns a network's prefixed parameters
(`lenet_iterations`, ...) into config overrides.
"""
import ast
import json
import math
from pathlib import Path

from lth_core import paths, writer_lock
from lth_core.data import TRAIN_SIZE
from lth_core.config import CONTROLS, PAPER_TRAINING, training_settings
from lth_core.models import DATASET_OF
from lth_core.runs.executors import DEVICES, EXECUTORS, ExecutorOptions, device_for_executor
from lth_core.config import BUDGET_PROTOCOLS, CRITERIA, PRECISIONS, TrainConfig

PARAM_PREFIX = {"lenet_300_100": "lenet", "conv2": "conv2"}  # notebook parameter names: lenet_iterations, ...
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
PARAMETERS_HEADER = "# Notebook parameters (profiles override them; the next cell checks them)"
INJECTED_HEADER = "# Parameters"  # the comment papermill's Python translator opens its injected cell with


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
    """{name: (accepted types, None allowed, default)} from the notebook's parameters cell on disk."""
    return _declarations(_parameters_source(_notebook_path(notebook, notebooks_dir)), notebook)


def _declarations(source: str, notebook: str) -> dict[str, tuple[tuple[type, ...], bool, object]]:
    """{name: (accepted types, None allowed, default)} from the source of a parameters cell."""
    try:
        body = ast.parse(source).body
    except SyntaxError as err:
        raise ParameterError(f"{notebook}: the parameters cell does not parse ({err.msg}, line {err.lineno}); "
                             f"fix it and run it again") from None
    out = {}
    for node in body:
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


TEST_SIZE = 10_000  # rows of the official MNIST and CIFAR-10 test sets
NETWORK_OF_PREFIX = {"lenet": "lenet_300_100", "conv2": "conv2", "shufflenet": "shufflenet"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value, lo: int, hi: int | None = None, optional: bool = False) -> str | None:
    """None when `value` is an integer in [lo, hi] (or None, if optional); else the valid range in words."""
    if (value is None and optional) or (_is_int(value) and lo <= value and (hi is None or value <= hi)):
        return None
    return ("None or " if optional else "") + (f"an integer in [{lo}, {hi}]" if hi is not None
                                               else f"an integer >= {lo}")


def _distinct(values, allowed, what: str, empty_ok: bool = True) -> str | None:
    """None when `values` lists distinct members of `allowed`; a repeated name would repeat its runs."""
    if all(v in allowed for v in values) and len(set(values)) == len(values) and (values or empty_ok):
        return None
    return f"{'a' if empty_ok else 'a non-empty'} list of distinct {what} from {list(allowed)}"


def _seeds(values, P) -> str | None:
    # a repeated seed would repeat every row of the results and narrow the confidence bands
    if values and all(_is_int(v) and v >= 0 for v in values) and len(set(values)) == len(values):
        return None
    return "a non-empty list of distinct integers >= 0"


def _subset_percents(values, P) -> str | None:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 100 for v in values)
    if not values or (numbers and 100 in values and len(set(values)) == len(values)):
        return None
    return "[] or a list of distinct percents in (0, 100] that includes 100 (the reference)"


def _nonnegative_number(value, P) -> str | None:
    return None if math.isfinite(value) and value >= 0 else "a finite number >= 0"


def _positive_number(value, P) -> str | None:
    return None if math.isfinite(value) and value > 0 else "a finite number > 0"


def _device(value, P) -> str | None:
    try:
        device_for_executor(value, P.get("executor", "local"))
    except ValueError:
        if value in DEVICES or value.startswith("cuda:"):
            return "auto or cpu: torch sees no CUDA GPU here (with executor slurm, cuda asks the jobs for GPUs)"
        return f"one of {', '.join(DEVICES)} or cuda:N"
    return None


def _precision(value, P) -> str | None:
    if value not in PRECISIONS:
        return f"one of {', '.join(PRECISIONS)}"
    if value == "tf32" and P.get("device") == "cpu":
        return "float32 or bf16 on device cpu (tf32 is a CUDA tensor-core format)"
    return None


def _executor_options(value, P) -> str | None:
    try:
        ExecutorOptions.from_dict(value)
    except (TypeError, ValueError) as err:
        return f"a dict of executor settings; {err}"
    return None


def _unseen_networks(values, P) -> str | None:
    return _distinct(values, tuple(PARAM_PREFIX), "networks", empty_ok=False)


def _network_ranges(prefix: str) -> dict:
    """The ranges of one network's prefixed parameters (lenet_iterations, ...)."""
    network = NETWORK_OF_PREFIX[prefix]
    dataset = DATASET_OF[network]
    n_train = TRAIN_SIZE[dataset]

    def fixed_batch(P) -> int | None:
        """The batch size when it is not a notebook parameter (LeNet, Conv-2: Table 1's); the training pool
        must hold one batch, so then the pool's own parameters (val_size, train_limit) are checked for it."""
        return None if f"{prefix}_batch_size" in P else PAPER_TRAINING[network].batch_size

    def val_size(v, P):
        batch = fixed_batch(P)
        out = _integer(v, 1, n_train - (batch or 1))
        return out and (f"{out} ({dataset} has {n_train:,} training rows"
                        + (f"; the rest must hold a batch of {batch})" if batch else ")"))

    def train_limit(v, P):
        batch = fixed_batch(P)
        out = _integer(v, batch or 1, optional=True)
        return out and out + (f" (the pool must hold a batch of {batch})" if batch else "")

    def batch_size(v, P):
        pool, limit = n_train - P[f"{prefix}_val_size"], P[f"{prefix}_train_limit"]
        pool = pool if limit is None else min(pool, limit)
        out = _integer(v, 1, pool)
        return out and f"{out} (the training pool has {pool:,} rows)"

    def prune_rate(v, P):  # 0 would train one level again and again (levels are told apart by sparsity)
        return None if 0 < v < 1 else "a fraction in (0, 1) (0 prunes nothing, 1 every weight)"

    return {f"{prefix}_iterations": lambda v, P: _integer(v, 1),
            f"{prefix}_rounds": lambda v, P: _integer(v, 0),
            f"{prefix}_eval_every": lambda v, P: _integer(v, 1, P[f"{prefix}_iterations"]),
            f"{prefix}_val_size": val_size,
            f"{prefix}_train_limit": train_limit,
            f"{prefix}_batch_size": batch_size,
            f"{prefix}_test_limit": lambda v, P: _integer(v, 1, TEST_SIZE, optional=True),
            f"{prefix}_prune_rate": prune_rate,
            f"{prefix}_rewind_iteration": lambda v, P: _integer(v, 0, P[f"{prefix}_iterations"], optional=True),
            f"{prefix}_constant_lr": _positive_number,
            f"{prefix}_budget_epochs": _positive_number,
            f"{prefix}_patience": lambda v, P: _integer(v, 1, optional=True),
            f"{prefix}_subset_percents": _subset_percents}


# Valid values by parameter name, for every notebook that declares the name. A check gets the value
# (already of its declared type) and all of the notebook's values, and returns None when the value is
# valid, else the valid range in words. Checks run in this order, so one that reads another parameter
# (eval_every reads iterations, batch_size reads val_size and train_limit) runs after that parameter's own check.
RANGES = {
    "device": _device,
    "precision": _precision,
    "executor": lambda v, P: None if v in EXECUTORS else f"one of {', '.join(EXECUTORS)}",
    "executor_options": _executor_options,
    "seeds": _seeds,
    "tolerance": _nonnegative_number,  # a negative tolerance puts the dense network outside its own band
    "controls": lambda v, P: _distinct(v, CONTROLS, "controls"),
    "unseen_networks": _unseen_networks,
    "lenet_settings": lambda v, P: _distinct(v, tuple(training_settings("lenet_300_100")), "training settings",
                                             empty_ok=False),
    "faster_criterion": lambda v, P: None if v in CRITERIA else f"one of {', '.join(CRITERIA)}",
    "faster_protocols": lambda v, P: _distinct(v, BUDGET_PROTOCOLS, "budget protocols", empty_ok=False),
    **{name: check for prefix in NETWORK_OF_PREFIX for name, check in _network_ranges(prefix).items()},
}


def check_parameters(notebook: str, values: dict, notebooks_dir: Path | None = None) -> dict:
    """Type- and range-check all of `notebook`'s parameter values (every declared name); returns them."""
    return _checked(notebook, values, declared_parameters(notebook, notebooks_dir))


def _checked(notebook: str, values: dict, declared: dict) -> dict:
    """`values` of the `declared` parameters, type- and range-checked; returns them."""
    missing = sorted(set(declared) - set(values))
    if missing:
        raise ParameterError(f"{notebook}: no value for parameters {missing}")
    for name, spec in declared.items():
        check_value(notebook, name, values[name], spec)
    for name, check in RANGES.items():
        valid = check(values[name], values) if name in declared else None
        if valid is not None:
            raise ParameterError(f"{notebook}: parameter {name!r} = {values[name]!r} is out of range; "
                                 f"valid: {valid}")
    return {name: values[name] for name in declared}


def validate_parameters(namespace: dict, notebook: str, notebooks_dir: Path | None = None) -> dict:
    """Check the notebook's parameter values in `namespace`; return {name: value} of its parameters.

    Call it as `P = validate_parameters(globals(), ...)` from the cell after the parameters cell. In a
    kernel the declarations come from the parameters cell run last and only the names papermill injected
    after it can be unknown parameters, so re-running any cell, scratch variables and unsaved edits of the
    parameters cell all work; outside a kernel the declarations come from the notebook file."""
    history = _input_history(namespace)
    start = max((i for i, src in enumerate(history) if _opens_with(src, PARAMETERS_HEADER)), default=-1)
    mine = (_declarations(history[start], notebook) if start >= 0
            else declared_parameters(notebook, notebooks_dir))
    others = {n for nb, decl in all_declared(notebooks_dir).items() if nb != notebook for n in decl}
    for src in history[start + 1:]:
        if _opens_with(src, INJECTED_HEADER):
            for name in _assigned_names(src):
                if name not in mine and name not in others:
                    raise ParameterError(f"{notebook}: unknown parameter {name!r}; "
                                         f"valid parameters: {', '.join(mine)}")
    values = _checked(notebook, {name: namespace[name] for name in mine if name in namespace}, mine)
    if (paths.outputs_dir() / "manifest.json").exists():  # a main job's profile folder: one writer at a time
        writer_lock.claim(paths.outputs_dir(), f"notebook {notebook}")
    return values


def _input_history(namespace: dict) -> list[str]:
    """The sources of the cells run so far, oldest first: IPython's `In`; empty outside IPython."""
    history = namespace.get("In")
    return history if isinstance(history, list) and all(isinstance(s, str) for s in history) else []


def _opens_with(source: str, header: str) -> bool:
    return source.lstrip().split("\n", 1)[0].rstrip() == header


def _assigned_names(source: str) -> list[str]:
    """The names a papermill-injected cell assigns (`name = value` lines)."""
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


def network_overrides(params: dict, network: str) -> dict:
    """The per-network notebook parameters (lenet_iterations, ...), and the notebook's `precision`, as
    paper_config overrides."""
    p = PARAM_PREFIX[network]
    return {"iterations": params[f"{p}_iterations"], "eval_every": params[f"{p}_eval_every"],
            "rounds": params[f"{p}_rounds"], "train_limit": params[f"{p}_train_limit"],
            "val_size": params[f"{p}_val_size"], "test_limit": params[f"{p}_test_limit"],
            "patience": params[f"{p}_patience"], "precision": params.get("precision", TrainConfig.precision)}
