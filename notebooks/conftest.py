"""pytest settings for checking the notebooks (`pytest --nbval-lax notebooks/`, as `make nbval` does).

The notebooks' kernels write their outputs, runs and decoded-data cache into one temporary folder,
removed when pytest ends, unless the caller named those folders (`LTH_OUTPUTS_DIR`, `LTH_RUNS_DIR`,
`LTH_CACHE_DIR`; an empty value counts as unset). So checking the notebooks never replaces a person's
results in outputs/ or the cache in data/. Kernels inherit this process's environment.
"""
import os
import shutil
import tempfile

_temporary: list[str] = []


def pytest_configure(config):
    unset = {var for var in ("LTH_OUTPUTS_DIR", "LTH_RUNS_DIR", "LTH_CACHE_DIR") if not os.environ.get(var)}
    if "LTH_OUTPUTS_DIR" not in unset:
        unset.discard("LTH_RUNS_DIR")  # the run store follows the caller's outputs folder, as in the library
    if not unset:
        return
    folder = tempfile.mkdtemp(prefix="lth-notebooks-")
    _temporary.append(folder)
    for var in unset:
        os.environ[var] = os.path.join(folder, var.removeprefix("LTH_").removesuffix("_DIR").lower())


def pytest_unconfigure(config):
    while _temporary:
        shutil.rmtree(_temporary.pop(), ignore_errors=True)
