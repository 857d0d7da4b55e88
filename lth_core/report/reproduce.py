"""The main job: execute every notebook of a profile headless with papermill.

    python -m lth_core.report.reproduce --profile quick --device auto [--executor slurm -o partition=gpu]

Each notebook `notebooks/NN_*.ipynb` runs with the profile's parameters
(`notebooks/params/<profile>.yaml`) plus `device`, `executor` and
`executor_options` (where the IMP runs execute: see `executors.py`; results do
not depend on it, so changing it does not re-execute a finished notebook);
the executed copy goes to
`outputs/notebooks/`, the figures and tables to `outputs/figures/` and
`outputs/tables/`. A notebook that finished with the same source and
parameters is skipped (a marker beside its executed copy records that), and the
run store caches every finished IMP round, so a second call after an
interruption only computes what is missing. `--force` re-executes notebooks
(runs stay cached).
"""
import argparse
import hashlib
import json
import sys
import time

import papermill
import yaml
from tqdm.auto import tqdm

from lth_core import paths
from lth_core.runs.executors import ExecutorOptions, check_device, check_executor
from lth_core.report.params import declared_parameters, load_profile


def notebooks() -> list[str]:
    return [p.stem for p in sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))]


def _fingerprint(notebook: str, parameters: dict) -> str:
    src = (paths.NOTEBOOKS_DIR / f"{notebook}.ipynb").read_bytes()
    results_depend_on = {k: v for k, v in parameters.items() if k not in ("executor", "executor_options")}
    return hashlib.sha256(src + json.dumps(results_depend_on, sort_keys=True).encode()).hexdigest()


def _marker(notebook: str, profile: str):
    return paths.executed_notebooks_dir() / f".{notebook}.{profile}.done"


def reproduce(profile: str = "quick", device: str = "auto", only: list[str] | None = None,
              force: bool = False, executor: str = "local", executor_options: dict | None = None) -> list[str]:
    """Execute the profile's notebooks; returns the names executed (not skipped)."""
    check_device(device)
    check_executor(executor)
    ExecutorOptions.from_dict(executor_options or {})  # fail now, not inside the first notebook
    parameters = {**load_profile(profile), "device": device, "executor": executor,
                  "executor_options": dict(executor_options or {})}
    names = notebooks()
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown notebooks {unknown}; valid: {', '.join(names)}")
        names = [n for n in names if n in only]
    out_dir = paths.executed_notebooks_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for name in tqdm(names, desc=f"reproduce [{profile}]", unit="notebook"):
        # each notebook gets its own parameters: papermill warns about every other name
        declared = declared_parameters(name)
        mine = {k: v for k, v in parameters.items() if k in declared}
        marker, fp = _marker(name, profile), _fingerprint(name, mine)
        if not force and marker.exists() and marker.read_text() == fp:
            tqdm.write(f"{name}: already done with these parameters, skipped")
            continue
        t0 = time.perf_counter()
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
                                   parameters=mine, cwd=str(paths.NOTEBOOKS_DIR), kernel_name="python3",
                                   progress_bar=True)
        marker.write_text(fp)
        executed.append(name)
        tqdm.write(f"{name}: done in {time.perf_counter() - t0:.0f} s -> {out_dir / (name + '.ipynb')}")
    tqdm.write(f"figures: {paths.figures_dir()}\ntables: {paths.tables_dir()}")
    return executed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", help="smoke | quick | paper (notebooks/params/<profile>.yaml)")
    ap.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda | cuda:N")
    ap.add_argument("--notebooks", nargs="*", help="only these notebooks (names without .ipynb)")
    ap.add_argument("--force", action="store_true", help="re-execute notebooks already done (runs stay cached)")
    ap.add_argument("--executor", default="local", help="local | processes | slurm: where the IMP runs execute")
    ap.add_argument("-o", "--executor-option", action="append", default=[], metavar="KEY=VALUE",
                    help="executor setting, repeatable: workers, partition, gpus_per_job, cpus_per_job, "
                         "timeout_min, array_parallelism, mem_gb, threads")
    args = ap.parse_args(argv)
    try:
        options = {}
        for item in args.executor_option:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"executor option {item!r} must be KEY=VALUE, e.g. partition=gpu")
            options[key] = yaml.safe_load(value)
        reproduce(args.profile, args.device, args.notebooks, args.force, args.executor, options)
    except (ValueError, papermill.PapermillExecutionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
