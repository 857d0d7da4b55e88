"""The smallest real project for the main job: one notebook `01_t` whose study asks for one or two
tiny LeNet runs on synthetic data, reads them from the run store and publishes a table and a
figure from their rows; `fail: true` makes it fail after writing them.

`make(root)` writes the notebooks folder; running this file as a program is the main job on it
(`python tiny_project.py <notebooks folder> <reproduce arguments>`), with the study registered and
datasets replaced by synthetic ones, so that tests can start it as a real process, kill it and
start it again.
"""
import dataclasses
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOK = "01_t"
PARAMS = ('device: str = "auto"\nexecutor: str = "local"\nexecutor_options: dict = {}\n'
          'seeds: list = [0]\nfail: bool = False\n')
BODY = f'''import sys
sys.path.insert(0, {str(HERE)!r})
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from lth_core.runs import store
import tiny_project
rows = pd.concat([store.finished_rows(c) for c in tiny_project.configs_from_parameters(P)])
rows = rows[["run", "round", "kind", "pct_remaining", "es_iteration", "test_acc"]]
for d in (paths.tables_dir(), paths.figures_dir()):
    d.mkdir(parents=True, exist_ok=True)
rows.to_csv(paths.tables_dir() / "tiny.csv", index=False)
fig, ax = plt.subplots()
ax.plot(rows["round"], rows["test_acc"], "o")
fig.savefig(paths.figures_dir() / "tiny.png", metadata={{"Software": None}})
assert not fail, "asked to fail"
'''


def configs_from_parameters(P: dict):
    from lth_core.config import IMPConfig
    from lth_core.config import TrainConfig
    tiny = IMPConfig(network="lenet_300_100", rounds=1, val_size=200,
                     train=TrainConfig(iterations=20, batch_size=50, eval_every=10))
    return [dataclasses.replace(tiny, seed=s) for s in P["seeds"]]


def synthetic(name: str):
    """The dataset `name`, replaced by a small synthetic one that trains in a second."""
    sys.path.insert(0, str(HERE.parent))  # conftest
    from conftest import synthetic_dataset
    return synthetic_dataset(name)


def write_notebook(folder: Path, name: str, params: str, body: str) -> None:
    """A project notebook: imports, its `parameters` cell, the validation cell, then `body`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("from lth_core import paths\n"
                                          "from lth_core.params.notebook import validate_parameters"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"P = validate_parameters(globals(), {name!r}, {str(folder)!r})"),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, folder / f"{name}.ipynb")


def make(root: Path) -> Path:
    """A notebooks folder holding `01_t` and the profile `t` (one run); returns it."""
    folder = Path(root) / "nbs"
    (folder / "params").mkdir(parents=True, exist_ok=True)
    write_notebook(folder, NOTEBOOK, PARAMS, BODY)
    (folder / "params" / "t.yaml").write_text("seeds: [0]\n")
    return folder


def install_in_test(root: Path, monkeypatch) -> Path:
    """`make(root)`, installed in this process as the project (its notebooks, study and synthetic data)
    until the test ends; returns the notebooks folder."""
    from lth_core import paths
    from lth_core.programs import reproduce
    from lth_core.runs import executors
    folder = make(root)
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", folder)
    monkeypatch.setattr(paths, "PARAMS_DIR", folder / "params")
    monkeypatch.setitem(reproduce.STUDIES, NOTEBOOK, sys.modules[__name__])
    monkeypatch.setattr(executors, "load_dataset", synthetic)
    return folder


def install(folder: Path, reproduce) -> None:
    """Point the main job at `folder` with this study and synthetic datasets (in this process)."""
    from lth_core import paths
    from lth_core.runs import executors
    paths.NOTEBOOKS_DIR, paths.PARAMS_DIR = Path(folder), Path(folder) / "params"
    reproduce.STUDIES[NOTEBOOK] = sys.modules[__name__]
    executors.load_dataset = synthetic


if __name__ == "__main__":
    from lth_core.programs import reproduce
    install(Path(sys.argv[1]), reproduce)
    sys.exit(reproduce.main(sys.argv[2:]))
