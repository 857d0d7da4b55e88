"""The main job: execute every notebook of a profile headless with papermill.

    python -m lth_core.programs.reproduce --profile quick --device auto [--executor slurm -o partition=gpu]
    python -m lth_core.programs.reproduce --profile paper --device cuda --estimate

`--estimate` trains nothing: per notebook and network it prints the runs, trainings
and iterations the profile asks for and the hours they project to from the figures
of `make benchmark` on that device (`outputs/tables/benchmark.csv`; see `estimate`).

Each notebook `notebooks/NN_*.ipynb` runs with the profile's parameters
(`notebooks/params/<profile>.yaml`) plus `device`, `executor` and
`executor_options` (where the IMP runs execute: see `executors.py`; results do
not depend on it, so changing it does not re-execute a finished notebook). On a
multi-core CPU, `local` trains each round's trainings in one worker process per
core unless `workers` or `fuse` is given (`executors.with_cpu_workers`).
The runs of every notebook to execute are trained first, in one `execute_runs` call,
so that they all share the workers or the GPU (one notebook's runs alone leave cores
idle at the end of each round); the notebooks then read them from the run store.
While it runs, one bar shows the trainings of all its notebooks' runs, done and
left, with the notebook, run and round in progress (`runs/progress.py`).
Everything is checked before the first notebook starts: the profile's values
against every notebook's parameter ranges, the device (cuda needs a GPU that
torch sees), the executor and its options.

Each profile has its own folder, so no profile's outputs replace another's:

    outputs/runs/                  the run store, shared: runs are named by a hash of their config
    outputs/<profile>/index.html           the results page: claims, figures, manifest, executed notebooks
    outputs/<profile>/manifest.json        parameters, git commit, time; per notebook its status,
                                           parameters, fingerprint and published files (sha256)
    outputs/<profile>/notebooks/NN.ipynb   the last successful execution (NN.failed.ipynb: a failed one)
    outputs/<profile>/{tables,figures}/    what the successful executions saved
    outputs/<profile>/work/NN/             an execution in progress: its kernel's LTH_OUTPUTS_DIR
                                           (tables, figures, Slurm logs)

A notebook executes into its work folder. Only a success moves the executed copy,
tables and figures into place, replacing the notebook's previous ones and removing
those it no longer writes; a failure leaves the published outputs as they were and
keeps the failed copy as `NN.failed.ipynb`. A table several notebooks write
(claims.csv, each replacing its own rows) starts from the published one. A notebook is skipped ("already done")
only when the manifest records a success with the same notebook source and
parameters and every file it published is on disk unchanged; when another commit of the code made
those files, the skip message says so (the analysis in lth_core may have changed). The run store caches
every finished IMP round, so a second call after an interruption only computes what
is missing. `--force` re-executes notebooks (runs stay cached).
"""
import argparse
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import papermill
import yaml
from tqdm.auto import tqdm

import pandas as pd

from lth_core import crashpoints, paths
from lth_core.config import paper_config
from lth_core.data import TRAIN_SIZE
from lth_core.imp import iterations_per_run, make_splits, round_trainings, trainings_per_run
from lth_core.programs.benchmark import ms_per_model_step
from lth_core.params.notebook import ParameterError, check_parameters, declared_parameters
from lth_core.params.profiles import check_profile_name, load_profile, profile_names, profile_notebooks
from lth_core.report.paper import has_paper_value, paper_value
from lth_core.report.results_page import write_results_page
from lth_core.runs.executors import (ExecutorOptions, RunFailedError, device_for_executor, execute_runs,
                                    resolve_device, with_cpu_workers)
from lth_core.programs import job_folder
from lth_core.programs.job_errors import Interrupted, JobError, describe, log_traceback
from lth_core.runs import store
from lth_core.runs.progress import StoreProgress
from lth_core.studies.catalog import STUDIES, notebook_parameters

# a validation pass over a batch costs about a third of a training step (forward only)
EVAL_STEP_FRACTION = 1 / 3
# a profile projected to more device time than this is refused before training (--max-hours overrides)
YEAR_HOURS = 365.25 * 24
# measured benchmark tables shipped with the code: their fastest figure per network bounds a device without one
SHIPPED_BENCHMARKS = paths.REPO_ROOT / "benchmarks"

MANIFEST = "manifest.json"
PUBLISHED = ("tables", "figures")  # what a notebook saves beside its executed copy
PUBLISHED_UNDER = (*PUBLISHED, "notebooks")  # every published file lies directly in one of these
# a record's status: its last execution succeeded with the current parameters (done) or with others (outdated)
SUCCEEDED = ("done", "outdated")


def notebooks() -> list[str]:
    return [p.stem for p in sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))]


def profile_dir(profile: str) -> Path:
    """outputs/<profile>: the main job's outputs for one profile (the run store stays shared)."""
    check_profile_name(profile)  # a name, so that the folder lies inside outputs/
    return paths.outputs_dir() / profile


def _inside(folder: Path, rel) -> bool:
    """Whether `rel` names a file the job publishes: `<tables|figures|notebooks>/<file>`, inside `folder`
    also once resolved (no `..`, no absolute name, no link out)."""
    parts = Path(rel).parts if isinstance(rel, str) else ()
    if len(parts) != 2 or parts[0] not in PUBLISHED_UNDER or ".." in parts or Path(rel).is_absolute():
        return False
    return (folder / rel).resolve().is_relative_to((folder / parts[0]).resolve())


def _check_record(folder: Path, name, record) -> None:
    """ValueError naming what in notebook `name`'s manifest record is not what the job writes (it reads the
    record's file names to check, seed and delete files: each must lie inside `folder`)."""
    if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
        raise ValueError(f"the record named {name!r} does not name a notebook")
    if not isinstance(record, dict) or not isinstance(record.get("status", ""), str):
        raise ValueError(f"the record of {name} is a {type(record).__name__}, not an object with a status")
    if "published" not in record:
        return
    published = record["published"]
    if not isinstance(published, dict) or not isinstance(published.get("files"), dict) \
            or not isinstance(published.get("fingerprint"), str):
        raise ValueError(f"the record of {name} has no `published` object with `files` and `fingerprint`")
    for rel, digest in published["files"].items():
        if not _inside(folder, rel):
            raise ValueError(f"the record of {name} lists the published file {rel!r}, which is not a file in "
                             f"{folder}/{{{','.join(PUBLISHED_UNDER)}}}")
        if not isinstance(digest, str):
            raise ValueError(f"the record of {name} gives {rel!r} the digest {digest!r}, not a sha256")


def read_manifest(profile: str) -> dict:
    path = profile_dir(profile) / MANIFEST
    if not path.exists():
        return {"notebooks": {}}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("notebooks", {}), dict):
            raise ValueError("it is not an object with a 'notebooks' object")
        for name, record in manifest.get("notebooks", {}).items():
            _check_record(path.parent, name, record)
    except (ValueError, UnicodeDecodeError) as e:
        raise JobError(f"{path} is damaged ({e}): delete it and run again (every notebook of the profile is "
                       "then executed again; stored runs are reused)") from e
    return manifest


def _write_manifest(folder: Path, manifest: dict) -> None:
    store.atomic_text(json.dumps(manifest, indent=2) + "\n", folder / MANIFEST)  # a reader never sees half of it


def _move_into_place(src: Path, dst: Path) -> None:
    crashpoints.reached(f"move into {dst}")
    os.replace(src, dst)


def _remove(path: Path) -> None:
    crashpoints.reached(f"remove {path}")
    path.unlink(missing_ok=True)


def _remove_published(path: Path, digest: str) -> None:
    """Remove `path` when it is the file the manifest records as published (sha256 `digest`); a file changed
    since is not one the job can show it wrote, so it stays."""
    if path.is_file() and _sha256(path) != digest:
        tqdm.write(f"kept {path}: it is not the file the manifest records as published (changed since)")
        return
    _remove(path)


def _fingerprint(notebook: str, parameters: dict, device: str) -> str:
    src = (paths.NOTEBOOKS_DIR / f"{notebook}.ipynb").read_bytes()
    results_depend_on = {k: v for k, v in parameters.items() if k not in ("executor", "executor_options")}
    # resolved: "auto" gives cpu results here and cuda results there (Slurm: as the jobs are asked, auto or cuda)
    results_depend_on["device"] = device
    return hashlib.sha256(src + json.dumps(results_depend_on, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_done(folder: Path, record: dict | None, fingerprint: str) -> bool:
    """Whether a notebook's manifest record shows that its last execution succeeded, with this
    fingerprint, and its published files (executed notebook, tables, figures) are all on disk, unchanged.
    A failed, interrupted or unfinished execution since is not done, whatever it left published."""
    published = (record or {}).get("published")
    if (record or {}).get("status") not in SUCCEEDED or not published or published["fingerprint"] != fingerprint:
        return False
    return all((folder / rel).is_file() and _sha256(folder / rel) == digest
               for rel, digest in published["files"].items())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    """HEAD's commit, '-dirty' when tracked files differ from it; None outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _code_changed_note(record: dict, manifest: dict) -> str:
    """A warning when a skipped notebook's outputs were made by another commit of the code: the fingerprint
    covers the notebook and its parameters, not lth_core, whose analysis (claim rules, tables) may have changed."""
    made_by, now = record.get("published", {}).get("git_commit"), manifest.get("git_commit")
    if not made_by or not now or made_by == now:
        return ""
    return (f"; note: its outputs were made with commit {made_by[:12]}, the code is now at {now[:12]}: "
            "`--force` re-executes it with the current analysis (stored runs are reused)")


@contextlib.contextmanager
def _kernel_environment(outputs: Path, runs: Path):
    """Papermill's kernel inherits this environment: its outputs go to `outputs`, its runs to `runs`."""
    saved = {k: os.environ.get(k) for k in ("LTH_OUTPUTS_DIR", "LTH_RUNS_DIR")}
    os.environ.update(LTH_OUTPUTS_DIR=str(outputs), LTH_RUNS_DIR=str(runs))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _execute(name: str, parameters: dict, folder: Path, runs: Path, previous: dict,
             others: dict[str, set[str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Execute notebook `name` in its work folder; on success publish it into `folder` and return
    ({published file: sha256}, {shared file it started from: that file's sha256}). `previous`: its last
    publication's files (those it no longer writes go); `others`: the other notebooks' published files
    with the digests their records give, which it may add to (claims.csv) but never removes."""
    work, executed_dir = folder / "work" / name, folder / "notebooks"
    for sub in PUBLISHED:  # an earlier failed attempt's partial outputs must not be published with this one
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir(parents=True)
    # a table that several notebooks write (claims.csv: each replaces its own rows) must start from the
    # published one; copies the notebook leaves untouched (same mtime) are not its outputs
    seeded, carried = {}, {}
    for rel, digests in others.items():
        if rel.split("/")[0] not in PUBLISHED or not (folder / rel).is_file():
            continue
        digest = _sha256(folder / rel)
        if digest not in digests:  # damaged or edited: its rows cannot be trusted, so none are carried over
            tqdm.write(f"{folder / rel} is not the file any notebook published (damaged or edited): {name} "
                       "writes it afresh, and the notebooks that wrote it before run again to add their rows")
            continue
        shutil.copy2(folder / rel, work / rel)
        seeded[rel], carried[rel] = (work / rel).stat().st_mtime_ns, digest
    executed_dir.mkdir(parents=True, exist_ok=True)
    in_progress = work / f"{name}.ipynb"
    try:
        with _kernel_environment(work, runs):
            papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / f"{name}.ipynb"), str(in_progress),
                                       parameters=parameters, cwd=str(paths.NOTEBOOKS_DIR),
                                       kernel_name="python3", progress_bar=False)
    except BaseException:  # an interrupted execution is kept the same way as a failed one
        if in_progress.exists():
            _move_into_place(in_progress, executed_dir / f"{name}.failed.ipynb")
        raise
    files = {}
    for sub in PUBLISHED:
        (folder / sub).mkdir(exist_ok=True)
        for f in sorted((work / sub).glob("*")):
            rel = f"{sub}/{f.name}"
            if seeded.get(rel) == f.stat().st_mtime_ns:
                f.unlink()
                continue
            _move_into_place(f, folder / rel)
            files[rel] = _sha256(folder / rel)
    _move_into_place(in_progress, executed_dir / f"{name}.ipynb")
    _remove(executed_dir / f"{name}.failed.ipynb")  # superseded by this success
    files[f"notebooks/{name}.ipynb"] = _sha256(executed_dir / f"{name}.ipynb")
    for rel in set(previous) - set(files) - set(others):  # made with the previous parameters: gone
        _remove_published(folder / rel, previous[rel])
    return files, carried


def _settle(records: dict, fingerprints: dict) -> None:
    """A success is 'done' while its parameters are the profile's current ones, 'outdated' after."""
    for name, record in records.items():
        if record["status"] in ("done", "outdated") and name in fingerprints:
            current = record["published"]["fingerprint"] == fingerprints[name]
            record["status"] = "done" if current else "outdated"


def reproduce(profile: str = "quick", device: str = "auto", only: list[str] | None = None,
              force: bool = False, executor: str = "local", executor_options: dict | None = None,
              max_hours: float = YEAR_HOURS) -> list[str]:
    """Execute the profile's notebooks into outputs/<profile>/; returns the names executed (not skipped).
    Refuses, before any training, a profile whose runs project to more than `max_hours` of device time."""
    resolved = device_for_executor(device, executor)  # Slurm: resolved in the jobs, on their nodes
    parameters = {**load_profile(profile), "device": device, "executor": executor,
                  "executor_options": with_cpu_workers(executor, resolved, executor_options)}
    folder, runs = profile_dir(profile), paths.runs_dir()
    if folder.resolve() == runs.resolve():  # resolved: `outputs/x/../runs` or a link is the same folder
        raise ValueError(f"profile {profile!r} would write into the run store {runs}; rename the profile")
    names = notebooks()
    only = only or profile_notebooks(profile)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown notebooks {unknown}; valid: {', '.join(names)}")
    # every notebook's values checked before the first one starts; all fingerprints, so that the
    # manifest can mark outputs made with other parameters as outdated
    mine, fingerprints = {}, {}
    for name in names:
        declared = declared_parameters(name)  # papermill warns about every name the notebook lacks
        mine[name] = {k: v for k, v in parameters.items() if k in declared}
        check_parameters(name, {**{k: spec[2] for k, spec in declared.items()}, **mine[name]})
        fingerprints[name] = _fingerprint(name, mine[name], resolved)
    todo = [n for n in names if not only or n in only]
    # the bar counts the runs of notebooks with a study module (a notebook added without one is not counted)
    runs_of = {name: STUDIES[name].configs_from_parameters(notebook_parameters(name, mine[name]))
               for name in todo if name in STUDIES}
    _check_cost(profile, runs_of, resolved, parameters["executor_options"], max_hours)

    job_folder.prepare(folder, runs)  # one writer; outputs and run store writable before any training
    manifest = read_manifest(profile)
    records = manifest.setdefault("notebooks", {})
    for record in records.values():  # this process is the only writer: a "running" one's job was killed
        if record.get("status") == "running":
            record.update(status="interrupted", error="the job was stopped while this notebook was executing")
    manifest.update(profile=profile, parameters=parameters, device=resolved, git_commit=_git_commit(),
                    updated=_now())
    executed = []
    progress = StoreProgress([c for configs in runs_of.values() for c in configs],
                             desc=f"reproduce [{profile}]").start()
    runs_failed, blocked = None, []
    try:
        # every run of the notebooks to execute, trained in one pass before the first notebook starts, so
        # that they share the workers (a notebook's runs alone leave cores idle at the end of each round);
        # the notebooks then read them from the run store
        training = [name for name in runs_of if force or not is_done(folder, records.get(name), fingerprints[name])]
        pending = [c for name in training for c in runs_of[name]]
        if pending:
            progress.set_label("training the runs of every notebook")
            try:
                execute_runs(pending, resolved, executor, parameters["executor_options"], progress=False)
            except RunFailedError as e:  # the notebooks whose runs all finished still execute
                tqdm.write(str(e))
                runs_failed = e
            except Interrupted as e:  # their notebooks were about to execute: none of them is done now
                e.where = f"training the runs of {', '.join(training)}"
                for name in training:
                    records[name] = {**records.get(name, {}), "status": "interrupted",
                                     "error": f"interrupted by {e.signal_name} while its runs were training"}
                raise
        failed_runs = {store.run_name(cfg) for cfg, _, _ in runs_failed.failures} if runs_failed else set()
        for i, name in enumerate(todo):
            progress.set_label(f"notebook {i + 1}/{len(todo)} {name}")
            record = records.get(name, {})
            if not force and is_done(folder, record, fingerprints[name]):
                tqdm.write(f"{name}: already done with these parameters, skipped "
                           f"({folder / 'notebooks' / (name + '.ipynb')})" + _code_changed_note(record, manifest))
                continue
            mine_failed = sorted({store.run_name(c) for c in runs_of.get(name, [])} & failed_runs)
            if mine_failed:  # its figures would be made of the runs that did finish: not executed
                records[name] = {**record, "status": "not executed",
                                 "error": f"{len(mine_failed)} of its runs failed: {', '.join(mine_failed)}"}
                blocked.append(name)
                tqdm.write(f"{name}: not executed, {len(mine_failed)} of its runs failed")
                continue
            attempt = {"parameters": mine[name], "fingerprint": fingerprints[name],
                       "git_commit": manifest["git_commit"], "started": _now()}
            # the last success stays described (its files stay on disk) until this attempt replaces it
            records[name] = {"status": "running", "attempt": attempt,
                             **({"published": record["published"]} if "published" in record else {})}
            _write_manifest(folder, manifest)
            others = {}
            for other, r in records.items():
                for rel, digest in r.get("published", {}).get("files", {}).items() if other != name else ():
                    others.setdefault(rel, set()).add(digest)
            t0 = time.perf_counter()
            try:
                files, carried = _execute(name, mine[name], folder, runs,
                                          record.get("published", {}).get("files", {}), others)
            except BaseException as err:
                attempt["seconds"] = round(time.perf_counter() - t0, 1)
                error = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
                if isinstance(err, Interrupted):
                    err.where = f"notebook {name} was executing"
                    error = f"interrupted by {err.signal_name} while it was executing"
                records[name].update(status="failed" if isinstance(err, Exception) else "interrupted",
                                     failed_notebook=f"notebooks/{name}.failed.ipynb", error=error)
                if isinstance(err, papermill.PapermillExecutionError):
                    raise JobError(f"notebook {name} failed: {_one_line(error)}; its execution is kept in "
                                   f"{folder / records[name]['failed_notebook']}: fix the cause and run again "
                                   "(finished runs and the other notebooks' outputs are kept)") from err
                raise
            attempt["seconds"] = round(time.perf_counter() - t0, 1)
            records[name] = {"status": "done", "attempt": attempt, "published": {**attempt, "files": files}}
            for other in records.values():  # a shared file, rewritten with their rows kept: their record follows
                shared = other.get("published", {}).get("files", {})
                # only where it started from their file: rows of a file it did not carry over are not in it
                shared.update({rel: files[rel] for rel in shared.keys() & files.keys() if shared[rel] == carried.get(rel)})
            executed.append(name)
            tqdm.write(f"{name}: done in {attempt['seconds']:.0f} s -> {folder / 'notebooks' / (name + '.ipynb')}")
    finally:
        progress.close()
        _settle(records, fingerprints)
        manifest["updated"] = _now()
        _write_manifest(folder, manifest)
        # also after a failure: the page then says which notebook failed and why
        try:
            tqdm.write(f"results page: {write_results_page(folder / MANIFEST)}")
        except Exception as e:  # the page is a view of the manifest: failing it must not hide the job's own end
            tqdm.write(f"results page not written ({type(e).__name__}: {_one_line(e)}); the manifest {folder / MANIFEST} "
                       "records every notebook's state")
    tqdm.write(f"outputs of profile {profile!r}: {folder} (manifest: {folder / MANIFEST})")
    if runs_failed:
        first = runs_failed.failures[0][1].strip().splitlines()[0]
        raise JobError(f"{runs_failed.summary}; first error: {first}; "
                       + (f"not executed: {', '.join(blocked)}" if blocked else "every notebook executed")
                       + "; fix the cause and run again")
    return executed


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _projection(runs_of: dict[str, list], device: str, executor_options: dict | None,
                bench: pd.DataFrame) -> pd.DataFrame:
    """Per notebook and network of `runs_of` ({notebook: its run configs}): runs, trainings, iterations and
    projected hours on `device` from the figures in `bench` (see `estimate`)."""
    # estimating for a GPU needs none here: only its benchmark figures
    dev = "cuda" if device.startswith("cuda") else resolve_device(device).type
    options = ExecutorOptions.from_dict(with_cpu_workers("local", dev, executor_options))
    fuse = options.fuses(dev)
    workers = options.workers if dev == "cpu" and not fuse and (options.workers or 1) > 1 else 1
    # counting draws the run's splits, which depend on split_seed, not seed: once per config less its seed
    counted = functools.cache(iterations_per_run)

    def per_run(c):
        return counted(dataclasses.replace(c, seed=0))
    rows = []
    for name, configs in runs_of.items():
        for network in dict.fromkeys(c.network for c in configs):
            mine = [c for c in configs if c.network == network]
            trainings = sum(trainings_per_run(c) for c in mine)
            iterations = sum(per_run(c) for c in mine)
            evals = sum(per_run(c) / c.train.eval_every * (c.val_size / c.train.batch_size)
                        * EVAL_STEP_FRACTION for c in mine)
            group = sum(len(round_trainings(c, min(1, c.rounds))) for c in mine)
            ms, k = ms_per_model_step(bench, network, dev, group, fuse)
            rows.append({"notebook": name, "network": network, "runs": len(mine), "trainings": trainings,
                         "iterations": iterations, "device": dev, "K": k, "ms/model-step": ms, "workers": workers,
                         "hours": (iterations + evals) * ms / 3.6e6 / workers})
    return pd.DataFrame(rows, columns=["notebook", "network", "runs", "trainings", "iterations", "device", "K",
                                       "ms/model-step", "workers", "hours"])


def _read_benchmark(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["network", "device", "K"])


def _check_cost(profile: str, runs_of: dict[str, list], device: str, executor_options: dict | None,
                max_hours: float) -> None:
    """Refuse runs that project to more than `max_hours` of device time: values no one means (a budget of
    10^12 iterations, thousands of seeds) would otherwise start training. Every training is priced at its
    full budget with this device's benchmark (outputs/tables/benchmark.csv), else with the fastest figure any
    shipped benchmark has for the network, which no device is known to beat; a network no benchmark
    measured is not bounded."""
    table = _projection(runs_of, device, executor_options, _read_benchmark(paths.tables_dir() / "benchmark.csv"))
    shipped = [_read_benchmark(p) for p in sorted(SHIPPED_BENCHMARKS.glob("*.csv"))]
    figures = pd.concat(shipped) if shipped else pd.DataFrame(columns=["network"])
    fastest = figures.groupby("network")[[c for c in figures if c.endswith("ms/model-step")]].min().min(axis=1)
    ms = table["ms/model-step"].fillna(table["network"].map(fastest))
    hours = (table["hours"].fillna(table["iterations"] * ms / 3.6e6 / table["workers"])).fillna(0)
    if hours.sum() <= max_hours:
        return
    worst = table.loc[hours.idxmax()]
    raise ParameterError(
        f"profile {profile!r} projects to {hours.sum():,.0f} hours of {worst['device']} time, more than "
        f"{max_hours:,.0f} (a year: --max-hours): {worst['notebook']}'s {worst['network']} runs alone are "
        f"{worst['trainings']:,} trainings of {worst['iterations']:,} iterations in all; lower the budgets or "
        f"seeds in {paths.PARAMS_DIR / (profile + '.yaml')}, or pass --max-hours to run it anyway")


def _expected_iterations(cfg) -> tuple[int, str]:
    """(iterations of a whole IMP run, what they assume): each training stops `patience` evaluations after its
    expected early stop, or at its budget when that comes first. Expected: the paper's full-pool early stop for
    the network (Section 4: LeNet 9,000, Conv-2 4,500 iterations) as epochs of Table 1's pool, that many epochs
    of each training's own rows (the paper's 10% Conv-2 tickets stop near 500, a tenth of 4,500; Conv-2 here:
    4,100-4,600 on the pool, 2,300-3,000 on Figure 1's halves). Without a patience, or without the paper's
    number for the network, every training runs its budget."""
    full = f"faster.es_full.{cfg.network}"
    if cfg.train.patience is None or not has_paper_value(full):
        why = "no patience" if cfg.train.patience is None else f"no expected early stop for {cfg.network}"
        return iterations_per_run(cfg), f"full budget ({why})"
    table1 = paper_config(cfg.network)
    epochs = paper_value(full) * table1.train.batch_size / (TRAIN_SIZE[cfg.dataset] - table1.val_size)
    sizes = {name: len(rows) for name, rows in make_splits(cfg, TRAIN_SIZE[cfg.dataset]).items()}
    total = 0
    for r in range(cfg.rounds + 1):
        for _, split in round_trainings(cfg, r):
            stop = round(epochs * sizes[split] / cfg.train.batch_size) + cfg.train.patience * cfg.train.eval_every
            total += min(cfg.train.budget_for(sizes[split]).iterations, stop)
    return total, f"early stop at {epochs:.0f} epochs (paper) + patience"


def estimate(profile: str, device: str = "auto", executor_options: dict | None = None,
             benchmark_csv: Path | None = None, only: list[str] | None = None) -> pd.DataFrame:
    """Per notebook (all, or those in `only`) and network of `profile`: runs, trainings, iterations (every
    training to its full budget), expected iterations (`_expected_iterations`: what the stopping rule is
    expected to leave of them, and `expected from`, what that assumes) and projected hours, with no training.

    Hours = (expected iterations + their validation passes as step-equivalents) x ms per model-step from
    `benchmark_csv` (default outputs/tables/benchmark.csv, written by `make benchmark`) for this
    device: fused at the group size lockstep would use (the runs' trainings of one round), or solo
    when the runs are not fused (ExecutorOptions.fuse; by default on a CPU). One device; on a CPU with
    `workers` (the `local` executor's default on a multi-core CPU, as `make reproduce` runs it) the
    hours are divided among the workers: the runs do not wait for each other's rounds there, and
    one worker at one thread measured about as fast per LeNet step as one process at two threads.
    The benchmark's step is float32's: a run in bf16 (`auto` on a CPU with BF16 hardware) costs about half.
    """
    path = Path(benchmark_csv or paths.tables_dir() / "benchmark.csv")
    values = load_profile(profile)
    only = only or profile_notebooks(profile)
    unknown = sorted(set(only or ()) - set(notebooks()))
    if unknown:
        raise ValueError(f"unknown notebooks {unknown}; valid: {', '.join(notebooks())}")
    runs_of = {name: STUDIES[name].configs_from_parameters(notebook_parameters(name, values))
               for name in only or notebooks()}
    table = _projection(runs_of, device, executor_options, _read_benchmark(path))
    expected = {(name, c): _expected_iterations(c) for name, configs in runs_of.items() for c in configs}
    for i, row in table.iterrows():
        mine = [v for (name, c), v in expected.items() if name == row["notebook"] and c.network == row["network"]]
        table.loc[i, "expected iterations"] = sum(n for n, _ in mine)
        table.loc[i, "expected from"] = "; ".join(dict.fromkeys(why for _, why in mine))
    table["expected iterations"] = table["expected iterations"].astype(int)
    # validation passes scale with the iterations trained, so the hours scale with them too
    table["hours"] *= table["expected iterations"] / table["iterations"]
    table.attrs["benchmark"] = path  # named where hours are n/a
    return table


def _estimate_total(table: pd.DataFrame) -> str:
    """`--estimate`'s last line: the totals, with the hours of every network that has benchmark figures and,
    for those that have none, why not."""
    total = f"total: {table['trainings'].sum():,} trainings, {table['iterations'].sum():,} iterations, "
    known = table["hours"].notna()
    if known.all():
        return total + f"{table['hours'].sum():,.1f} hours"
    missing = sorted(table.loc[~known, "network"].unique())
    hours = f"{table.loc[known, 'hours'].sum():,.1f} hours for the rest and " if known.any() else ""
    return (total + f"{hours}no hours for {', '.join(missing)}: {table.attrs.get('benchmark', 'the benchmark')} has "
            f"no figures for {'them' if len(missing) > 1 else 'it'} on {table['device'].iloc[0]} (run `make benchmark` "
            "on that device, or pass --benchmark CSV)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", help=f"{' | '.join(profile_names())} (notebooks/params/<profile>.yaml)")
    ap.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda | cuda:N")
    ap.add_argument("--notebooks", nargs="*", help="only these notebooks (names without .ipynb)")
    ap.add_argument("--force", action="store_true", help="re-execute notebooks already done (runs stay cached)")
    ap.add_argument("--estimate", action="store_true",
                    help="train nothing: print the profile's trainings, iterations and projected hours")
    ap.add_argument("--benchmark", type=Path, default=None, metavar="CSV",
                    help="with --estimate: the benchmark table to project from (default "
                         "outputs/tables/benchmark.csv; e.g. benchmarks/h100-2026-11-27.csv, measured on an H100)")
    ap.add_argument("--max-hours", type=float, default=YEAR_HOURS, metavar="H",
                    help="refuse, before training, a profile projected to more device hours than this "
                         "(default: a year)")
    ap.add_argument("--executor", default="local", help="local | processes | slurm: where the IMP runs execute")
    ap.add_argument("-o", "--executor-option", action="append", default=[], metavar="KEY=VALUE",
                    help="executor setting, repeatable: workers, partition, gpus_per_job, cpus_per_job, "
                         "timeout_min, array_parallelism, mem_gb, threads")
    args = ap.parse_args(argv)
    before = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        options = {}
        for item in args.executor_option:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"executor option {item!r} must be KEY=VALUE, e.g. partition=gpu")
            try:
                options[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ValueError(f"executor option {item!r}: {value!r} is not a value (a number, true/false, "
                                 "a name)") from None
        if args.estimate:
            table = estimate(args.profile, args.device, options, args.benchmark, args.notebooks)
            print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
            print(_estimate_total(table))
            return 0
        reproduce(args.profile, args.device, args.notebooks, args.force, args.executor, options, args.max_hours)
    except (Exception, KeyboardInterrupt) as e:  # every way the job ends short of success gets its one line
        log = log_traceback(e, job_log(args.profile))
        print(f"error: {describe(e)}" + (f" (traceback: {log})" if log else ""), file=sys.stderr)
        if isinstance(e, Interrupted):
            return 128 + signal.Signals[e.signal_name]  # the shell's status for a job ended by that signal
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:  # a caller in this process (a test, a notebook) gets its own handlers back
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return 0


def _interrupt(signum, frame) -> None:
    """SIGTERM (Slurm at a time limit, `scancel`) and SIGINT end the job as an exception does: its records say
    interrupted, its manifest and results page are written, and it prints its error line. Once: a second
    signal has its default effect."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
    raise Interrupted(signal.Signals(signum).name)


def job_log(profile: str) -> Path:
    """Where a failed job leaves its traceback: outputs/<profile>/reproduce.log when that folder exists and
    takes files (a job stopped before it started writes nothing there), else a file in the temporary folder."""
    try:
        folder = profile_dir(profile)
    except ParameterError:  # a name that is a path: nothing is written where it points
        folder = None
    if folder is not None and folder.is_dir() and os.access(folder, os.W_OK):
        return folder / "reproduce.log"
    return Path(tempfile.gettempdir()) / f"lth-reproduce-{os.getuid()}.log"


if __name__ == "__main__":
    sys.exit(main())
