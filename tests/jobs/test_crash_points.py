"""Crash consistency of the main job, tested the way databases test it: the job is SIGKILLed at each
point where it writes a file (run store round files and rows, the manifest, the published table,
figure and executed notebook, the removal of a stale failure copy), one point after another; the
next run then finishes, and its outputs and run store must equal an uninterrupted run's, with
nothing recorded as done after any kill that is not.

Each job is a process of its own running the tiny project of `tiny_project.py`; `LTH_KILL_AT_WRITE`
(`crashpoints`) numbers its write points and kills it at one."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


import tiny_project
from lth_core.programs import reproduce
from lth_core import crashpoints, paths
from lth_core.runs import store

OPTIONS = {"fuse": False}


def _job(folder, kill_at: int = 0, log: str | None = None) -> int:
    """Run the main job on the tiny project as a process of its own; its exit code, or -signal when a
    signal ended it. (A fork of this process would inherit torch's thread pool and can hang in it.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", crashpoints.KILL_ENV: str(kill_at)}
    if log:
        env[crashpoints.LOG_ENV] = log
    job = subprocess.run([sys.executable, str(Path(tiny_project.__file__)), str(folder), "--profile", "t",
                          "--device", "cpu", "-o", "fuse=false"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert job.returncode in (0, -signal.SIGKILL), job.stderr[-3000:]
    return job.returncode


def _published(folder) -> dict:
    """The profile's tables and figures, byte for byte; the executed notebooks by name (they hold times)."""
    out = {str(p.relative_to(folder)): p.read_bytes() for sub in ("tables", "figures")
           for p in sorted((folder / sub).glob("*")) if p.is_file()}
    return out | {str(p.relative_to(folder)): None for p in sorted((folder / "notebooks").glob("*.ipynb"))}


def _store(cfgs) -> dict:
    """Each run's files and rows, less the wall-clock seconds."""
    out = {}
    for cfg in cfgs:
        d = store.run_dir(cfg)
        rows = store.finished_rows(cfg).drop(columns=["wall_seconds"])
        out[d.name] = (sorted(p.name for p in d.iterdir()), rows.to_csv(index=False))
    return out


def _nothing_called_done_that_is_not(folder, cfgs) -> None:
    manifest = reproduce.read_manifest("t")
    for name, record in manifest.get("notebooks", {}).items():
        if record["status"] == "done":
            files = record["published"]["files"]
            assert all(reproduce._sha256(folder / rel) == digest for rel, digest in files.items()), name
    for cfg in cfgs:
        if store.is_done(cfg):  # a finished run reads whole
            assert store.load_state(cfg).round == cfg.rounds + 1



def test_killed_at_every_write_the_job_resumes_to_the_uninterrupted_result(tiny, tmp_path):
    cfgs = tiny_project.configs_from_parameters({"seeds": [0]})
    folder = reproduce.profile_dir("t")
    log = tmp_path / "writes.log"
    assert _job(tiny, log=str(log)) == 0
    points = log.read_text().splitlines()
    wanted = ("round_000.pt", "rows.csv", "done.json", "manifest.json", "tables/tiny.csv", "figures/tiny.png",
              "notebooks/01_t.ipynb", "01_t.failed.ipynb")
    assert all(any(w in p for p in points) for w in wanted), points
    reference = _published(folder), _store(cfgs), reproduce.read_manifest("t")["notebooks"]["01_t"]["status"]
    assert reference[2] == "done"

    for k in range(1, len(points) + 1):
        shutil.rmtree(paths.outputs_dir())
        assert _job(tiny, kill_at=k) == -signal.SIGKILL, points[k - 1]
        _nothing_called_done_that_is_not(folder, cfgs)
        assert _job(tiny) == 0, points[k - 1]  # resumes
        _nothing_called_done_that_is_not(folder, cfgs)
        after = _published(folder), _store(cfgs), reproduce.read_manifest("t")["notebooks"]["01_t"]["status"]
        assert after == reference, points[k - 1]
        leftovers = [p.name for p in folder.rglob(".*.tmp")]
        assert not leftovers, (points[k - 1], leftovers)
