"""The notebook parameter check and the library check a config field with one rule: the same values are
refused, in the same words; a new network parameter takes its config field and the parameters cell only."""
import json
import re

import nbformat
import papermill
import pytest

from lth_core import checks, paths
from lth_core.config import IMPConfig, TrainConfig, paper_config
from lth_core.params.notebook import (PARAMETERS_HEADER, ParameterError, check_parameters, declared_parameters,
                                      network_overrides)
from lth_core.studies import faster_tickets, unseen

U, F, S = "01_trainability_unseen", "02_faster_tickets", "03_shufflenet"


def _defaults(notebook, notebooks_dir=None):
    return {name: spec[2] for name, spec in declared_parameters(notebook, notebooks_dir).items()}


def _library_words(call) -> str:
    with pytest.raises(checks.ConfigError) as err:
        call()
    return err.value.valid


def _notebook_message(notebook, over, notebooks_dir=None) -> str:
    with pytest.raises(ParameterError) as err:
        check_parameters(notebook, {**_defaults(notebook, notebooks_dir), **over}, notebooks_dir)
    return str(err.value)


LENET = "lenet_300_100"


@pytest.mark.parametrize("notebook,over,library", [
    (U, {"lenet_rounds": -1}, lambda: paper_config(LENET, rounds=-1)),
    (U, {"lenet_iterations": 0}, lambda: paper_config(LENET, iterations=0)),
    (U, {"lenet_eval_every": 0}, lambda: paper_config(LENET, eval_every=0)),
    (U, {"lenet_val_size": 0}, lambda: paper_config(LENET, val_size=0)),
    (U, {"lenet_val_size": 60_000}, lambda: paper_config(LENET, val_size=60_000)),
    (U, {"conv2_val_size": 50_000}, lambda: paper_config("conv2", val_size=50_000)),
    (U, {"lenet_train_limit": 0}, lambda: paper_config(LENET, train_limit=0)),
    (U, {"conv2_test_limit": 20_000}, lambda: paper_config("conv2", test_limit=20_000)),
    (U, {"lenet_patience": 0}, lambda: paper_config(LENET, patience=0)),
    (U, {"lenet_precision": "fp16"}, lambda: paper_config(LENET, precision="fp16")),
    (F, {"conv2_precision": "fp16"}, lambda: paper_config("conv2", precision="fp16")),
    (S, {"shufflenet_precision": "fp16"}, lambda: paper_config("shufflenet", precision="fp16")),
    (U, {"controls": ["reinit", "reinit"]}, lambda: IMPConfig(controls=("reinit", "reinit"))),
    (S, {"shufflenet_prune_rate": 0.0}, lambda: paper_config("shufflenet", prune_rate=0.0)),
    (S, {"shufflenet_prune_rate": 1.0}, lambda: paper_config("shufflenet", prune_rate=1.0)),
    (S, {"shufflenet_batch_size": 0}, lambda: paper_config("shufflenet", batch_size=0)),
    (S, {"shufflenet_rewind_iteration": 7}, lambda: paper_config("shufflenet", iterations=6, rewind_iteration=7)),
    (S, {"shufflenet_constant_lr": 0.0}, lambda: TrainConfig(lr=0.0)),
    (F, {"faster_criterion": "loss"}, lambda: TrainConfig(criterion="loss")),
    (F, {"lenet_budget_epochs": 0.0}, lambda: TrainConfig(epochs=0.0)),
])
def test_the_notebook_refuses_what_the_library_refuses_in_its_words(notebook, over, library):
    (name, value), = over.items()
    assert _notebook_message(notebook, over) == (f"{notebook}: parameter {name!r} = {value!r} is out of range; "
                                                 f"valid: {_library_words(library)}")


@pytest.mark.parametrize("name,value", [("lenet_rounds", 1.5), ("lenet_iterations", 2.5), ("lenet_val_size", 2.5),
                                        ("lenet_test_limit", True)])
def test_the_notebook_refuses_the_non_integers_the_library_refuses(name, value):
    field = name.removeprefix("lenet_")
    _library_words(lambda: paper_config(LENET, **{field: value}))
    assert f"parameter {name!r} must be int" in _notebook_message(U, {name: value})


@pytest.mark.parametrize("over,item", [({"seeds": [0, -1]}, lambda: IMPConfig(seed=-1)),
                                       ({"lenet_subset_percents": [0, 100]}, lambda: IMPConfig(subset_percent=0))])
def test_a_list_parameter_checks_its_items_by_the_fields_rule(over, item):
    notebook = F
    assert f"each {_library_words(item)}" in _notebook_message(notebook, over)


def test_faster_tickets_and_the_notebook_share_the_subset_list_rule():
    message = _notebook_message(F, {"conv2_subset_percents": [10, 50]})
    valid = message.split("valid: ", 1)[1]
    with pytest.raises(ValueError) as err:
        faster_tickets.check_subset_percents([10, 50], "conv2")
    assert str(err.value) == f"conv2: subset sizes [10, 50] are out of range; valid: {valid}"
    assert faster_tickets.check_subset_percents([100, 10], "conv2") == [10.0, 100.0]


TOY = "lenet_lr_gamma: float = 0.5  # a TrainConfig field, declared in the parameters cell alone\n"


def _copy_with_toy_parameter(notebooks_dir):
    """notebooks_dir/01_trainability_unseen.ipynb: the project's notebook with TOY in its parameters cell."""
    nb = json.loads((paths.NOTEBOOKS_DIR / f"{U}.ipynb").read_text())
    cell, = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    cell["source"] = "".join(cell["source"]) + "\n" + TOY
    notebooks_dir.mkdir()
    (notebooks_dir / f"{U}.ipynb").write_text(json.dumps(nb))


def test_a_new_network_parameter_reaches_the_config_and_its_rule_with_no_other_code(tmp_path):
    d = tmp_path / "nbs"
    _copy_with_toy_parameter(d)
    values = check_parameters(U, _defaults(U, d), d)
    assert network_overrides(values, LENET)["lr_gamma"] == 0.5 and "lr_gamma" not in network_overrides(values, "conv2")
    configs = unseen.configs_from_parameters(values)
    assert {c.train.lr_gamma for c in configs if c.network == LENET} == {0.5}
    assert _notebook_message(U, {"lenet_lr_gamma": 0}, d) == (
        f"{U}: parameter 'lenet_lr_gamma' = 0 is out of range; valid: {_library_words(lambda: TrainConfig(lr_gamma=0))}")


def test_papermill_stops_on_a_value_the_config_refuses(tmp_path):
    # the notebook's own first cells (imports, parameters, validation) with the toy parameter, run by papermill
    d = tmp_path / "nbs"
    d.mkdir()
    src = nbformat.read(paths.NOTEBOOKS_DIR / f"{U}.ipynb", as_version=4)
    params, = [c for c in src.cells if "parameters" in c.metadata.get("tags", [])]
    assert params.source.startswith(PARAMETERS_HEADER)
    nb = nbformat.v4.new_notebook(metadata=src.metadata)
    nb.cells = [nbformat.v4.new_code_cell("from typing import Optional\n"
                                          "from lth_core.params.notebook import validate_parameters"),
                nbformat.v4.new_code_cell(params.source + "\n" + TOY, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"P = validate_parameters(globals(), {U!r}, {str(d)!r})")]
    nbformat.write(nb, d / f"{U}.ipynb")
    words = _library_words(lambda: TrainConfig(lr_gamma=0))
    with pytest.raises(papermill.PapermillExecutionError,
                       match=re.escape(f"parameter 'lenet_lr_gamma' = 0 is out of range; valid: {words}")):
        papermill.execute_notebook(str(d / f"{U}.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   parameters={"lenet_lr_gamma": 0}, progress_bar=False)
