"""Each project notebook driven in a real Jupyter kernel the way a person explores it in JupyterLab.

One kernel per notebook, never restarted: run all; a scratch variable, then the validation cell; the claims
cell and the one after it again; cells out of order (the imports again, the claims before the validation
cell, the last cell); an edited parameters cell that is run but not saved, then every cell from the
validation cell on again, with `P` carrying the edited value; an edit with a value of the wrong type,
refused with a clear error; and the saved parameters cell again. Outputs, runs and the data cache go to
temporary folders; the first run trains the notebook's smoke runs, later cells read them from the store.
"""
import ast
import json
import os
import queue

import nbformat
import pytest

from lth_core import paths
from lth_core.params.notebook import declared_parameters

NOTEBOOKS = ["01_trainability_unseen", "02_faster_tickets", "03_shufflenet"]
CELL_TIMEOUT_S = 600


class Kernel:
    """A started python3 kernel; `run` executes one cell's source as JupyterLab does (kept in `In`)."""

    def __init__(self, cwd, env):
        from jupyter_client.manager import KernelManager
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, source: str) -> dict:
        """The execute reply's content (status, and ename/evalue on an error)."""
        reply = self.client.execute_interactive(source, timeout=CELL_TIMEOUT_S, output_hook=lambda msg: None)
        return reply["content"]

    def value(self, expression: str):
        """The value of a JSON-serialisable expression in the kernel's namespace."""
        reply = self.client.execute_interactive(
            "", silent=True, store_history=False, timeout=60,
            user_expressions={"v": f"__import__('json').dumps({expression})"}, output_hook=lambda msg: None)
        result = reply["content"]["user_expressions"]["v"]
        assert result["status"] == "ok", f"{expression}: {result.get('ename')}: {result.get('evalue')}"
        return json.loads(ast.literal_eval(result["data"]["text/plain"]))  # the repr of the JSON string

    def shutdown(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(shared_data, tmp_path, tmp_data_cache):
    env = {**os.environ, "LTH_DATA_DIR": str(shared_data), "LTH_OUTPUTS_DIR": str(tmp_path / "outputs"),
           "LTH_RUNS_DIR": str(tmp_path / "runs"), "LTH_CACHE_DIR": str(tmp_data_cache),
           "LTH_DOWNLOAD": "0", "OMP_NUM_THREADS": "1"}
    try:
        k = Kernel(paths.NOTEBOOKS_DIR, env)
    except (KeyError, RuntimeError, OSError, queue.Empty) as err:  # no kernelspec or ipykernel, or no answer
        pytest.skip(f"the python3 Jupyter kernel did not start: {err!r} "
                    f"(install it with: .venv/bin/python -m ipykernel install --sys-prefix --name python3)")
    yield k
    k.shutdown()


def _code_cells(notebook: str) -> tuple[list[str], int]:
    """The notebook's code cells' sources as saved, and the parameters cell's index among them."""
    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{notebook}: one parameters cell expected"
    return [c.source for c in cells], tagged[0]


def _index(cells: list[str], text: str) -> int:
    found = [i for i, src in enumerate(cells) if text in src]
    assert found, f"no code cell holds {text!r}"
    return found[0]


def _ok(kernel: Kernel, source: str, step: str):
    reply = kernel.run(source)
    assert reply["status"] == "ok", f"{step}: {reply.get('ename')}: {reply.get('evalue')}\n--- cell:\n{source}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_explored_in_one_kernel(kernel, notebook):
    cells, params = _code_cells(notebook)
    validation = _index(cells, "P = validate_parameters(globals()")
    claims = _index(cells, "claims = study.claims(")

    for i, src in enumerate(cells):
        _ok(kernel, src, f"run all, cell {i}")
    defaults = kernel.value("P")
    assert defaults["tolerance"] == 1.0

    _ok(kernel, "x = 5", "a scratch variable")
    _ok(kernel, cells[validation], "the validation cell after x = 5")
    assert kernel.value("P") == defaults
    for i in (claims, claims + 1):
        _ok(kernel, cells[i], f"cell {i} again")

    # out of order: the imports again, the claims before the validation cell, the last cell before the claims
    for i in (0, claims, validation, len(cells) - 1, claims):
        _ok(kernel, cells[i], f"out of order, cell {i}")

    # an edit of the parameters cell, run but never saved, then the cells from the validation cell on
    assert "tolerance: float = 1.0" in cells[params]
    edited = cells[params].replace("tolerance: float = 1.0", "tolerance: float = 2.5")
    _ok(kernel, edited, "the edited parameters cell")
    for i in range(validation, len(cells)):
        _ok(kernel, cells[i], f"after the edit, cell {i}")
    assert kernel.value("P") == {**defaults, "tolerance": 2.5}
    assert declared_parameters(notebook)["tolerance"][2] == 1.0  # the file still declares the saved default

    # an edit with a value of the wrong type is refused by the validation cell, naming it
    assert "seeds: list = [0]" in cells[params]
    _ok(kernel, cells[params].replace("seeds: list = [0]", "seeds: list = 0"), "the mistyped parameters cell")
    reply = kernel.run(cells[validation])
    assert reply["status"] == "error" and reply["ename"] == "ParameterError", reply
    assert f"{notebook}: parameter 'seeds' must be list, got 0" in reply["evalue"]

    # the saved parameters cell again: the defaults are back
    _ok(kernel, cells[params], "the saved parameters cell")
    _ok(kernel, cells[validation], "the validation cell after the saved parameters cell")
    assert kernel.value("P") == defaults
    _ok(kernel, cells[claims], "the claims cell with the defaults")
