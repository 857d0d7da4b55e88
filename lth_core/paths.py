"""Every path the project uses, in one place.

The repository root, the project's data cache (`data/`), the read-only data
root the datasets are read from (`LTH_DATA_DIR`, default `data/`), and the
generated outputs (`outputs/` with runs, tables, figures, executed notebooks).
Notebooks and library code import these; nobody builds paths by hand.
`LTH_OUTPUTS_DIR` moves all outputs (tests use it to write into a tmp folder);
`LTH_RUNS_DIR` moves the run store alone (the main job keeps it shared while
each profile gets its own outputs folder).
A relative value of any of these variables (LTH_DATA_DIR, LTH_CACHE_DIR too) means the folder
below the directory the user started in: the working directory, except in a Jupyter kernel, which
papermill (`--cwd notebooks`) or a Jupyter server starts in the notebook's folder: there the `$PWD`
it inherited from the shell the user started in. The value is made absolute in os.environ by the
first process that imports this module, so every process it starts sees the same place.
"""
import os
import sys
from pathlib import Path


def _env_path(var: str, default: Path) -> Path:
    """$var as an absolute path (relative to the working directory), else `default` when unset or empty.

    The absolute path is written back to os.environ, so that child processes started in another
    folder (papermill starts notebook kernels in notebooks/) resolve it to the same place.
    """
    value = os.environ.get(var)
    if not value:
        return default
    path = (_started_in() / Path(value).expanduser()).resolve()
    if str(path) != value:
        os.environ[var] = str(path)
    return path


def _started_in() -> Path:
    """The directory the user started in: in a Jupyter kernel the shell's $PWD, which the kernel inherits
    unchanged when started in another folder; elsewhere (or without a usable $PWD) the working directory,
    since a program that changed its directory has a stale $PWD."""
    pwd = os.environ.get("PWD")
    kernel_app = sys.modules.get("ipykernel.kernelapp")  # loaded, not necessarily running: ask it
    in_kernel = kernel_app is not None and kernel_app.IPKernelApp.initialized()
    return Path(pwd) if in_kernel and pwd and os.path.isabs(pwd) and os.path.isdir(pwd) else Path.cwd()


REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
# decoded tensors; always writable, unlike the data root. $LTH_CACHE_DIR moves it (tests use a tmp folder)
CACHE_DIR = _env_path("LTH_CACHE_DIR", REPO_ROOT / "data")


def data_root() -> Path:
    """Folder the raw datasets are read from: $LTH_DATA_DIR, else the project's data/."""
    return _env_path("LTH_DATA_DIR", REPO_ROOT / "data")


def outputs_dir() -> Path:
    """Folder of every generated output: $LTH_OUTPUTS_DIR, else outputs/ in the repository."""
    return _env_path("LTH_OUTPUTS_DIR", REPO_ROOT / "outputs")


def runs_dir() -> Path:
    """The run store: $LTH_RUNS_DIR, else outputs/runs (the main job shares it between profiles)."""
    return _env_path("LTH_RUNS_DIR", outputs_dir() / "runs")


# pin relative values to this process's working directory now, before it can start a child elsewhere
data_root(), outputs_dir(), runs_dir()


def tables_dir() -> Path:
    return outputs_dir() / "tables"


def figures_dir() -> Path:
    return outputs_dir() / "figures"


def executed_notebooks_dir() -> Path:
    return outputs_dir() / "notebooks"
