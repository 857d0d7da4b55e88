"""The main job under faults: every failure ends in one `error:` line naming what is at fault (the
traceback in a log), summaries count what happened, records say `done` only for a success, one
writer per profile folder, and relative LTH_* paths follow the directory the user started in.

Runs the tiny project of `tiny_project.py` (one notebook, tiny LeNet runs on synthetic data)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import papermill
import pytest

import tiny_project
from lth_core.programs import reproduce
from lth_core import paths, writer_lock
from lth_core.data import load_dataset
from lth_core.config import IMPConfig
from lth_core.runs import store
from lth_core.runs.executors import RunFailedError

CLI = ["--profile", "t", "--device", "cpu", "-o", "fuse=false"]




def test_run_failed_summary_counts_what_happened_and_says_one_cause_once():
    cfgs = [IMPConfig(network="lenet_300_100", seed=s) for s in range(4)]
    every = RunFailedError([(c, "DataError: MNIST not found", "log") for c in cfgs], total=4, finished=0)
    assert every.summary.startswith("4 of 4 runs failed; none finished")
    assert str(every).count("MNIST not found") == 1 and "4 runs failed with the same error" in str(every)
    some = RunFailedError([(cfgs[0], "boom", "log")], total=4, finished=2)
    assert some.summary.startswith("1 of 4 runs failed; 1 never started; 2 finished and are in the run store")


def test_a_data_error_is_reported_once_and_no_notebook_runs_on_missing_runs(tiny, tmp_path, monkeypatch, capsys):
    (tiny / "params" / "t.yaml").write_text("seeds: [0, 1]\n")
    from lth_core.runs import executors
    monkeypatch.setattr(executors, "load_dataset", load_dataset)  # the real loader: no synthetic data
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LTH_DATA_DIR", str(empty))  # and LTH_DOWNLOAD=0 (conftest): MNIST is nowhere
    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")
    assert reproduce.main(CLI) == 1
    out = capsys.readouterr()
    line = [x for x in out.err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and line[0].startswith("error: 2 of 2 runs failed; none finished")
    assert "not executed: 01_t" in line[0] and "mnist not found" in line[0], line[0]
    assert out.out.count("2 runs failed with the same error") == 1
    folder = reproduce.profile_dir("t")
    assert not (folder / "notebooks").exists()  # notebook 01_t was never started
    record = reproduce.read_manifest("t")["notebooks"]["01_t"]
    assert record["status"] == "not executed" and "2 of its runs failed" in record["error"]
    assert "Traceback" in (folder / "reproduce.log").read_text()


def test_a_malformed_profile_is_named(tiny, capsys, error_line):
    (tiny / "params" / "t.yaml").write_text("seeds: [0\nfail: true\n")
    assert reproduce.main(CLI) == 1
    line = error_line()
    assert str(tiny / "params" / "t.yaml") in line and "not valid YAML" in line
    assert not paths.outputs_dir().exists()


def test_a_damaged_manifest_is_named(tiny, capsys, error_line):
    folder = reproduce.profile_dir("t")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"notebooks": {"01_t": ')
    assert reproduce.main(CLI) == 1
    line = error_line()
    assert f"{folder / 'manifest.json'} is damaged" in line and "delete it and run again" in line
    assert "(traceback: " in line and "JSONDecodeError" in (folder / "reproduce.log").read_text()


def test_a_run_damaged_after_it_finished_is_named_by_force(tiny, capsys, error_line):
    assert reproduce.main(CLI) == 0
    [cfg] = tiny_project.configs_from_parameters({"seeds": [0]})
    (store.run_dir(cfg) / "round_001.pt").write_bytes(b"not a round file")
    capsys.readouterr()
    assert reproduce.main([*CLI, "--force"]) == 1
    line = error_line()
    assert str(store.run_dir(cfg)) in line and "round_001.pt" in line


def test_an_interrupted_execution_is_not_done_until_a_success_replaces_it(tiny, monkeypatch, capsys, error_line):
    assert reproduce.main(CLI) == 0
    execute = papermill.execute_notebook

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    assert reproduce.main([*CLI, "--force"]) == 130
    assert "error: interrupted; run the same command again to resume" in error_line()
    record = reproduce.read_manifest("t")["notebooks"]["01_t"]
    assert record["status"] == "interrupted"
    monkeypatch.setattr(papermill, "execute_notebook", execute)
    # not "already done": the last execution did not succeed, though the earlier outputs are on disk
    assert reproduce.reproduce("t", device="cpu", executor_options={"fuse": False}) == ["01_t"]
    record = reproduce.read_manifest("t")["notebooks"]["01_t"]
    assert record["status"] == "done" and "error" not in record
    assert not (reproduce.profile_dir("t") / "notebooks" / "01_t.failed.ipynb").exists()


def _mount(*args) -> str | None:
    job = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if job.returncode == 0 else (job.stderr.strip() or f"mount exited {job.returncode}")


@pytest.fixture
def mounts():
    made = []

    def mount(target: Path, *args):
        target.mkdir(parents=True, exist_ok=True)
        why = _mount(*args, str(target))
        if why:
            pytest.skip(f"cannot make a test filesystem here ({why})")
        made.append(target)
    yield mount
    for target in reversed(made):
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_read_only_outputs_folder_is_refused_before_any_training(tiny, tmp_path, mounts, monkeypatch, capsys, error_line):
    outputs = tmp_path / "ro"
    mounts(outputs, "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs")
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(outputs))
    monkeypatch.setenv("LTH_RUNS_DIR", str(tmp_path / "runs"))
    assert reproduce.main(CLI) == 1
    line = error_line()
    assert f"cannot write into the outputs folder {outputs / 't'}" in line or \
        f"cannot write {outputs / 't'}" in line, line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing trained


def test_a_full_disk_is_named_before_training_and_while_training(tiny, tmp_path, mounts, monkeypatch, capsys, error_line):
    runs = tmp_path / "small"
    mounts(runs, "-t", "tmpfs", "-o", "size=40k", "tmpfs")  # less than the writability probe
    monkeypatch.setenv("LTH_RUNS_DIR", str(runs))
    assert reproduce.main(CLI) == 1
    line = error_line()
    assert f"cannot write into the run store {runs} (it is full)" in line and "nothing was trained" in line

    bigger = tmp_path / "bigger"
    mounts(bigger, "-t", "tmpfs", "-o", "size=400k", "tmpfs")  # the probe fits, a LeNet round file does not
    monkeypatch.setenv("LTH_RUNS_DIR", str(bigger))
    assert reproduce.main(CLI) == 1
    line = error_line()
    # the run failed (and is listed with its log); the line names the file that did not fit
    assert line.startswith("error: 1 of 1 runs failed; none finished") and "not executed: 01_t" in line
    assert "No space left on device" in line and f"{bigger}/" in line, line


def test_relative_paths_mean_the_directory_the_user_started_in(tmp_path):
    start, elsewhere = tmp_path / "start", tmp_path / "start" / "notebooks"
    elsewhere.mkdir(parents=True)
    # papermill --cwd notebooks starts the kernel there; it inherits the caller's PWD and a relative value
    tiny_project.write_notebook(elsewhere, "where", "", "print(paths.runs_dir())")
    env = {**os.environ, "PWD": str(start), "LTH_RUNS_DIR": "my_runs", "PYTHONPATH": str(paths.REPO_ROOT)}
    subprocess.run([sys.executable, "-m", "papermill", str(elsewhere / "where.ipynb"), str(start / "out.ipynb"),
                    "--cwd", str(elsewhere), "-k", "python3"], cwd=start, env=env, capture_output=True, check=True)
    out = json.loads((start / "out.ipynb").read_text())["cells"][-1]["outputs"]
    assert "".join(out[0]["text"]).strip() == str(start / "my_runs")


def test_a_second_main_job_on_the_same_profile_is_refused_naming_the_first(tiny, capsys, error_line):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, str(Path(tiny_project.__file__)), str(tiny), *CLI], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = reproduce.profile_dir("t") / writer_lock.LOCK_NAME
    deadline = time.time() + 300
    while not (lock.exists() and f"process {first.pid} " in lock.read_text()):
        assert first.poll() is None and time.time() < deadline, "the first job ended before it held the folder"
        time.sleep(0.2)
    assert reproduce.main(CLI) == 1  # this process, while the first one writes
    line = error_line()
    assert f"is being written by process {first.pid} " in line and "tiny_project.py" in line, line
    assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
    assert reproduce.reproduce("t", device="cpu", executor_options={"fuse": False}) == []  # its work is whole


def test_a_notebook_run_into_a_profile_folder_in_use_is_refused(tiny, tmp_path, monkeypatch):
    assert reproduce.main(CLI) == 0
    folder = reproduce.profile_dir("t")
    writer_lock.claim(folder, "the main job")  # as a running main job holds it
    try:
        monkeypatch.setenv("LTH_OUTPUTS_DIR", str(folder))  # papermill by hand, into the job's folder
        with pytest.raises(papermill.PapermillExecutionError, match=f"being written by process {os.getpid()} "):
            papermill.execute_notebook(str(tiny / "01_t.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                       progress_bar=False)
    finally:
        writer_lock.release(folder)
