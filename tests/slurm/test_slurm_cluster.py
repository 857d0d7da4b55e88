"""The `slurm` executor against a real Slurm cluster: a job array gives the `local` executor's rows, a
requeued job resumes from the run store, a failing run is reported while the others finish, and the
main job with the smoke profile writes every figure and table.

Runs where the partition $LTH_SLURM_PARTITION (default `lth`, the one `tests/slurm/cluster.sh start`
creates) answers `sinfo`; skipped, with the reason, elsewhere. Jobs are submitted as this user and run
this repo's .venv python (submitit uses sys.executable), so tmp folders and the code must be visible
to the node: true for the one-node test cluster.
"""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import synthetic_dataset
from lth_core import paths
from lth_core.config import IMPConfig, TrainConfig
from lth_core.runs import store
from lth_core.runs.executors import ExecutorOptions, RunFailedError, execute_runs

PARTITION = os.environ.get("LTH_SLURM_PARTITION", "lth")


def _unreachable() -> str | None:
    """Why no job can be submitted to PARTITION, or None when its nodes take jobs."""
    start = "start the test cluster with `sudo tests/slurm/cluster.sh start`"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return f"no Slurm client on this machine: {start}"
    try:
        answer = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%t"], capture_output=True, text=True,
                                timeout=20)
    except subprocess.TimeoutExpired:
        return f"sinfo got no answer from slurmctld in 20 s: {start}"
    states = answer.stdout.split()
    if answer.returncode != 0 or not states:
        why = answer.stderr.strip().splitlines()[-1] if answer.stderr.strip() else "sinfo lists none"
        return f"no Slurm partition {PARTITION!r} answers ({why}): {start}"
    if not {"idle", "mix", "alloc"} & set(states):
        return f"partition {PARTITION!r} has no node taking jobs (states {states}): see `sinfo -R`"
    return None


UNREACHABLE = _unreachable()
pytestmark = pytest.mark.skipif(UNREACHABLE is not None, reason=UNREACHABLE or "")

TINY = IMPConfig(network="lenet_300_100", rounds=1, train=TrainConfig(iterations=20, batch_size=50, eval_every=10),
                 val_size=200)
GRID = [dataclasses.replace(TINY, seed=s) for s in (0, 1, 2)]
BAD = dataclasses.replace(TINY, val_size=1000)  # more than the synthetic 900 training rows: the split raises
# one CPU and one torch thread per job, the local runs' count: rows are identical only at equal counts
ON_CLUSTER = ExecutorOptions(partition=PARTITION, cpus_per_job=1, timeout_min=10)


def synthetic_loader(name: str):
    """Module-level, so that the jobs can unpickle it by importing this module."""
    return synthetic_dataset(name)


@pytest.fixture(autouse=True)
def importable_tests(monkeypatch):
    # sbatch hands the jobs this environment; they import this module and conftest from these folders
    here = Path(__file__).parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(here), str(here.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True).drop(columns="wall_seconds")


def _local_rows(configs, tmp_path, monkeypatch) -> pd.DataFrame:
    """The same runs with the `local` executor, in a separate outputs folder."""
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(tmp_path / "local"))
    return _rows(execute_runs(configs, "cpu", "local", {"threads": 1}, progress=False, data_loader=synthetic_loader))


def test_job_array_gives_local_rows_and_reports_the_failed_run(tmp_path, monkeypatch):
    with pytest.raises(RunFailedError) as caught:
        execute_runs([BAD, *GRID], "cpu", "slurm", ON_CLUSTER, progress=False, data_loader=synthetic_loader)
    message = str(caught.value)
    assert "1 of 4 runs failed" in message and store.run_name(BAD) in message and "'val_size': 1000" in message
    assert "n_val must be in [0, n_train=900)" in message  # the last lines of the run's traceback
    [(cfg, error, log)] = caught.value.failures
    assert cfg == BAD and "DataError: n_val must be in" in error and f"log: {log}" in message
    assert Path(log).parent == paths.outputs_dir() / "slurm" and "Traceback" in Path(log).read_text()
    assert all(store.is_done(c) for c in GRID) and not store.is_done(BAD)

    # one array of 4 tasks, one per run: each log is a Slurm array task's (<array id>_<task>), whose job
    # names itself by that id (a local job would use its process id)
    outs = sorted((paths.outputs_dir() / "slurm").glob("*_log.out"))
    tasks = [re.fullmatch(r"(\d+_\d+)_0_log\.out", p.name).group(1) for p in outs]
    assert len(tasks) == 4 and len({t.split("_")[0] for t in tasks}) == 1
    assert all(f"Starting with JobEnvironment(job_id={t}," in p.read_text() for t, p in zip(tasks, outs))

    on_cluster = _rows(execute_runs(GRID, "cpu", "slurm", ON_CLUSTER, progress=False))  # finished: read back
    pd.testing.assert_frame_equal(on_cluster, _local_rows(GRID, tmp_path, monkeypatch))


def _queued() -> set[str]:
    """Ids of this project's jobs Slurm lists (a finished one can linger a few seconds as COMPLETING)."""
    return set(subprocess.run(["squeue", "-h", "-p", PARTITION, "-n", "lth_core", "-o", "%i"],
                              capture_output=True, text=True, check=True).stdout.split())


def _job_id(earlier: set[str]) -> str:
    """The id of this test's one job: the one queued that was not among `earlier`, waiting until Slurm lists it."""
    deadline = time.time() + 60
    while time.time() < deadline:
        new = _queued() - earlier
        if new:
            [job] = new
            return job
        time.sleep(0.2)
    raise AssertionError("the job never appeared in squeue")


def _wait_until_gone(job: str) -> None:
    """Wait until Slurm no longer lists `job` (every attempt of it has ended)."""
    deadline = time.time() + 120
    while subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline, f"job {job} still listed after 2 minutes"
        time.sleep(0.2)


def _start_now(job: str) -> None:
    """Lift the 2 minutes Slurm makes a requeued job wait (its BeginTime) once the job is pending again."""
    deadline = time.time() + 60
    while time.time() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True).stdout
        if state.split() != ["PENDING", "BeginTime"]:  # still being killed, or already started again
            time.sleep(0.2)
            continue
        subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)
        return
    raise AssertionError(f"the requeued job never waited for its begin time: {state!r}")


def test_requeued_job_resumes_from_the_store_without_redoing_rounds(tmp_path, monkeypatch):
    # rounds long enough that the rest of the run cannot finish within KillWait (5 s): submitit lets SIGTERM
    # pass, so a job near its end could complete before Slurm's SIGKILL, and the requeued copy would find it done
    cfg = dataclasses.replace(TINY, rounds=5, train=dataclasses.replace(TINY.train, iterations=2000, eval_every=100))
    d = store.run_dir(cfg)
    errors = []

    def submit():
        try:
            execute_runs([cfg], "cpu", "slurm", ON_CLUSTER, progress=False, data_loader=synthetic_loader)
        except BaseException as e:  # re-raised in the test's thread below
            errors.append(e)

    earlier = _queued()  # the array test's tasks may still be listed while they complete
    waiter = threading.Thread(target=submit, daemon=True)
    waiter.start()
    job = _job_id(earlier)
    try:
        deadline = time.time() + 120
        while not (d / "round_001.pt").exists():
            assert waiter.is_alive() and time.time() < deadline, "the job ended before round 1 was stored"
            time.sleep(0.05)
        # as a preemption does: Slurm kills the running job and queues it again under the same id
        subprocess.run(["scontrol", "requeue", job], check=True)
        before = {p.name: p.stat().st_mtime_ns for p in d.glob("round_*.pt")}
        assert not store.is_done(cfg) and len(before) < cfg.rounds + 1  # the requeue came before the end
        _start_now(job)
        waiter.join(timeout=300)
    finally:  # a failure above must not leave the job and its waiting thread to disturb later tests
        if waiter.is_alive():
            subprocess.run(["scancel", job])
            waiter.join(timeout=60)
    assert not waiter.is_alive() and not errors, errors

    _wait_until_gone(job)  # submitit may see the result before the second attempt has finished its log
    log = next((paths.outputs_dir() / "slurm").glob(f"{job}_0_log.out")).read_text()
    assert log.count(f"Starting with JobEnvironment(job_id={job},") == 2  # the job ran twice
    assert store.is_done(cfg) and not (d / "error.log").exists()
    # rounds stored before the requeue were loaded, not computed again
    assert {name: (d / name).stat().st_mtime_ns for name in before} == before
    resumed = _rows([store.finished_rows(cfg)])
    pd.testing.assert_frame_equal(resumed, _local_rows([cfg], tmp_path, monkeypatch))


FIGURES = ["fig1_lenet_mnist", "fig1_conv2_cifar10", "fig2_lenet_mnist", "fig2_conv2_cifar10",
           "fig3_lenet_mnist", "fig3_conv2_cifar10", "fig4_top_shufflenet", "fig4_bottom_shufflenet_bn_pruned"]
TABLES = ["table1.csv", "table1.md", "speedup.csv"]


@pytest.mark.slow
def test_main_job_smoke_profile_on_the_cluster(shared_data, monkeypatch):
    # the CLI, as on a login node; LTH_OUTPUTS_DIR (tmp_outputs) keeps every output out of the repo
    monkeypatch.setenv("LTH_DATA_DIR", str(shared_data))
    job = subprocess.run([sys.executable, "-m", "lth_core.programs.reproduce", "--profile", "smoke", "--device", "cpu",
                          "--executor", "slurm", "-o", f"partition={PARTITION}", "-o", "cpus_per_job=1",
                          "-o", "timeout_min=30"], capture_output=True, text=True, timeout=3600)
    assert job.returncode == 0, job.stderr[-3000:]

    # found wherever under the outputs folder reproduce publishes them
    out = paths.outputs_dir()
    for name in [f"{stem}{suffix}" for stem in FIGURES for suffix in (".png", ".pdf")] + TABLES:
        assert [f.stat().st_size > 0 for f in out.rglob(name)] == [True], name
    notebooks = [nb for nb in out.rglob("*.ipynb") if "work" not in nb.relative_to(out).parts]
    assert len(notebooks) == 3
    for nb in notebooks:
        cells = json.loads(nb.read_text())["cells"]
        assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"], nb.name
    # every IMP run of the profile was one Slurm job: as many job logs as finished runs
    runs = {done.parent for done in out.rglob("done.json")}
    logs = list(out.rglob("*_log.out"))
    assert runs and len(logs) == len(runs) and all("Job completed successfully" in log.read_text() for log in logs)
