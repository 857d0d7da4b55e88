"""Executors: `local` (in process, or its rounds' trainings in worker processes), `processes` and submitit's (local) executor give identical rows; finished runs are
never submitted again; a preempted job resumes from the store; a failing run is reported with its config
and log while the other runs finish."""
import dataclasses
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import submitit
import torch

from conftest import synthetic_dataset
from lth_core.runs import executors, store
from lth_core import paths
from lth_core.runs.executors import ExecutorOptions, RunFailedError, execute_runs
from lth_core.data import Dataset
from lth_core.config import IMPConfig, TrainConfig

TINY = IMPConfig(network="lenet_300_100", rounds=1, train=TrainConfig(iterations=20, batch_size=50, eval_every=10),
                 val_size=200)
GRID = [dataclasses.replace(TINY, seed=s) for s in (0, 1)]
BAD = dataclasses.replace(TINY, val_size=1000)  # more than the synthetic 900 training rows: the split raises
# rows are identical only at equal torch thread counts (see ExecutorOptions.threads): one everywhere
SUBMITIT_LOCAL = ExecutorOptions(cluster="local", threads=1, timeout_min=10)
EVERY_EXECUTOR = [("local", {"threads": 1}), ("local", {"workers": 2, "threads": 1}),
                  ("processes", {"workers": 2, "threads": 1}), ("slurm", SUBMITIT_LOCAL)]


def synthetic_loader(name: str):
    """Module-level, so that spawned workers and submitit jobs can import it by name."""
    return synthetic_dataset(name)


@pytest.fixture(autouse=True)
def importable_tests(monkeypatch):
    # submitit's jobs are fresh interpreters that unpickle `synthetic_loader` by importing this module
    # (pytest imports this file as `test_executors` from its own folder, and conftest from tests/)
    here = Path(__file__).resolve().parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(here), str(paths.REPO_ROOT / "tests"),
                                                                   os.environ.get("PYTHONPATH")])))


def _rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True).drop(columns="wall_seconds")


def _refuse_to_start_runs(patch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was started again")

    for owner, name in ((executors, "_run_logged"), (executors.concurrent.futures, "ProcessPoolExecutor"),
                        (submitit, "AutoExecutor")):
        patch.setattr(owner, name, refuse)


@pytest.mark.parametrize("executor,options", EVERY_EXECUTOR)
def test_executor_finishes_the_grid_like_local_and_reports_a_failed_run(executor, options, tmp_path, monkeypatch):
    # one grid per executor exercises all of it, since each fresh worker or job process costs many seconds
    threads = torch.get_num_threads()
    with pytest.raises(RunFailedError) as caught:
        execute_runs([BAD, *GRID], "cpu", executor, options, progress=False, data_loader=synthetic_loader)
    assert torch.get_num_threads() == threads  # the caller's setting survives
    message = str(caught.value)
    assert "1 of 3 runs failed" in message and store.run_name(BAD) in message
    assert "'val_size': 1000" in message and "n_val must be in [0, n_train=900)" in message
    [(cfg, _, log)] = caught.value.failures
    assert cfg == BAD and f"log: {log}" in message and "n_val must be in" in Path(log).read_text()
    if executor == "slurm":
        assert log.endswith("_log.err")  # the job's own log, beside its submission
    assert all(store.is_done(c) for c in GRID) and not store.is_done(BAD)

    with pytest.MonkeyPatch.context() as patch:
        _refuse_to_start_runs(patch)
        rows = execute_runs(GRID + GRID[:1], "cpu", executor, options, progress=False)  # finished: only read
    assert [f["seed"].unique().tolist() for f in rows] == [[0], [1], [0]]  # in the order of the configs
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(tmp_path / "local"))
    local = execute_runs(GRID, "cpu", "local", {"threads": 1}, progress=False, data_loader=synthetic_loader)
    pd.testing.assert_frame_equal(_rows(rows[:2]), _rows(local))


def test_preempted_job_resumes_from_the_store(tmp_path, monkeypatch):
    cfg = dataclasses.replace(TINY, rounds=2, train=dataclasses.replace(TINY.train, iterations=100))
    ex = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    ex.update_parameters(timeout_min=10)
    job = ex.submit(executors.RunJob(synthetic_loader), dataclasses.asdict(cfg), "cpu")
    # job._interrupt() signals the local job's controller, which dies of it (submitit 1.5.4): signal the
    # task itself, as Slurm does
    children = Path(f"/proc/{job.job_id}/task/{job.job_id}/children")
    deadline = time.time() + 120
    while not (store.run_dir(cfg) / "round_000.pt").exists():
        assert not job.done() and time.time() < deadline, "job ended before round 0 was stored"
        time.sleep(0.05)
    round0 = (store.run_dir(cfg) / "round_000.pt").stat().st_mtime_ns
    if not children.exists():
        job.cancel()
        pytest.skip("needs Linux's /proc/<pid>/task/<pid>/children to find the job's task")
    os.kill(int(children.read_text().split()[0]), signal.SIGUSR2)  # submitit's preemption signal
    job.result()
    # with timeout_min <= 10 submitit calls any signal a timeout (one of its 3 allowed); both requeue
    assert "Caught signal SIGUSR2" in job.stderr() and "Requeued" in job.stdout()
    assert store.is_done(cfg) and not (store.run_dir(cfg) / "error.log").exists()
    assert (store.run_dir(cfg) / "round_000.pt").stat().st_mtime_ns == round0  # resumed, not redone
    resumed = store.finished_rows(cfg)
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(tmp_path / "straight"))
    straight = execute_runs([cfg], "cpu", "local", {"threads": 1}, progress=False, data_loader=synthetic_loader)
    pd.testing.assert_frame_equal(_rows([resumed]), _rows(straight))


def test_unknown_executor_or_option_is_refused():
    with pytest.raises(ValueError, match="unknown executor 'gpus'; valid executors: local, processes, slurm"):
        execute_runs(GRID, "cpu", "gpus")
    with pytest.raises(ValueError, match=r"unknown executor options \['nodes'\]; valid options: workers, partition"):
        execute_runs(GRID, "cpu", "slurm", {"nodes": 2})
    assert not paths.runs_dir().exists()


class Float64Data(Dataset):
    """Synthetic batches in float64: fused and solo then differ by rounding far below any tolerance."""

    def normalize(self, x_uint8):
        return super().normalize(x_uint8).double()


def float64_loader(name: str) -> Float64Data:
    d = synthetic_dataset(name)
    return Float64Data(name=d.name, train_x=d.train_x, train_y=d.train_y, test_x=d.test_x, test_y=d.test_y)


@pytest.fixture
def float64_models():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # models are built in the default dtype
    yield
    torch.set_default_dtype(before)


FUSED_GRID = [dataclasses.replace(TINY, seed=s, rounds=2, controls=("reinit", "random_prune")) for s in (0, 1)]


def _fused_and_solo(loader, tmp_path, monkeypatch):
    fused = execute_runs(FUSED_GRID, "cpu", "local", {"threads": 1, "fuse": True}, progress=False, data_loader=loader)
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(tmp_path / "solo"))
    solo = execute_runs(FUSED_GRID, "cpu", "local", {"threads": 1, "fuse": False}, progress=False, data_loader=loader)
    f, s = _rows(fused), _rows(solo)
    assert len(f) == len(s) == 2 * (3 + 2 * 2)  # per seed: 3 tickets, 2 controls in each pruned round
    structure = ["seed", "round", "kind", "trained_on", "es_iteration", "iterations",
                 *[c for c in s if c.startswith("pct_remaining")]]
    assert f[structure].equals(s[structure])
    return f, s


def test_local_fused_lockstep_equals_one_at_a_time_in_float64(float64_models, tmp_path, monkeypatch):
    # the whole executor path (lockstep rounds, controls' inits and masks, batch orders) is the same
    # computation fused and solo: in float64 they agree to rounding, accuracies exactly
    f, s = _fused_and_solo(float64_loader, tmp_path, monkeypatch)
    assert f["test_acc"].equals(s["test_acc"]) and f["val_acc"].equals(s["val_acc"])
    for column in ("test_loss", "val_loss"):
        assert ((f[column] - s[column]).abs() <= 1e-9 * s[column].abs()).all(), column


def test_global_pruning_finds_the_same_masks_fused_and_one_at_a_time(float64_models, tmp_path, monkeypatch):
    # the criterion is applied where every path finishes a round (IMPRunner.finish_round): fused and solo
    # trainings of a globally pruned run store the same masks at every level
    grid = [dataclasses.replace(TINY, seed=s, rounds=2, pruning="global") for s in (0, 1)]
    execute_runs(grid, "cpu", "local", {"threads": 1, "fuse": True}, progress=False, data_loader=float64_loader)
    fused = [store.level_masks(cfg) for cfg in grid]
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(tmp_path / "solo"))
    execute_runs(grid, "cpu", "local", {"threads": 1, "fuse": False}, progress=False, data_loader=float64_loader)
    solo = [store.level_masks(cfg) for cfg in grid]
    for f, s in zip(fused, solo):
        assert sorted(f) == sorted(s) == [1, 2]
        assert all(torch.equal(f[level][n], s[level][n]) for level in f for n in f[level])
        pooled = [int(f[2][n].sum()) for n in ("fc1.weight", "fc2.weight")]
        assert sum(pooled) == 265_200 - 53_040 - 42_432  # 20% of the pool, twice, under one threshold
    assert not torch.equal(fused[0][2]["fc1.weight"], fused[1][2]["fc1.weight"])  # each seed its own ticket


def test_local_fused_lockstep_agrees_with_one_at_a_time_in_float32(tmp_path, monkeypatch):
    # float32 promises the same structure and losses within rounding grown over three rounds of training
    # (seen up to 1e-3 relative on AVX-512 kernels); test accuracy on 200 barely-trained synthetic images
    # is not compared: a rounding difference moves predictions near the decision boundary (seen: 13 of 200)
    f, s = _fused_and_solo(synthetic_loader, tmp_path, monkeypatch)
    for column in ("test_loss", "val_loss"):
        assert ((f[column] - s[column]).abs() <= 1e-2 * s[column].abs()).all(), column
    assert ExecutorOptions().fuses("cuda") and not ExecutorOptions().fuses("cpu")


def test_processes_thread_count_does_not_depend_on_how_many_runs_are_left(monkeypatch):
    # a resumed run must train at the thread count it started with, or the store refuses it
    seen = []

    class Capture:
        def __init__(self, workers, ctx, initializer, initargs):
            seen.append(initargs[0])
            raise RuntimeError("captured")

    monkeypatch.setattr(executors.concurrent.futures, "ProcessPoolExecutor", Capture)
    monkeypatch.setattr(executors.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    for pending in (GRID, GRID[:1]):
        with pytest.raises(RuntimeError, match="captured"):
            executors._run_processes(pending, "cpu", ExecutorOptions(workers=4), None, None)
    assert seen == [2, 2]  # 8 cores over the 4 configured workers, whatever is pending


@pytest.mark.parametrize("device, gpus", [("auto", 1), ("cuda", 1), ("cpu", 0)])
def test_slurm_jobs_ask_for_a_gpu_unless_the_device_is_cpu_whatever_the_submitting_node_has(
        device, gpus, monkeypatch, tmp_path):
    asked = {}

    class Recorder:  # stands in for submitit.AutoExecutor: records what the jobs would ask Slurm for
        def __init__(self, folder, cluster):
            pass

        def update_parameters(self, **kw):
            asked.update(kw)

        def map_array(self, fn, *args):
            return []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a login node
    monkeypatch.setattr(submitit, "AutoExecutor", Recorder)
    assert executors.device_for_executor(device, "slurm") == device
    assert executors.execute_runs([], device, "slurm", {"gpus_per_job": 1}, progress=False) == []
    executors._run_slurm([], device, ExecutorOptions(gpus_per_job=1), None, None)
    assert asked["gpus_per_node"] == gpus
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        executors.device_for_executor("cuda", "local")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        executors.device_for_executor("tpu", "slurm")
