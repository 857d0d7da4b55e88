import json

import nbformat
import papermill
import pytest
import torch

from lth_core import paths
from lth_core.params.notebook import INJECTED_HEADER, PARAMETERS_HEADER, ParameterError, check_parameters, declared_parameters, validate_parameters
from lth_core.params.profiles import load_profile

PARAMS_A = ('seeds: list = [0]  # seeds\nlr: float = 0.1  # step\nlimit: Optional[int] = None  # rows\n'
            'name: str = "x"\nratio: float | None = 0.5\n')
PARAMS_B = 'seeds: list = [0]\nwidth: int = 3\n'


def _notebook(path, params_src):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("from typing import Optional\nfrom lth_core.params.notebook import validate_parameters"),
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


@pytest.mark.parametrize("over,match", [({"lr": "fast"}, r"'lr' must be float or int, got 'fast'"),
                                        ({"seeds": 3}, "'seeds' must be list"),
                                        ({"limit": 2.5}, "'limit' must be int or None"),
                                        ({"name": True}, "'name' must be str")])
def test_bad_names_and_types_rejected(notebooks, over, match):
    with pytest.raises(ParameterError, match=match):
        validate_parameters(_ns(**over), "01_a")


def _kernel_ns(*cells, **values):
    """A kernel's namespace after running `cells` (IPython's input history `In` holds their sources)."""
    return {**_ns(**values), "In": ["", "from typing import Optional", *cells, "P = validate_parameters(...)"]}


def _injected(**values):
    return INJECTED_HEADER + "\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())


HEADED_A = PARAMETERS_HEADER + "\n" + PARAMS_A


def test_an_unknown_injected_name_is_an_error_naming_it_and_the_valid_ones(notebooks):
    ns = _kernel_ns(HEADED_A, _injected(lrr=0.2), lrr=0.2)
    with pytest.raises(ParameterError, match=r"01_a: unknown parameter 'lrr'; valid parameters: seeds, lr, limit, "
                                             r"name, ratio$"):
        validate_parameters(ns, "01_a")
    # the same without the parameters cell in the history (a notebook without the header): still refused
    with pytest.raises(ParameterError, match="unknown parameter 'lrr'"):
        validate_parameters(_kernel_ns(PARAMS_A, _injected(lrr=0.2), lrr=0.2), "01_a")


def test_injected_values_are_type_checked_and_other_notebooks_names_accepted(notebooks):
    assert validate_parameters(_kernel_ns(HEADED_A, _injected(lr=0.5, width=4), lr=0.5, width=4), "01_a")["lr"] == 0.5
    with pytest.raises(ParameterError, match="'lr' must be float or int, got 'fast'"):
        validate_parameters(_kernel_ns(HEADED_A, _injected(lr="fast"), lr="fast"), "01_a")


def test_scratch_variables_and_P_are_not_parameters(notebooks):
    ns = _kernel_ns(HEADED_A, "x = 5", "P = validate_parameters(globals(), '01_a')", "x = 5", x=5, P={"seeds": [0]},
                    ratio=0.5)
    assert validate_parameters(ns, "01_a") == {"seeds": [0], "lr": 0.1, "limit": None, "name": "x", "ratio": 0.5}


def test_a_parameter_assigned_outside_the_parameters_cell_is_named_and_the_cell_decides(notebooks, capsys):
    ns = _kernel_ns(HEADED_A, "seeds = [0, 1, 2]", seeds=[0, 1, 2], ratio=0.5)
    assert validate_parameters(ns, "01_a")["seeds"] == [0]
    err = capsys.readouterr().err
    assert ("01_a: parameter 'seeds' = [0, 1, 2] was assigned outside the parameters cell and is not used: the "
            "parameters cell decides (seeds = [0])") in err and "'lr'" not in err
    # papermill's injected cell sets parameters as the parameters cell does: its values are used, without a word
    ns = _kernel_ns(HEADED_A, _injected(seeds=[1, 2]), seeds=[1, 2], ratio=0.5)
    assert validate_parameters(ns, "01_a")["seeds"] == [1, 2] and capsys.readouterr().err == ""


def test_the_parameters_cell_run_last_declares_the_parameters_not_the_file(notebooks):
    edited = HEADED_A.replace("lr: float = 0.1", "lr: float = 0.3").replace("ratio: float | None = 0.5\n",
                                                                              "depth: int = 2\n")
    ns = _kernel_ns(HEADED_A, edited, lr=0.3, depth=2)
    assert validate_parameters(ns, "01_a") == {"seeds": [0], "lr": 0.3, "limit": None, "name": "x", "depth": 2}
    # its declarations check the values: an edit that gives a value of the wrong type is refused
    with pytest.raises(ParameterError, match="'depth' must be int, got 'two'"):
        validate_parameters(_kernel_ns(HEADED_A, edited.replace("depth: int = 2", "depth: int = 'two'"), lr=0.3,
                                       depth="two"), "01_a")
    with pytest.raises(ParameterError, match=r"01_a: the parameters cell does not parse \(.*line 2\); fix it"):
        validate_parameters(_kernel_ns(HEADED_A, PARAMETERS_HEADER + "\nlr: float = = 2\n"), "01_a")


def test_names_injected_before_the_parameters_cell_run_last_are_not_checked(notebooks):
    # papermill's output notebook opened in a kernel: its parameters cell re-run later replaced the values
    ns = _kernel_ns(HEADED_A, _injected(lrr=0.2), HEADED_A, lrr=0.2)
    assert validate_parameters(ns, "01_a")["lr"] == 0.1


@pytest.mark.parametrize("notebook", ["01_trainability_unseen", "02_faster_tickets", "03_shufflenet"])
def test_project_parameters_cells_open_with_the_header(notebook):
    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb", as_version=4)
    cell, = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert cell.source.splitlines()[0] == PARAMETERS_HEADER


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


def _defaults(notebook):
    return {name: spec[2] for name, spec in declared_parameters(notebook).items()}


U, F, S = "01_trainability_unseen", "02_faster_tickets", "03_shufflenet"


@pytest.mark.parametrize("notebook,over,valid", [
    (U, {"lenet_test_limit": -5}, r"None or an integer in \[1, 10000\]"),  # was: 9,995 test rows
    (U, {"conv2_test_limit": 20_000}, r"None or an integer in \[1, 10000\]"),
    (U, {"tolerance": -1.0}, "a finite number >= 0"),  # was: the dense network outside its own band
    (S, {"tolerance": float("nan")}, "a finite number >= 0"),
    (U, {"seeds": [0, 0]}, "distinct seeds, each an integer >= 0"),  # was: every row twice
    (F, {"seeds": []}, "a non-empty list"),
    (U, {"lenet_val_size": 0}, r"an integer in \[1, 59999\] \(mnist has 60,000 training rows"),  # was: a failure at the first evaluation
    (F, {"conv2_val_size": 50_000}, r"an integer in \[1, 49999\] \(cifar10 has 50,000 training rows; the rest is the pool\)"),
    (S, {"shufflenet_val_size": 50_000}, r"an integer in \[1, 49999\]"),  # was: RunFailedError after loading
    (U, {"lenet_train_limit": 0}, r"None or an integer >= 1"),
    (S, {"shufflenet_batch_size": 0}, r"an integer >= 1"),
    (S, {"shufflenet_train_limit": 0}, r"None or an integer >= 1"),
    (U, {"lenet_rounds": -1}, r"an integer >= 0"),
    (F, {"conv2_iterations": 0}, r"an integer >= 1"),
    (U, {"lenet_eval_every": 0}, r"an integer >= 1"),
    (S, {"shufflenet_prune_rate": 1.0}, r"a fraction in \(0, 1\)"),
    (S, {"shufflenet_prune_rate": -0.1}, r"a fraction in \(0, 1\)"),
    (S, {"shufflenet_prune_rate": 0.0}, r"a fraction in \(0, 1\) \(0 prunes nothing"),
    (S, {"shufflenet_rewind_iteration": 7}, r"None or an integer in \[0, 6\] \(within the training budget"),
    (S, {"shufflenet_constant_lr": 0.0}, "a finite number > 0"),
    (F, {"lenet_patience": 0}, r"None or an integer >= 1"),
    (U, {"conv2_patience": -3}, r"None or an integer >= 1"),
    (F, {"lenet_budget_epochs": 0.0}, "a finite number > 0"),
    (F, {"faster_protocols": ["iterations", "iterations"]}, "distinct budget protocols"),
    (F, {"faster_criterion": "loss"}, "one of val_loss, val_acc"),
    (F, {"lenet_subset_percents": [10, 10, 100]}, "distinct percents"),
    (F, {"conv2_subset_percents": [10, 50]}, "includes 100"),
    (F, {"lenet_subset_percents": [0, 100]}, r"in \(0, 100\]"),
    (U, {"controls": ["reinit", "reinit"]}, "distinct controls"),
    (U, {"controls": ["shuffle"]}, "distinct controls from"),
    (U, {"unseen_networks": []}, "a non-empty list of distinct networks"),
    (U, {"unseen_networks": ["shufflenet"]}, "distinct networks from"),
    (U, {"device": "tpu"}, "one of auto, cpu, cuda or cuda:N"),
    (F, {"conv2_precision": "fp16"}, "one of float32, tf32, bf16"),
    (S, {"shufflenet_precision": "fp16"}, "one of float32, tf32, bf16"),
    (S, {"device": "cpu", "shufflenet_precision": "tf32"}, r"float32 or bf16 on device cpu \(tf32 is a CUDA tensor-core format\)"),
    (U, {"device": "cpu", "conv2_precision": "tf32"}, r"float32 or bf16 on device cpu \(tf32 is a CUDA tensor-core format\)"),
    (F, {"executor": "cluster"}, "one of local, processes, slurm"),
    (S, {"executor_options": {"wrkers": 2}}, "unknown executor options"),
    (S, {"executor_options": {"fuse": "false"}}, "fuse='false': must be true, false or None"),
    (S, {"executor_options": {"workers": "2"}}, r"workers='2': must be None or a whole number >= 1"),
    (S, {"executor_options": {"workers": -1}}, r"workers=-1: must be None or a whole number >= 1"),
    (S, {"executor_options": {"threads": -2}}, r"threads=-2: must be None or a whole number >= 1"),
    (S, {"executor_options": {"cpus_per_job": 0}}, r"cpus_per_job=0: must be a whole number >= 1"),
    (S, {"executor_options": {"cluster": "pbs"}}, "cluster='pbs': must be one of slurm, local"),
])
def test_out_of_range_values_name_the_parameter_value_and_range(notebook, over, valid):
    name = list(over)[-1]  # the value out of range (any before it sets the scene)
    with pytest.raises(ParameterError, match=rf"{notebook}: parameter '{name}' = .* is out of range; valid: .*{valid}"):
        check_parameters(notebook, {**_defaults(notebook), **over})


PRECISIONS_OF = {U: ("lenet_precision", "conv2_precision"), F: ("lenet_precision", "conv2_precision"),
                 S: ("shufflenet_precision",)}


@pytest.mark.parametrize("notebook", [U, F, S])
def test_the_precision_parameters_reach_every_run_of_the_notebook(notebook):
    from lth_core.studies.catalog import STUDIES
    values = check_parameters(notebook, {**_defaults(notebook), **{n: "bf16" for n in PRECISIONS_OF[notebook]}})
    configs = STUDIES[notebook].configs_from_parameters(values)
    assert configs and {c.train.precision for c in configs} == {"bf16"}
    default = STUDIES[notebook].configs_from_parameters(_defaults(notebook))
    assert {c.train.precision for c in default} == {"float32"}


@pytest.mark.parametrize("notebook", [U, F])
def test_each_network_trains_in_its_own_precision(notebook):
    from lth_core.studies.catalog import STUDIES
    values = check_parameters(notebook, {**_defaults(notebook), "conv2_precision": "bf16"})
    configs = STUDIES[notebook].configs_from_parameters(values)
    by_network = {n: {c.train.precision for c in configs if c.network == n} for n in ("conv2", "lenet_300_100")}
    assert by_network == {"conv2": {"bf16"}, "lenet_300_100": {"float32"}}
    with pytest.raises(ParameterError, match=rf"{notebook}: parameter 'lenet_precision' = 'tf32' is out of range; "
                                             r"valid: float32 or bf16 on device cpu"):
        check_parameters(notebook, {**_defaults(notebook), "device": "cpu", "lenet_precision": "tf32"})


def test_cuda_without_a_gpu_is_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="parameter 'device' = 'cuda' is out of range; valid: auto or cpu"):
        check_parameters(U, {**_defaults(U), "device": "cuda"})


@pytest.mark.parametrize("notebook", [U, F, S])
def test_notebook_defaults_and_boundary_values_are_in_range(notebook):
    values = _defaults(notebook)
    assert check_parameters(notebook, values) == values
    p = {U: "lenet", F: "conv2", S: "shufflenet"}[notebook]
    edge = {f"{p}_test_limit": 10_000, f"{p}_eval_every": values[f"{p}_iterations"], f"{p}_rounds": 0,
            "tolerance": 0, "seeds": [2, 0]}
    assert check_parameters(notebook, {**values, **edge})["seeds"] == [2, 0]


def test_validate_parameters_checks_ranges_in_the_notebook():
    ns = {**_defaults(U), "lenet_test_limit": -5, "validate_parameters": validate_parameters}
    with pytest.raises(ParameterError, match=r"parameter 'lenet_test_limit' = -5 is out of range"):
        validate_parameters(ns, U)


def test_profiles_are_range_checked_against_every_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PARAMS_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text("shufflenet_val_size: 60000\n")
    with pytest.raises(ParameterError, match=r"profile 'bad': 03_shufflenet: parameter 'shufflenet_val_size' = 60000"):
        load_profile("bad")
    (tmp_path / "mistyped.yaml").write_text("lenet_rounds: three\n")
    with pytest.raises(ParameterError, match=r"profile 'mistyped': 01_trainability_unseen: parameter 'lenet_rounds' "
                                             r"must be int"):
        load_profile("mistyped")


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper", "controls", "cifar"])
def test_shipped_profiles_are_in_range(profile):
    load_profile(profile)


def test_the_main_job_lists_every_shipped_profile(capsys):
    from lth_core.params.profiles import profile_names
    from lth_core.programs.reproduce import main
    assert profile_names() == ["cifar", "controls", "paper", "quick", "smoke"]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "cifar | controls | paper | quick | smoke" in " ".join(capsys.readouterr().out.split())


def test_a_profile_names_the_notebooks_it_is_made_for():
    from lth_core.params.profiles import profile_notebooks
    from lth_core.programs.reproduce import estimate
    assert profile_notebooks("controls") == ["01_trainability_unseen"] and profile_notebooks("quick") is None
    assert "notebooks" not in load_profile("controls")  # the profile's own key, not a parameter
    assert set(estimate("controls", device="cpu")["notebook"]) == {"01_trainability_unseen"}


@pytest.mark.parametrize("listed", ["[01_trainability_unseen, 01_trainability_unseen]", "[04_nothing]", "[]",
                                    "01_trainability_unseen"])
def test_a_profiles_notebook_list_is_checked(listed, tmp_path, monkeypatch):
    from lth_core.params.profiles import profile_notebooks
    monkeypatch.setattr(paths, "PARAMS_DIR", tmp_path)
    (tmp_path / "odd.yaml").write_text(f"notebooks: {listed}\n")
    with pytest.raises(ParameterError, match=r"odd.yaml: `notebooks` must be a list of distinct notebooks from"):
        profile_notebooks("odd")
