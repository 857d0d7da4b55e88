"""Where the main job and the tests write: one outputs folder per profile with a manifest, a shared run
store, failures that never replace a good execution, "already done" only for the outputs asked for,
checks before the first notebook, and `make test`'s nbval step kept out of the user's folders.

The main-job tests execute a small notebook (real papermill kernels) that writes a table, a figure
named after its `value` parameter and a run named after it, and fails when `fail` is set."""
import json
import os
import subprocess
import sys

import nbformat
import pytest
import torch

import tiny_project
from lth_core import paths
from lth_core.programs import reproduce
from lth_core.programs.job_errors import JobError
from lth_core.params.notebook import ParameterError

PARAMS = ('device: str = "auto"\nexecutor: str = "local"\nexecutor_options: dict = {}\n'
          'seeds: list = [0]\nvalue: int = 1\nfail: bool = False\n')
BODY = '''for d in (paths.tables_dir(), paths.figures_dir(), paths.runs_dir()):
    d.mkdir(parents=True, exist_ok=True)
(paths.tables_dir() / "value.csv").write_text(str(value))
(paths.figures_dir() / f"only_{value}.txt").write_text(str(value))
(paths.runs_dir() / f"run_{value}").write_text(str(value))
assert not fail, "asked to fail"
'''


# a table several notebooks write, each replacing its own row (as report/claims.py does with claims.csv)
MERGE = '''paths.tables_dir().mkdir(parents=True, exist_ok=True)
shared = paths.tables_dir() / "shared.csv"
rows = dict(line.split(",") for line in shared.read_text().splitlines()) if shared.exists() else {}
rows["NAME"] = str(value)
shared.write_text("".join(f"{k},{v}\\n" for k, v in sorted(rows.items())))
'''


def _write_notebook(folder, name, body=BODY):
    tiny_project.write_notebook(folder, name, PARAMS, body)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A notebooks folder with one notebook `01_n`; returns a profile writer."""
    d = tmp_path / "nbs"
    (d / "params").mkdir(parents=True)
    _write_notebook(d, "01_n")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", d)
    monkeypatch.setattr(paths, "PARAMS_DIR", d / "params")

    def profile(name, text):
        (d / "params" / f"{name}.yaml").write_text(text)
    return profile


def _injected(executed) -> str:
    cells = json.loads(executed.read_text())["cells"]
    return "".join("".join(c["source"]) for c in cells if "injected-parameters" in c["metadata"].get("tags", []))


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_profiles_have_their_own_folders_and_share_the_run_store(project):
    project("a", "value: 1\n")
    project("b", "value: 2\n")
    assert reproduce.reproduce("a", device="cpu") == ["01_n"]
    assert reproduce.reproduce("b", device="cpu") == ["01_n"]
    # a, b, a: the second call for a finds its own outputs, which b did not touch
    assert reproduce.reproduce("a", device="cpu") == []
    a, b = reproduce.profile_dir("a"), reproduce.profile_dir("b")
    assert (a / "tables" / "value.csv").read_text() == "1" and (b / "tables" / "value.csv").read_text() == "2"
    assert "value = 1" in _injected(a / "notebooks" / "01_n.ipynb")
    assert "value = 2" in _injected(b / "notebooks" / "01_n.ipynb")
    assert sorted(p.name for p in paths.runs_dir().iterdir()) == ["run_1", "run_2"]
    assert paths.runs_dir() == paths.outputs_dir() / "runs"
    assert not (a / "runs").exists() and not (a / "work" / "01_n" / "runs").exists()

    manifest = reproduce.read_manifest("a")
    assert manifest["profile"] == "a" and manifest["parameters"]["value"] == 1
    assert manifest["git_commit"] and manifest["updated"]
    record = manifest["notebooks"]["01_n"]
    assert record["status"] == "done" and record["published"]["parameters"]["value"] == 1
    assert set(record["published"]["files"]) == {"notebooks/01_n.ipynb", "tables/value.csv", "figures/only_1.txt"}


def test_a_failure_never_replaces_the_good_execution(project):
    project("p", "value: 1\n")
    reproduce.reproduce("p", device="cpu")
    folder = reproduce.profile_dir("p")
    good = _tree(folder / "notebooks") | _tree(folder / "tables") | _tree(folder / "figures")

    project("p", "value: 2\nfail: true\n")
    with pytest.raises(JobError, match="notebook 01_n failed: AssertionError: asked to fail"):
        reproduce.reproduce("p", device="cpu")
    failed = folder / "notebooks" / "01_n.failed.ipynb"
    assert "value = 2" in _injected(failed)
    # the value-2 table and figure were written before the failing cell; none of them is published
    assert _tree(folder / "notebooks") | _tree(folder / "tables") | _tree(folder / "figures") == \
        good | {"01_n.failed.ipynb": failed.read_bytes(), "01_n.failed.html": failed.with_suffix(".html").read_bytes()}
    assert "asked to fail" in (folder / "index.html").read_text()  # the results page, written after a failure too
    record = reproduce.read_manifest("p")["notebooks"]["01_n"]
    assert record["status"] == "failed" and "asked to fail" in record["error"]
    assert record["attempt"]["parameters"]["value"] == 2 and record["published"]["parameters"]["value"] == 1

    # the failed attempt is not "done": fixed, it runs again and replaces the failed copy
    project("p", "value: 2\n")
    assert reproduce.reproduce("p", device="cpu") == ["01_n"]
    assert (folder / "tables" / "value.csv").read_text() == "2" and not failed.exists()
    # what the value-1 execution alone wrote is gone, not left beside the value-2 outputs as current
    assert sorted(p.name for p in (folder / "figures").iterdir()) == ["only_2.txt"]
    assert reproduce.read_manifest("p")["notebooks"]["01_n"]["status"] == "done"


@pytest.mark.parametrize("damage", ["edit a table", "delete the executed notebook"])
def test_already_done_only_when_the_outputs_on_disk_are_the_ones_asked_for(project, damage, capsys):
    project("p", "value: 1\n")
    reproduce.reproduce("p", device="cpu")
    folder = reproduce.profile_dir("p")
    assert reproduce.reproduce("p", device="cpu") == []
    assert "already done" in capsys.readouterr().out
    if damage == "edit a table":
        (folder / "tables" / "value.csv").write_text("7")
    else:
        (folder / "notebooks" / "01_n.ipynb").unlink()
    assert reproduce.reproduce("p", device="cpu") == ["01_n"]
    assert (folder / "tables" / "value.csv").read_text() == "1" and (folder / "notebooks" / "01_n.ipynb").exists()


def test_outputs_of_replaced_parameters_are_marked_outdated(project):
    _write_notebook(paths.NOTEBOOKS_DIR, "02_m", "x = 1\n")
    project("p", "value: 1\n")
    assert reproduce.reproduce("p", device="cpu") == ["01_n", "02_m"]
    project("p", "value: 3\n")
    # only 02_m runs: 01_n's published outputs stay, and the manifest says they are not the current ones
    assert reproduce.reproduce("p", device="cpu", only=["02_m"]) == ["02_m"]
    manifest = reproduce.read_manifest("p")
    assert manifest["parameters"]["value"] == 3
    assert manifest["notebooks"]["01_n"]["status"] == "outdated"
    assert manifest["notebooks"]["01_n"]["published"]["parameters"]["value"] == 1
    assert manifest["notebooks"]["02_m"]["status"] == "done"
    assert reproduce.reproduce("p", device="cpu") == ["01_n"]
    assert reproduce.read_manifest("p")["notebooks"]["01_n"]["status"] == "done"


def test_a_table_several_notebooks_write_keeps_their_rows_and_stays_done(project):
    for name in ("01_n", "02_m"):
        _write_notebook(paths.NOTEBOOKS_DIR, name, MERGE.replace("NAME", name))
    project("p", "value: 1\n")
    assert reproduce.reproduce("p", device="cpu") == ["01_n", "02_m"]
    shared = reproduce.profile_dir("p") / "tables" / "shared.csv"
    assert shared.read_text() == "01_n,1\n02_m,1\n"
    assert reproduce.reproduce("p", device="cpu") == []  # 02_m's rewrite did not make 01_n look damaged
    project("p", "value: 2\n")
    assert reproduce.reproduce("p", device="cpu", only=["01_n"]) == ["01_n"]
    assert shared.read_text() == "01_n,2\n02_m,1\n"


def test_device_executor_and_ranges_checked_before_any_notebook_starts(project, monkeypatch):
    project("p", "value: 1\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        reproduce.reproduce("p", device="cuda")
    with pytest.raises(ParameterError, match=r"parameter 'executor' = 'slurmm' is out of range"):
        reproduce.reproduce("p", device="cpu", executor="slurmm")
    with pytest.raises(ParameterError, match=r"parameter 'executor_options' = \{'wrkers': 2\}"):
        reproduce.reproduce("p", device="cpu", executor="processes", executor_options={"wrkers": 2})
    project("p", "value: 1\nseeds: [0, 0]\n")
    with pytest.raises(ParameterError, match=r"profile 'p': 01_n: parameter 'seeds' = \[0, 0\]"):
        reproduce.reproduce("p", device="cpu")
    project("runs", "value: 1\n")
    with pytest.raises(ValueError, match="would write into the run store"):
        reproduce.reproduce("runs", device="cpu")
    assert not paths.outputs_dir().exists()  # nothing started, nothing written


def test_cli_reports_a_device_without_gpu_before_starting(project, monkeypatch, capsys):
    project("p", "value: 1\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert reproduce.main(["--profile", "p", "--device", "cuda"]) == 1
    assert "torch sees no CUDA GPU" in capsys.readouterr().err
    assert not paths.outputs_dir().exists()


def test_make_nbval_leaves_the_users_outputs_and_data_cache_alone(shared_data, tmp_path):
    # the user's folders, as the environment names them: nbval must write neither
    user_outputs, user_cache, tmp = tmp_path / "user_outputs", tmp_path / "user_data", tmp_path / "tmp"
    for d in (user_outputs / "figures", user_outputs / "tables", user_cache, tmp):
        d.mkdir(parents=True)
    (user_outputs / "figures" / "fig1_lenet_mnist.png").write_bytes(b"a real run's figure")
    (user_outputs / "tables" / "table1.csv").write_text("a real run's table\n")
    before = _tree(user_outputs), _tree(user_cache)
    env = {**os.environ, "LTH_OUTPUTS_DIR": str(user_outputs), "LTH_RUNS_DIR": str(user_outputs / "runs"),
           "LTH_CACHE_DIR": str(user_cache), "LTH_DATA_DIR": str(shared_data), "TMPDIR": str(tmp)}
    # `make test`'s nbval step on one notebook (its smoke defaults); -o: never reinstall the venv here
    job = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "nbval", f"PY={sys.executable}",
                          "NBVAL_NOTEBOOKS=notebooks/01_trainability_unseen.ipynb"],
                         cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert " passed" in job.stdout
    assert (_tree(user_outputs), _tree(user_cache)) == before
    assert list(tmp.iterdir()) == []  # the temporary folder is removed


WHERE = """import os
from pathlib import Path
from lth_core import paths
for d in (paths.tables_dir(), paths.runs_dir(), paths.CACHE_DIR):
    d.mkdir(parents=True, exist_ok=True)
    (d / "written.txt").write_text("by the notebook")
expected = {name: Path(os.environ[f"EXPECT_{name}"]).resolve() for name in ("OUTPUTS", "RUNS", "CACHE")}
for name, got in (("OUTPUTS", paths.outputs_dir()), ("RUNS", paths.runs_dir()), ("CACHE", paths.CACHE_DIR)):
    assert got == expected[name] or expected[name] in got.parents, (name, got, expected[name])
"""


@pytest.mark.parametrize("caller_sets_outputs", [False, True])
def test_pytest_nbval_run_directly_writes_into_a_temporary_folder(caller_sets_outputs, tmp_path):
    # `pytest --nbval-lax notebooks/` without make: notebooks/conftest.py moves what the kernels write
    # into a temporary folder, except the folders the caller named
    folder, tmp = tmp_path / "notebooks", tmp_path / "tmp"
    folder.mkdir(), tmp.mkdir()
    (folder / "conftest.py").write_bytes((paths.NOTEBOOKS_DIR / "conftest.py").read_bytes())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(WHERE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "where.ipynb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LTH_")}
    env.update(TMPDIR=str(tmp), EXPECT_OUTPUTS=str(tmp), EXPECT_RUNS=str(tmp), EXPECT_CACHE=str(tmp))
    if caller_sets_outputs:
        mine = tmp_path / "mine"
        env.update(LTH_OUTPUTS_DIR=str(mine), EXPECT_OUTPUTS=str(mine), EXPECT_RUNS=str(mine / "runs"))
    before = _tree(paths.REPO_ROOT / "outputs"), _tree(paths.REPO_ROOT / "data")
    job = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          str(folder / "where.ipynb")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert job.returncode == 0 and "1 passed" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
    assert (_tree(paths.REPO_ROOT / "outputs"), _tree(paths.REPO_ROOT / "data")) == before
    assert list(tmp.iterdir()) == []  # the temporary folder is removed
    if caller_sets_outputs:
        assert (mine / "tables" / "written.txt").exists() and (mine / "runs" / "written.txt").exists()


def test_a_skipped_notebook_made_by_other_code_says_so(project, monkeypatch, capsys):
    project("p", "value: 1\n")
    monkeypatch.setattr(reproduce, "_git_commit", lambda: "a" * 40)
    reproduce.reproduce("p", device="cpu")
    assert reproduce.reproduce("p", device="cpu") == []
    assert "made with commit" not in capsys.readouterr().out  # same code: nothing to say
    monkeypatch.setattr(reproduce, "_git_commit", lambda: "b" * 40)
    assert reproduce.reproduce("p", device="cpu") == []  # still skipped: the fingerprint does not cover lth_core
    out = capsys.readouterr().out
    assert f"made with commit {'a' * 12}, the code is now at {'b' * 12}" in out and "--force" in out


def test_slurm_jobs_resolve_the_device_so_a_login_node_without_a_gpu_can_ask_for_cuda(project, monkeypatch):
    project("p", "value: 1\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a login node
    assert reproduce.reproduce("p", device="cuda", executor="slurm") == ["01_n"]
    assert 'device = "cuda"' in _injected(reproduce.profile_dir("p") / "notebooks" / "01_n.ipynb")
