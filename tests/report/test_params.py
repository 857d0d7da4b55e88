import json

import nbformat
import papermill
import pytest

from lth_core import paths
from lth_core.report.params import ParameterError, declared_parameters, load_profile, validate_parameters

PARAMS_A = ('seeds: list = [0]  # seeds\nlr: float = 0.1  # step\nlimit: Optional[int] = None  # rows\n'
            'name: str = "x"\nratio: float | None = 0.5\n')
PARAMS_B = 'seeds: list = [0]\nwidth: int = 3\n'


def _notebook(path, params_src):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("from typing import Optional\nfrom lth_core.report.params import validate_parameters"),
                nbformat.v4.new_code_cell(params_src, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"P = validate_parameters(globals(), {path.stem!r}, {str(path.parent)!r})")]
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    d = tmp_path / "nbs"
    (d / "params").mkdir(parents=True)
    _notebook(d / "01_a.ipynb", PARAMS_A)
    _notebook(d / "02_b.ipynb", PARAMS_B)
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", d)
    monkeypatch.setattr(paths, "PARAMS_DIR", d / "params")
    return d


def test_declared_parameters_read_types_and_defaults(notebooks):
    decl = declared_parameters("01_a")
    assert list(decl) == ["seeds", "lr", "limit", "name", "ratio"]
    assert decl["lr"] == ((float, int), False, 0.1)
    assert decl["limit"] == ((int,), True, None) and decl["ratio"] == ((float, int), True, 0.5)


@pytest.mark.parametrize("notebook", ["01_trainability_unseen", "02_faster_tickets", "03_shufflenet"])
def test_papermill_reads_every_parameter_of_the_project_notebooks(notebook):
    # a parameter papermill cannot parse is one it warns about as unknown when passed with -p
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node
    nb = load_notebook_node(str(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb"))
    assert [p.name for p in _infer_parameters(nb)] == list(declared_parameters(notebook))


def _ns(**over):
    ns = {"seeds": [0], "lr": 0.1, "limit": None, "name": "x", "ratio": None, "json": json,
          "validate_parameters": validate_parameters}
    ns.update(over)
    return ns


def test_valid_values_pass_and_other_notebooks_names_are_accepted(notebooks):
    assert validate_parameters(_ns(lr=1, limit=5, width=4), "01_a") == {"seeds": [0], "lr": 1, "limit": 5, "name": "x",
                                                                          "ratio": None}


@pytest.mark.parametrize("over,match", [({"lrr": 0.2}, r"unknown parameter 'lrr'; valid parameters: seeds, lr, limit, name, ratio"),
                                        ({"lr": "fast"}, r"'lr' must be float or int, got 'fast'"),
                                        ({"seeds": 3}, "'seeds' must be list"),
                                        ({"limit": 2.5}, "'limit' must be int or None"),
                                        ({"name": True}, "'name' must be str")])
def test_bad_names_and_types_rejected(notebooks, over, match):
    with pytest.raises(ParameterError, match=match):
        validate_parameters(_ns(**over), "01_a")


def test_papermill_run_stops_on_unknown_parameter(notebooks, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter 'sedes'"):
        papermill.execute_notebook(str(notebooks / "01_a.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"sedes": [1]}, kernel_name="python3", progress_bar=False)


def test_profiles_checked_against_all_notebooks(notebooks):
    (notebooks / "params" / "good.yaml").write_text("seeds: [0, 1]\nwidth: 8\n")
    (notebooks / "params" / "bad.yaml").write_text("seedz: [0, 1]\n")
    assert load_profile("good") == {"seeds": [0, 1], "width": 8}
    with pytest.raises(ParameterError, match=r"unknown parameters \['seedz'\]"):
        load_profile("bad")
    with pytest.raises(ParameterError, match="valid profiles: bad, good"):
        load_profile("nope")


def test_parameters_cell_must_be_annotated(notebooks):
    _notebook(notebooks / "03_c.ipynb", "x = 1\n")
    with pytest.raises(ParameterError, match="name: type = value"):
        declared_parameters("03_c")
