"""Executors: where an experiment's runs execute — in this process, in worker processes, or as Slurm jobs.

`execute_runs(configs, device, executor, options)` brings every config's run to the
finished state in the run store and returns each config's rows, in the order of
`configs`, read back from the store exactly as when running locally, so callers
(and figures) never learn where a run ran:
- `local`: in this process; on a GPU all runs in lockstep (`lockstep.py`): round by
  round, the trainings of every run's round trained together as stacked models
  (`fused.py`); on a CPU, where a fused step measured no faster than its K solo steps,
  one run after another (`fuse=True`/`False` forces either), or with `workers=N`, all
  runs in lockstep with each round's trainings spread over N worker processes
  (`parallel.py`: two at one thread each train about twice as fast as one at two);
- `processes`: a pool of spawned worker processes, one per visible GPU (each pinned
  to its own GPU) or `workers` CPU processes sharing the cores;
- `slurm`: one submitit job per run (an array). A preempted or timed-out job is
  requeued and resumes at its first unfinished round, since the job just calls the
  idempotent round driver (`lockstep.run_lockstep`). `ExecutorOptions(cluster="local")` sends the same
  jobs to submitit's LocalExecutor (subprocesses on this machine; used by the tests).
Finished runs are read, never resubmitted. A failing run does not stop the others;
at the end `RunFailedError` lists each failed run with its config, error and log.
`ExecutorOptions` holds the settings (workers, partition, GPUs/CPUs per job, torch
threads per run: CPU rows are identical across executors only at equal thread counts).

A custom `data_loader` (dataset name -> `Dataset`) must be a module-level function
for `processes` and `slurm`: workers and jobs import it by name.
"""
import concurrent.futures
import dataclasses
import multiprocessing
import os
import re
import time
import traceback
from dataclasses import dataclass

import pandas as pd
import submitit
import torch
from tqdm.auto import tqdm

from lth_core import paths
from lth_core.runs import lockstep, store
from lth_core.runs.parallel import TrainingPool, exit_with_parent
from lth_core.data import load_dataset
from lth_core.config import IMPConfig

EXECUTORS = ("local", "processes", "slurm")
DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> str:
    """The device name, if it is one of DEVICES or cuda:N; else a clear error."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)} (or cuda:N)")
    return device


def check_executor(executor: str) -> str:
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    return executor


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when torch sees a GPU, else cpu; an explicit cuda without a GPU is an error."""
    if check_device(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return torch.device(device)


def device_for_executor(device: str, executor: str) -> str:
    """The device as the submitting process passes it on: resolved here, except for Slurm, whose jobs
    resolve it on their own nodes ("auto" or "cuda" from a login node without a GPU asks for GPU jobs)."""
    if executor == "slurm":  # (an unknown executor is reported where it is checked, with its valid names)
        return check_device(device)
    return str(resolve_device(device))


CLUSTERS = ("slurm", "local")  # what submitit.AutoExecutor is asked for


@dataclass(frozen=True)
class ExecutorOptions:
    # processes: None = one per visible GPU, else 2 CPU processes. local on a CPU: None or 1 trains in this
    # process; N > 1 trains each round's trainings (all runs in lockstep) in N worker processes
    workers: int | None = None
    partition: str | None = None  # slurm: None = the cluster's default partition
    gpus_per_job: int = 1  # slurm: ignored (0) for device="cpu"
    cpus_per_job: int = 4  # slurm
    timeout_min: int = 240  # slurm: a job past it is requeued and resumes from the store
    array_parallelism: int = 32  # slurm: jobs of the array running at once
    mem_gb: int | None = None  # slurm: None = the partition's default
    cluster: str = "slurm"  # one of CLUSTERS; "local": submitit's LocalExecutor (every job at once; for tests)
    # torch threads per run. On CPU, convolutions round differently with other thread counts, and
    # pruning amplifies that, so only equal counts give identical rows across executors. None: local
    # keeps this process's setting, processes share the cores out, slurm uses cpus_per_job.
    threads: int | None = None
    # train each round's trainings (and, with `local`, every run's) together as stacked models; False:
    # one at a time with training.train, the reference path (results agree to float rounding); None:
    # fuse on a GPU only, since on a CPU a fused step costs as much as its K solo steps (docs/results.md, Speed)
    fuse: bool | None = None

    def __post_init__(self):
        def whole(name, low, optional=False):
            v = getattr(self, name)
            if not ((optional and v is None) or (isinstance(v, int) and not isinstance(v, bool) and v >= low)):
                raise ValueError(f"executor option {name}={v!r}: must be {'None or ' if optional else ''}"
                                 f"a whole number >= {low}")
        whole("workers", 1, optional=True)
        whole("threads", 1, optional=True)
        whole("mem_gb", 1, optional=True)
        whole("gpus_per_job", 0)
        for name in ("cpus_per_job", "timeout_min", "array_parallelism"):
            whole(name, 1)
        if self.fuse is not None and not isinstance(self.fuse, bool):  # the string "false" would fuse
            raise ValueError(f"executor option fuse={self.fuse!r}: must be true, false or None (fuse on a GPU only)")
        if self.partition is not None and not isinstance(self.partition, str):
            raise ValueError(f"executor option partition={self.partition!r}: must be a partition name or None")
        if self.cluster not in CLUSTERS:
            raise ValueError(f"executor option cluster={self.cluster!r}: must be one of {', '.join(CLUSTERS)}")

    def fuses(self, device: str) -> bool:
        return self.fuse if self.fuse is not None else torch.device(device).type == "cuda"

    @classmethod
    def from_dict(cls, d: dict) -> "ExecutorOptions":
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown executor options {unknown}; valid options: {', '.join(valid)}")
        return cls(**d)


def with_cpu_workers(executor: str, device: str, options: dict | None) -> dict:
    """`options`, with `workers` = the cores for `local` on a multi-core CPU when neither `workers` nor `fuse`
    is set: each round's trainings then use every core (see `parallel.py`)."""
    options = dict(options or {})
    if (executor == "local" and torch.device(device).type == "cpu" and _cores() > 1
            and "workers" not in options and "fuse" not in options):
        options["workers"] = _cores()
    return options


class RunFailedError(RuntimeError):
    """Some runs failed; `failures` holds (config, error, log path) per failed run. The message counts the
    runs that finished, failed and never started, and lists each distinct error once with its runs;
    `summary` is its first line."""

    def __init__(self, failures: list[tuple[IMPConfig, str, str]], total: int, finished: int | None = None):
        self.failures = failures
        failed = len(failures)
        finished = total - failed if finished is None else finished
        never = total - failed - finished
        counts = [f"{failed} of {total} runs failed", *([f"{never} never started"] if never else []),
                  f"{finished} finished and {'is' if finished == 1 else 'are'} in the run store" if finished
                  else "none finished"]
        self.summary = ("; ".join(counts) + " (running again retries only the unfinished runs)")
        by_error: dict[str, list] = {}
        for cfg, error, log in failures:
            by_error.setdefault(error, []).append((cfg, log))
        lines = [self.summary + ":"]
        for error, runs in by_error.items():
            if len(runs) == 1:
                [(cfg, log)] = runs
                lines += [f"- {store.run_name(cfg)} {store.non_default_values(cfg)}",
                          *(f"    {line}" for line in error.splitlines()), f"    log: {log}"]
            else:  # one cause (a missing dataset fails every run): said once
                names = ", ".join(store.run_name(cfg) for cfg, _ in runs)
                lines += [f"- {len(runs)} runs failed with the same error ({names}):",
                          *(f"    {line}" for line in error.splitlines()), f"    logs: {runs[0][1]} and alike"]
        super().__init__("\n".join(lines))


def _error_log(cfg: IMPConfig):
    return store.run_dir(cfg) / "error.log"


def _tail(text: str, n: int = 4) -> str:
    """A traceback's exception, from the line naming its type to the end (a message may span lines);
    else its last `n` lines."""
    lines = [line for line in text.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", line)]
    return "\n".join(lines[starts[-1]:] if starts else lines[-n:])


def _dataset_loader(device: str, loader, datasets: dict):
    """dataset name -> Dataset on `device`, each loaded once into `datasets`."""
    def load(name: str):
        if name not in datasets:
            datasets[name] = (loader or load_dataset)(name).to(device)
        return datasets[name]
    return load


def _log_failure(cfg: IMPConfig, error: BaseException) -> None:
    store.atomic_text("".join(traceback.format_exception(error)), _error_log(cfg))


def _run_logged(cfg: IMPConfig, device: str, loader, datasets: dict, progress: bool, fuse: bool = True) -> None:
    """Compute one run (its rounds' trainings fused when `fuse`), waiting while another process holds it,
    leaving a failure's traceback in <run_dir>/error.log for the report."""
    try:
        failed = lockstep.run_lockstep([cfg], _dataset_loader(device, loader, datasets), fuse=fuse,
                                       progress=progress, wait=True)
        if failed:
            raise failed[store.run_name(cfg)]
    except Exception as e:
        _log_failure(cfg, e)
        raise
    _error_log(cfg).unlink(missing_ok=True)


def _failure(cfg: IMPConfig, exc: BaseException, log) -> tuple[IMPConfig, str, str]:
    # the run's own traceback names the real error; a killed process leaves only the executor's message
    written = _error_log(cfg)
    error = _tail(written.read_text() if written.exists() else f"{type(exc).__name__}: {exc}")
    return cfg, error, str(log) if os.path.exists(log) else f"none (the process died before writing {log})"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _run_local(pending, device, options, loader, bar) -> list:
    datasets, failures, threads = {}, [], torch.get_num_threads()
    torch.set_num_threads(options.threads or threads)
    parallel = torch.device(device).type == "cpu" and (options.workers or 1) > 1 and not options.fuses(device)
    pool = (TrainingPool(options.workers, options.threads or max(1, _cores() // options.workers), loader)
            if parallel else None)
    try:
        if options.fuses(device) or parallel:  # every run's round at once; a run's failure does not stop the others
            for cfg in pending:
                _error_log(cfg).unlink(missing_ok=True)
            failed = lockstep.run_lockstep(pending, _dataset_loader(device, loader, datasets),
                                           progress=not bar.disable, fuse=not parallel, pool=pool)
            for cfg in pending:
                if store.run_name(cfg) in failed:
                    _log_failure(cfg, failed[store.run_name(cfg)])
                    failures.append(_failure(cfg, failed[store.run_name(cfg)], _error_log(cfg)))
                elif not store.is_done(cfg):  # another process held it: wait for it (or finish what it left)
                    try:
                        _run_logged(cfg, device, loader, datasets, progress=not bar.disable, fuse=False)
                    except Exception as e:
                        failures.append(_failure(cfg, e, _error_log(cfg)))
                bar.update()
        else:
            for cfg in pending:
                try:  # like a job's, a run's failure does not stop the others
                    _run_logged(cfg, device, loader, datasets, progress=not bar.disable, fuse=False)
                except Exception as e:
                    failures.append(_failure(cfg, e, _error_log(cfg)))
                bar.update()
    finally:
        torch.set_num_threads(threads)  # this process's setting is the caller's
        if pool is not None:
            pool.close()
    return failures


# ---- processes: a spawned pool; each worker keeps its datasets loaded between runs ----
_WORKER_DATASETS: dict = {}


def _init_worker(threads: int, gpu_ids) -> None:
    if gpu_ids is not None:  # before this process initialises CUDA, so "cuda" (cuda:0) is its own GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_ids.get())
    torch.set_num_threads(threads)
    exit_with_parent()


def _work(cfg_dict: dict, device: str, loader, fuse: bool) -> None:
    _run_logged(store.config_from_json(cfg_dict), device, loader, _WORKER_DATASETS, progress=False, fuse=fuse)


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]


def _run_processes(pending, device, options, loader, bar) -> list:
    pin = device == "cuda"  # an explicit cuda:N is honoured as asked, unpinned
    gpus = _visible_gpus() if pin else []
    workers = min(len(pending), options.workers or len(gpus) or 2)
    ctx = multiprocessing.get_context("spawn")  # fork would copy CUDA state and torch's thread pools
    gpu_ids = ctx.Queue() if pin else None
    if pin:
        for i in range(workers):  # more workers than GPUs share them round-robin
            gpu_ids.put(gpus[i % len(gpus)])
    # torch's default of one thread per core in every worker oversubscribes the cores many times over
    cores = _cores()
    # from the configured pool size, not the pending runs: a rerun with fewer runs left must train with
    # the same thread count, or the store refuses to resume under different numerics
    threads = options.threads or max(1, cores // (options.workers or len(gpus) or 2))
    failures = []
    pool = concurrent.futures.ProcessPoolExecutor(workers, ctx, _init_worker, (threads, gpu_ids))
    try:
        futures = {pool.submit(_work, dataclasses.asdict(cfg), device, loader, options.fuses(device)): cfg for cfg in pending}
        for fut in concurrent.futures.as_completed(futures):
            if fut.exception() is not None:
                cfg = futures[fut]
                failures.append(_failure(cfg, fut.exception(), _error_log(cfg)))
            bar.update()
    finally:  # when interrupted, return now: queued runs are dropped, running ones finish in the background
        pool.shutdown(wait=False, cancel_futures=True)
    return failures


# ---- slurm: one submitit job per run ----
class RunJob:
    """A job's callable: one run through the run store; requeued (resuming from the store) on preemption."""

    def __init__(self, loader=None, threads: int = 1, fuse: bool | None = None):
        self.loader, self.threads, self.fuse = loader, threads, fuse

    def __call__(self, cfg_dict: dict, device: str) -> None:
        torch.set_num_threads(self.threads)
        device = str(resolve_device(device))  # "auto" means this job's GPU, if it has one
        _run_logged(store.config_from_json(cfg_dict), device, self.loader, {}, progress=False,
                    fuse=ExecutorOptions(fuse=self.fuse).fuses(device))

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        # nothing to save: the store already holds every finished round
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _run_slurm(pending, device, options, loader, bar, poll_s: float = 1.0) -> list:
    ex = submitit.AutoExecutor(folder=paths.outputs_dir() / "slurm", cluster=options.cluster)
    # slurm_* settings are checked by name and ignored by the other clusters
    ex.update_parameters(name="lth_core", timeout_min=options.timeout_min, cpus_per_task=options.cpus_per_job,
                         gpus_per_node=0 if device == "cpu" else options.gpus_per_job, mem_gb=options.mem_gb,
                         slurm_partition=options.partition, slurm_array_parallelism=options.array_parallelism)
    for cfg in pending:  # a job killed before Python could report leaves no log; never show an old one
        _error_log(cfg).unlink(missing_ok=True)
    job = RunJob(loader, options.threads or options.cpus_per_job, options.fuse)
    jobs = ex.map_array(job, [dataclasses.asdict(cfg) for cfg in pending], [device] * len(pending))
    running = dict(zip(jobs, pending))
    try:
        while running:
            for job in [j for j in running if j.done()]:
                running.pop(job)
                bar.update()
            if running:
                time.sleep(poll_s)
    except BaseException:  # interrupted: cancel the jobs, so a rerun does not run them twice
        for job in running:
            job.cancel(check=False)
        raise
    errors = [(cfg, job.exception(), job.paths.stderr) for job, cfg in zip(jobs, pending)]
    return [_failure(*e) for e in errors if e[1] is not None]


def execute_runs(configs: list[IMPConfig], device: str, executor: str = "local",
                 options: ExecutorOptions | dict | None = None, progress: bool = True,
                 data_loader=None) -> list[pd.DataFrame]:
    """Finish every run of `configs` with `executor`; each config's rows, in the order of `configs`.

    `device` is resolved where runs execute: "auto" in a Slurm job means that job's GPU.
    Raises `RunFailedError` after every run ended when any run failed.
    """
    check_executor(executor)
    if not isinstance(options, ExecutorOptions):
        options = ExecutorOptions.from_dict(options or {})
    device = device_for_executor(str(device), executor)
    unique = {store.run_name(cfg): cfg for cfg in configs}  # a run listed twice must not run twice at once
    pending = [cfg for cfg in unique.values() if not store.is_done(cfg)]
    bar = tqdm(total=len(unique), initial=len(unique) - len(pending), desc=f"runs [{executor}]",
               unit="run", disable=not progress)
    run = {"local": _run_local, "processes": _run_processes, "slurm": _run_slurm}[executor]
    failures = run(pending, device, options, data_loader, bar) if pending else []
    bar.close()
    if failures:
        raise RunFailedError(failures, len(unique), sum(store.is_done(cfg) for cfg in unique.values()))
    return [store.finished_rows(cfg) for cfg in configs]
