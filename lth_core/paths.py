"""Every path the project uses, in one place.

The repository root, the project's data cache (`data/`), the read-only data
root the datasets are read from (`LTH_DATA_DIR`, default `data/`), and the
generated outputs (`outputs/` with runs, tables, figures, executed notebooks).
Notebooks and library code import these; nobody builds paths by hand.
`LTH_OUTPUTS_DIR` moves all outputs (tests use it to write into a tmp folder);
`LTH_RUNS_DIR` moves the run store alone (the main job keeps it shared while
each profile gets its own outputs folder).
"""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
# decoded tensors; always writable, unlike the data root. $LTH_CACHE_DIR moves it (tests use a tmp folder)
CACHE_DIR = Path(os.environ.get("LTH_CACHE_DIR", REPO_ROOT / "data")).expanduser().resolve()


def data_root() -> Path:
    """Folder the raw datasets are read from: $LTH_DATA_DIR, else the project's data/."""
    return Path(os.environ.get("LTH_DATA_DIR", REPO_ROOT / "data")).expanduser().resolve()


def outputs_dir() -> Path:
    return Path(os.environ.get("LTH_OUTPUTS_DIR", REPO_ROOT / "outputs")).expanduser().resolve()


def runs_dir() -> Path:
    """The run store: $LTH_RUNS_DIR, else outputs/runs (the main job shares it between profiles)."""
    return Path(os.environ.get("LTH_RUNS_DIR", outputs_dir() / "runs")).expanduser().resolve()


def tables_dir() -> Path:
    return outputs_dir() / "tables"


def figures_dir() -> Path:
    return outputs_dir() / "figures"


def executed_notebooks_dir() -> Path:
    return outputs_dir() / "notebooks"
