"""The package's layers import downward only: core <- runs <- params <- report <- studies <- programs.

Read from the source with `ast` (no import side effects): every `lth_core...` import of
every module is checked against the layer it lives in.
"""
import ast
from pathlib import Path

import pytest

from lth_core import paths

PACKAGE = paths.REPO_ROOT / "lth_core"
# a module may import its own layer and the layers listed before it
ORDER = ["core", "runs", "params", "report", "studies", "programs"]


def layer_of(module: str) -> str:
    """lth_core.imp -> core; lth_core.runs.store -> runs; the modules at the package's top are the core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ORDER else "core"


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lth_core"):
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from lth_core.runs import store`
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lth_core")}
    return out


def modules():
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_only(path):
    module = ".".join(("lth_core", *path.relative_to(PACKAGE).with_suffix("").parts))
    mine = ORDER.index(layer_of(module))
    upward = sorted(m for m in imported_modules(path) if ORDER.index(layer_of(m)) > mine)
    assert not upward, f"{module} ({ORDER[mine]}) imports from a layer above it: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from lth_core.studies import unseen\nimport lth_core.report.plots\nfrom lth_core import imp\n")
    found = {layer_of(m) for m in imported_modules(bad)}
    assert found == {"studies", "report", "core"}
    assert layer_of("lth_core.runs.store") == "runs" and layer_of("lth_core.training") == "core"
    assert layer_of("lth_core.programs.gpu_check") == "programs"


def test_every_layer_has_its_folder():
    assert all((PACKAGE / layer).is_dir() for layer in ORDER[1:])
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ORDER[1:])
    core = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert core == {"paths", "config", "data", "data_sources", "models", "pruning", "training", "imp", "crashpoints",
                    "writer_lock", "checks"}
