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
checked. In a kernel the parameters cell run last (and papermill's cell after it) decide each
parameter's value: a parameter assigned anywhere else (`seeds = [0, 1, 2]` in a scratch cell) is
not used, and a printed warning names it and says so. A value whose type does not match its
annotation is an error. Names
declared by another notebook are accepted, so one profile file
(`notebooks/params/<profile>.yaml`) can serve every notebook. Values are then
range-checked, each error naming the parameter, its value and the valid range, before any
data loads (`params/profiles.py` checks a profile file the same way). A parameter that sets a
config field (`lenet_iterations`, `controls`; `field_of`) is checked by that field's rule in
`config.py`, in the library's words; the rules between fields (val_size against the dataset,
rewind_iteration against the budget) by building each network's config from the parameters.
`RANGES` holds the rules of the names that exist in notebooks alone: tolerance, seeds, the device
(a GPU when cuda is asked for), each network's precision on it (`conv2_precision`: no tf32 on a
CPU), the executor, the study lists. `network_overrides(P, network)` turns a network's prefixed
parameters that name a config field (`lenet_iterations`, `conv2_precision`, ...) into config overrides.

`lenet_precision` and `conv2_precision` (notebooks 01 and 02) also take `auto`: bf16 where the
adoption rule adopts it for the network on a CPU (`BF16_ON_CPU`, `studies.agreement.measured_verdicts`)
and this CPU has BF16 hardware (`cpu_has_bf16`), float32 elsewhere. `network_overrides` resolves it
before any config is built, so the config (its run name: float32 is the default, so `auto` resolved to
float32 names the same runs as `float32`) and the run store's numerics hold the precision that trains;
a resume on another CPU is refused by the numerics check as for any run.
"""
import ast
import dataclasses
import functools
import json
import sys
from pathlib import Path

from lth_core import checks, paths, writer_lock
from lth_core.config import BUDGET_PROTOCOLS, IMPConfig, TrainConfig, paper_config, training_settings
from lth_core.runs.executors import DEVICES, EXECUTORS, ExecutorOptions, device_for_executor

PARAM_PREFIX = {"lenet_300_100": "lenet", "conv2": "conv2"}  # notebook parameter names: lenet_iterations, ...
AUTO_PRECISION = "auto"  # a value of PARAM_PREFIX networks' `<prefix>_precision` (module docstring)
# the networks whose bf16 the adoption rule adopts on a CPU (tests/studies/test_agreement.py keeps this equal to
# the verdicts of the stored agreements): Conv-2, whose early stops bf16 moves less than float32's own kernels do
BF16_ON_CPU = ("conv2",)
CPUINFO = Path("/proc/cpuinfo")  # where Linux lists the CPU's instruction sets (`cpu_has_bf16`)
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


NETWORK_OF_PREFIX = {"lenet": "lenet_300_100", "conv2": "conv2", "shufflenet": "shufflenet"}
PREFIX_OF_NETWORK = {network: prefix for prefix, network in NETWORK_OF_PREFIX.items()}
# the config fields a parameter can set (IMPConfig's and TrainConfig's names are disjoint, as paper_config's
# overrides need): `<prefix>_<field>` (lenet_iterations) or `<field>` (controls) is checked by that field's rule
CONFIG_FIELDS = tuple(f.name for cls in (IMPConfig, TrainConfig) for f in dataclasses.fields(cls))
FIELD_RULES = {**IMPConfig.RULES, **TrainConfig.RULES}  # the rules of one field alone, by field name
# parameters (`faster_criterion`, or `<prefix>_constant_lr`, ...) that set a config field under another
# name: checked by that field's rule; the study passes them itself, they are no overrides
RENAMED_FIELDS = {"faster_criterion": "criterion", "constant_lr": "lr", "budget_epochs": "epochs"}

# the subset sizes of a faster-tickets run (also faster_tickets.check_subset_percents): each a subset_percent
SUBSET_PERCENTS = checks.explained(
    checks.distinct_list(IMPConfig.RULES["subset_percent"], "percents", including=100),
    "100, the full pool, is the reference; [] skips the network")


def field_of(name: str) -> str | None:
    """The config field whose rule checks parameter `name` (lenet_iterations -> iterations); None when
    `name` exists in notebooks alone."""
    prefix, _, rest = name.partition("_")
    rest = rest if prefix in NETWORK_OF_PREFIX else name
    field = RENAMED_FIELDS.get(rest, rest)
    return field if field in CONFIG_FIELDS else None


def _device(value, P) -> str | None:
    try:
        device_for_executor(value, P.get("executor", "local"))
    except ValueError:
        if value in DEVICES or value.startswith("cuda:"):
            return "auto or cpu: torch sees no CUDA GPU here (with executor slurm, cuda asks the jobs for GPUs)"
        return f"one of {', '.join(DEVICES)} or cuda:N"
    return None


def _precision_on_device(value, P) -> str | None:
    """The precision's name is TrainConfig's rule; which precisions the notebook's device runs is the notebook's."""
    if value == "tf32" and P.get("device") == "cpu":
        return "float32 or bf16 on device cpu (tf32 is a CUDA tensor-core format)"
    return None


def _executor_options(value, P) -> str | None:
    try:
        ExecutorOptions.from_dict(value)
    except (TypeError, ValueError) as err:
        return f"a dict of executor settings; {err}"
    return None


def _value_rule(rule: checks.Rule):
    """A notebook check (value, all values) from a rule of the value alone."""
    return lambda v, P: rule(v)


# Valid values of the parameters that exist in notebooks alone (config fields are checked by their
# field's rule, `field_of`), for every notebook that declares the name. A check gets the value (already
# of its declared type) and all of the notebook's values, and returns None when the value is valid, else
# the valid range in words. Checks run in this order, after the field rules of the config-field parameters
# the studies pass themselves and before the overrides are checked by building the configs.
RANGES = {
    "device": _device,
    **{f"{prefix}_precision": _precision_on_device for prefix in NETWORK_OF_PREFIX},
    "executor": _value_rule(checks.one_of(EXECUTORS)),
    "executor_options": _executor_options,
    # a repeated seed would repeat every row of the results and narrow the confidence bands
    "seeds": _value_rule(checks.distinct_list(IMPConfig.RULES["seed"], "seeds", non_empty=True)),
    # a negative tolerance puts the dense network outside its own band
    "tolerance": _value_rule(checks.number(0)),
    "unseen_networks": _value_rule(checks.distinct(tuple(PARAM_PREFIX), "networks", non_empty=True)),
    "lenet_settings": _value_rule(checks.distinct(tuple(training_settings("lenet_300_100")), "training settings",
                                                  non_empty=True)),
    "faster_protocols": _value_rule(checks.distinct(BUDGET_PROTOCOLS, "budget protocols", non_empty=True)),
    "faster_rounds": _value_rule(checks.integer(0, optional=True)),  # notebook 02's rounds instead of *_rounds
    **{f"{prefix}_subset_percents": _value_rule(SUBSET_PERCENTS) for prefix in NETWORK_OF_PREFIX},
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
    for name in declared:  # config fields the studies pass themselves (controls, faster_criterion, ...)
        field = field_of(name)
        if field and not _is_override(name):
            _refuse_if(notebook, name, values[name], FIELD_RULES[field](values[name]))
    for name, check in RANGES.items():
        if name in declared:
            _refuse_if(notebook, name, values[name], check(values[name], values))
    _check_overrides(notebook, values, declared)
    return {name: values[name] for name in declared}


def _refuse_if(notebook: str, name: str, value, valid: str | None) -> None:
    """Raise the ParameterError of parameter `name` when `valid` (the valid range in words) is given."""
    if valid is not None:
        raise ParameterError(f"{notebook}: parameter {name!r} = {value!r} is out of range; valid: {valid}")


def _is_override(name: str) -> bool:
    """Whether parameter `name` reaches the config through `network_overrides`."""
    prefix, _, field = name.partition("_")
    return prefix in NETWORK_OF_PREFIX and field in CONFIG_FIELDS


def _check_overrides(notebook: str, values: dict, declared: dict) -> None:
    """The parameters `network_overrides` makes overrides of, checked as the library checks them: each
    network with such parameters builds its Table 1 config from them (every field's rule, and the rules
    between fields: val_size against the dataset, rewind_iteration against the budget), and the
    ConfigError is told with the name of the parameter it is about."""
    for prefix, network in NETWORK_OF_PREFIX.items():
        if not any(name.startswith(f"{prefix}_") and _is_override(name) for name in declared):
            continue
        try:
            paper_config(network, **network_overrides(values, network))
        except checks.ConfigError as err:
            name = f"{prefix}_{err.field}"
            if name not in declared:  # a value of Table 1's own, not of a parameter
                raise ParameterError(f"{notebook}: {err}") from None
            _refuse_if(notebook, name, values[name], err.valid)


def validate_parameters(namespace: dict, notebook: str, notebooks_dir: Path | None = None) -> dict:
    """Check the notebook's parameter values in `namespace`; return {name: value} of its parameters.

    Call it as `P = validate_parameters(globals(), ...)` from the cell after the parameters cell. In a
    kernel the declarations come from the parameters cell run last and only the names papermill injected
    after it can be unknown parameters, so re-running any cell, scratch variables and unsaved edits of the
    parameters cell all work; a parameter assigned in another cell is named in a printed warning, and the value
    the parameters cell (or papermill's cell) set is the one returned. Outside a kernel the declarations come from
    the notebook file and the values from `namespace`."""
    history = _input_history(namespace)
    start = max((i for i, src in enumerate(history) if _opens_with(src, PARAMETERS_HEADER)), default=-1)
    mine = (_declarations(history[start], notebook) if start >= 0
            else declared_parameters(notebook, notebooks_dir))
    others = {n for nb, decl in all_declared(notebooks_dir).items() if nb != notebook for n in decl}
    decided = {name: spec[2] for name, spec in mine.items()}  # what the parameters cell set
    for src in history[start + 1:]:
        if _opens_with(src, INJECTED_HEADER):
            for name, value in _assignments(src).items():
                if name not in mine and name not in others:
                    raise ParameterError(f"{notebook}: unknown parameter {name!r}; "
                                         f"valid parameters: {', '.join(mine)}")
                if name in mine:
                    decided[name] = value
    values = {name: namespace[name] for name in mine if name in namespace}
    if start >= 0:  # in a kernel: the cells that set parameters decide, not an assignment elsewhere
        for name in sorted(n for n in values if values[n] != decided[n]):
            print(f"{notebook}: parameter {name!r} = {values[name]!r} was assigned outside the parameters cell and is "
                  f"not used: the parameters cell decides ({name} = {decided[name]!r}); change it there and run "
                  "that cell", file=sys.stderr)
        values = decided
    values = _checked(notebook, values, mine)
    if (paths.outputs_dir() / "manifest.json").exists():  # a main job's profile folder: one writer at a time
        writer_lock.claim(paths.outputs_dir(), f"notebook {notebook}")
    return values


def _input_history(namespace: dict) -> list[str]:
    """The sources of the cells run so far, oldest first: IPython's `In`; empty outside IPython."""
    history = namespace.get("In")
    return history if isinstance(history, list) and all(isinstance(s, str) for s in history) else []


def _opens_with(source: str, header: str) -> bool:
    return source.lstrip().split("\n", 1)[0].rstrip() == header


def _assignments(source: str) -> dict:
    """{name: value} of the `name = value` lines of a papermill-injected cell (papermill writes literals)."""
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def network_overrides(params: dict, network: str) -> dict:
    """`network`'s paper_config overrides from notebook parameters: every `<prefix>_<field>` parameter
    (lenet_iterations, conv2_precision, ...) whose field is a TrainConfig or IMPConfig field, with a precision
    `auto` resolved (`resolved_precision`). A new network parameter so takes two places: its config field (with
    its rule) and the notebook's parameters cell."""
    prefix = PREFIX_OF_NETWORK[network]
    out = {field: params[f"{prefix}_{field}"] for field in CONFIG_FIELDS if f"{prefix}_{field}" in params}
    if "precision" in out and network in PARAM_PREFIX:  # notebook 03 passes its precision itself: no auto there
        out["precision"] = resolved_precision(out["precision"], network, params.get("device", "auto"),
                                              params.get("executor", "local"))
    return out


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX), read once per process. Without it
    torch emulates bf16 (Conv-2's step about 13x float32's on an AVX2 CPU), and oneDNN's own check
    (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) asks for AVX-512, not its BF16 instructions, so the CPU's
    flags are read."""
    try:
        flags = CPUINFO.read_text().split()
    except OSError:  # not Linux: float32, the precision every verdict is measured against
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolved_precision(precision: str, network: str, device: str, executor: str = "local") -> str:
    """`precision`, or for `auto`: bf16 when `network`'s bf16 is adopted on a CPU (`BF16_ON_CPU`) and the device
    the runs train on is this CPU with BF16 hardware, else float32 (no verdict adopts bf16 on a GPU yet)."""
    if precision != AUTO_PRECISION:
        return precision
    on_cpu = device_for_executor(device, executor) == "cpu"  # Slurm's jobs resolve "auto" to GPUs
    return "bf16" if network in BF16_ON_CPU and on_cpu and cpu_has_bf16() else "float32"
