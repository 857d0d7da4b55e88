"""The GPU check: what a lent GPU must show, in one command of at most 8 minutes (`make gpu-check`).

    python -m lth_core.programs.gpu_check [--minutes 8] [--data-pack .gpu/cifar10-jpg.npz]

In order, each within the time left, results written as they come to
`outputs/gpu_check.json` (so a run cut short still reports what it finished):
1. the CUDA-only tests (same seed same numbers on CUDA, fused equal to solo on CUDA);
2. the benchmark on the GPU: solo vs fused ms per model-step per network and group size, the
   fused step under each forward pass side by side (vmap, the stacked layers, channels-last, the
   stacked step compiled by torch.compile), the runner's pass replayed as a CUDA graph, and K solo
   steps each replayed as its own CUDA graph on K streams (`programs.benchmark.run_fusion_benchmark`);
   then `train()`'s step per network in float32, TF32 and bf16 side by side
   (`programs.benchmark.run_precision_benchmark`);
3. validation curves for the stopping rules of Conv-2 and ShuffleNet (`stopping_curves`): each
   network's dense ticket-finding training and its next two pruned levels (one seed, Table 1's
   settings on the full pool) trained without patience over a budget well past their early stops,
   with the patience table the stopping-rule study makes of them and the curves themselves;
4. Conv-2 in float32 against bf16 (`conv2_precision_agreement`): Figure 1's round 0 at Table 1's
   settings (full data, three seeds, tickets found on S1 and trained on S2), fused, in both
   precisions, early-stopping iterations and test accuracies side by side (the float32 arm is
   Figure 1's Conv-2 round 0);
5. where the convolutional networks' time goes, with what time is left: their solo and fused steps
   under three cuDNN algorithm choices (lth_core's deterministic default; autotuned among
   deterministic algorithms; autotuned among all, which shows what determinism costs), and the
   CUDA kernels that take the time of a fused step (`torch.profiler`);
6. the paper profile's projected hours per network and in total from this GPU's benchmark rows
   (`paper_projection`, as `reproduce --estimate` projects them).

The device machine has no copy of the datasets and takes at most 64 MiB of files along, so
`pack_jpeg_folder` packs CIFAR-10's JPEG files byte for byte into one .npz (57 MB), which
`unpack_jpeg_folder` writes back as the `CIFAR10-jpg` tree that `data.load_dataset` reads.
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lth_core import paths

SECTIONS = ("tests", "benchmark", "precision", "curves", "agreement", "kernels")
CUDA_TESTS = ["tests/core/test_training.py", "tests/runs/test_fused_cuda.py"]


def pack_jpeg_folder(root: Path, out: Path) -> Path:
    """Every file under `root` (e.g. .../CIFAR10-jpg) as one .npz: bytes, offsets, relative paths."""
    files = sorted(p for p in Path(root).rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no files under {root}")
    blobs = [p.read_bytes() for p in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    out.parent.mkdir(parents=True, exist_ok=True)
    names = "\n".join(str(p.relative_to(root)) for p in files).encode()  # bytes: a string array is 4x larger
    np.savez(out, blob=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
             paths=np.frombuffer(names, dtype=np.uint8), name=np.array(Path(root).name))
    return out


def unpack_jpeg_folder(pack: Path, dest: Path) -> Path:
    """Write the files of a `pack_jpeg_folder` pack under dest/<its folder name>; that folder."""
    z = np.load(pack)
    root = Path(dest) / str(z["name"])
    blob, offsets = z["blob"], z["offsets"]
    for i, rel in enumerate(z["paths"].tobytes().decode().split("\n")):
        path = root / str(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob[offsets[i]:offsets[i + 1]].tobytes())
    return root


class Report:
    """The JSON summary, rewritten after every section."""

    def __init__(self, path: Path):
        self.path, self.data = path, {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.data["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()
        self.data["torch"] = torch.__version__

    def section(self, key: str, compute) -> None:
        """Put `compute()` under `key` with its seconds; a failure is recorded and the check goes on."""
        t = time.time()
        try:
            value = compute()
        except Exception as e:  # one broken section must not hide the others' results
            import traceback
            value = {"error": "".join(traceback.format_exception(e))[-4000:]}
        self.put(key, value)
        self.put(f"{key}_seconds", round(time.time() - t, 1))

    def put(self, key: str, value) -> None:
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))
        print(f"[gpu-check] {key} written to {self.path}", flush=True)


def cuda_tests(timeout: float) -> dict:
    """The CUDA-only tests (`-k cuda`): pytest's summary line and the tail of its output."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider", *CUDA_TESTS]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=paths.REPO_ROOT)
        out, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = f"timed out after {timeout:.0f} s\n{e.stdout or ''}", None
    lines = [line for line in out.splitlines() if line.strip()]
    return {"returncode": rc, "summary": lines[-1] if lines else "", "tail": "\n".join(lines[-30:])}


# the networks in the order their GPU figures matter most (the largest share of the paper profile's hours first),
# so a benchmark cut short by its deadline loses LeNet's rows, not ShuffleNet's
BENCHMARK_ORDER = ("shufflenet", "conv2", "lenet_300_100")


def benchmark(report: "Report", repeats: int, deadline: float | None = None) -> list[dict]:
    """The fusion table, eager and graphed (each row saved as it comes); no row started past `deadline`."""
    from lth_core.programs.benchmark import run_fusion_benchmark
    return run_fusion_benchmark(BENCHMARK_ORDER, device="cuda", repeats=repeats, deadline=deadline,
                                on_row=lambda t: report.put("benchmark", t.to_dict("records"))).to_dict("records")


def precision(repeats: int, deadline: float | None = None) -> list[dict]:
    """`train()`'s step per network in each precision (float32, TF32, bf16); no network started past `deadline`."""
    from lth_core.programs.benchmark import run_precision_benchmark
    return run_precision_benchmark(BENCHMARK_ORDER, device="cuda", repeats=repeats,
                                   deadline=deadline).to_dict("records")


# cuDNN's algorithm choices the kernels section times: lth_core's (deterministic algorithms, fixed
# heuristic pick), autotuned among the deterministic ones, and autotuned among all (not reproducible:
# what determinism costs). Convolutions stay in full float32 in all three.
CUDNN_CHOICES = {"deterministic": (True, False), "deterministic, autotuned": (True, True),
                 "any algorithm, autotuned": (False, True)}


@contextlib.contextmanager
def cudnn_choice(name: str):
    """Train with cuDNN's `deterministic` and `benchmark` flags as CUDNN_CHOICES[name] says, instead of
    lth_core's (the autotuned pick may differ between runs, and with it the numbers)."""
    from lth_core import training
    deterministic, autotune = CUDNN_CHOICES[name]
    saved = training.select_deterministic_kernels

    def chosen():
        saved()  # full float32 as always; only the algorithm choice changes
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, autotune
    training.select_deterministic_kernels = chosen  # what select_numerics calls on CUDA
    try:
        yield
    finally:
        training.select_deterministic_kernels = saved
        saved()


def kernels(networks=("shufflenet", "conv2"), k: int = 8, steps: int = 5, deadline: float | None = None) -> dict:
    """Solo and fused (K=`k`) ms per model-step under each of CUDNN_CHOICES, and the ten CUDA
    kernels with the most time in `steps` eager fused steps of each network."""
    from lth_core.programs.benchmark import masked_model, run_fusion_benchmark
    from lth_core.runs.fused import FusedStack, fused_layers
    from lth_core.data_sources import IMAGE_SHAPE
    from lth_core.config import PAPER_TRAINING
    from lth_core.models import DATASET_OF
    out = {"timings": []}
    for choice in CUDNN_CHOICES:
        with cudnn_choice(choice):
            table = run_fusion_benchmark(networks, ks=[k], device="cuda", deadline=deadline)
        out["timings"] += [{"cudnn": choice, **r} for r in table.to_dict("records")]
    for network in networks:
        batch = PAPER_TRAINING[network].batch_size
        layers, channels_last = fused_layers(network, "cuda")  # the runner's forward pass
        stack = FusedStack([masked_model(network, torch.device("cuda"), seed=i) for i in range(k)], [1e-3] * k,
                           [0.0] * k, layers=layers, channels_last=channels_last)
        x = torch.randn(k, batch, *IMAGE_SHAPE[DATASET_OF[network]], device="cuda")
        y = torch.randint(0, 10, (k, batch), device="cuda")
        stack.step(x, y)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                stack.step(x, y)
            torch.cuda.synchronize()
        out[f"{network} K={k} top kernels"] = prof.key_averages().table(sort_by="cuda_time_total", row_limit=10)
    return out


def conv2_precision_agreement(deadline: float, root: Path, load_data=None, seeds=(0, 1, 2), patience: int = 30,
                              **overrides) -> dict:
    """Figure 1's Conv-2 round 0 at Table 1's settings (full data, tickets found on S1 and trained on S2,
    `seeds`), trained fused in float32 and in bf16 (`studies.agreement`, into run stores under `root`), each
    training stopped after `patience` evaluations without improvement (the same rule for both: its early
    stop comes at 2,300-3,000 iterations of the 30,000); per training both early-stopping iterations and test
    accuracies, and the summary. An arm not finished by `deadline` is left out (`overrides` shrink it all
    for a test)."""
    from lth_core.data import load_dataset
    from lth_core.runs.experiment import grid
    from lth_core.studies.agreement import COMPARISONS, compare, sentence, train_both
    from lth_core.studies.unseen import unseen_config
    configs = grid(unseen_config("conv2", rounds=0, patience=patience, **overrides), seeds=list(seeds))
    arms = COMPARISONS["precision"]
    rows = train_both(configs, load_data or (lambda name: load_dataset(name, device="cuda")), root,
                      progress=False, arms=arms, deadline=deadline)
    keep = ["seed", "trained_on", "es_iteration", "iterations", "test_acc", "wall_seconds"]
    if len(rows) < len(arms):
        return {"finished": {name: r[keep].to_dict("records") for name, r in rows.items()},
                "skipped": f"{', '.join(a for a in arms if a not in rows)}: not finished in the time left"}
    per_training, summary = compare(*rows.values(), names=tuple(arms))
    return {"trainings": per_training.to_dict("records"), "summary": summary.to_dict("records")[0],
            "sentence": sentence(summary)}


# network: (budget in iterations, rounds after the dense one). Conv-2 early-stops at 2,300-3,000 of its 30,000
# iterations on Figure 1's halves (an H100) and at 4,500 on the full pool (bf16, a CPU), so 10,000 show twice
# that; ShuffleNet's 9,000 are 20 epochs of the pool at batch 100, two of its learning-rate drops (its step
# schedule drops x0.1 every 10 epochs)
CURVE_BUDGETS = {"conv2": (10_000, 2), "shufflenet": (9_000, 2)}


def stopping_curves(deadline: float, device: str = "cuda", budgets: dict = CURVE_BUDGETS, load_data=None,
                    **overrides) -> dict:
    """{network: its patience table, rows and curves}: `budgets`' trainings of each network at Table 1's
    settings (`overrides` shrink them for a test), without patience, in lockstep until `deadline`; a network
    whose dense round did not finish by then has no table."""
    import pandas as pd
    from lth_core.data import load_dataset
    from lth_core.runs import lockstep
    from lth_core.studies.stopping import curve_configs, patience_table, stored
    out = {}
    for network, (budget, rounds) in budgets.items():
        [cfg] = curve_configs(network, budget, rounds, **overrides)
        failed = lockstep.run_lockstep([cfg], load_data or (lambda name: load_dataset(name, device=device)),
                                       deadline=deadline, progress=False)
        if failed:
            raise RuntimeError(f"{network}: {failed}")
        curves, rows = stored([cfg])
        if rows.empty:  # not one round stored by the deadline
            out[network] = {"skipped": "no round finished in the time left"}
            continue
        keep = ["round", "pct_remaining", "es_iteration", "budget", "iterations", "test_acc", "wall_seconds"]
        out[network] = {"patience": patience_table(curves, rows).to_dict("records"),
                        "rows": rows[keep].to_dict("records"),
                        "curves": curves[["round", "iteration", "val_loss", "val_acc", "lr", "test_acc"]]
                        .astype(float).where(pd.notna, None).to_dict("list")}
    return out


def paper_projection(benchmark_rows, out_dir: Path) -> dict:
    """The paper profile's projected hours per notebook and network, and in total, from this GPU's benchmark rows
    (`reproduce.estimate`: every training to its full budget; the measured stopping rules shorten it)."""
    import pandas as pd
    from lth_core.programs.reproduce import estimate
    rows = [r for r in benchmark_rows if isinstance(r, dict)] if isinstance(benchmark_rows, list) else []
    csv = out_dir / "gpu_check_benchmark.csv"
    pd.DataFrame(rows, columns=None if rows else ["network", "device", "K"]).to_csv(csv, index=False)
    table = estimate("paper", "cuda", benchmark_csv=csv)
    return {"rows": table.to_dict("records"),
            "hours_per_network": table.groupby("network")["hours"].sum(min_count=1).to_dict(),
            "total_hours": None if table["hours"].isna().any() else float(table["hours"].sum())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lth_core.programs.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole check's time limit")
    parser.add_argument("--data-pack", type=Path, default=paths.REPO_ROOT / ".gpu" / "cifar10-jpg.npz",
                        help="CIFAR-10 packed by pack_jpeg_folder (unpacked to a temporary data root)")
    parser.add_argument("--repeats", type=int, default=1, help="benchmark repeats (the fastest is kept)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON summary (default outputs/gpu_check.json)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    args = parser.parse_args(argv)
    start = time.time()
    deadline = start + 60 * args.minutes - 20  # leave time to write the summary
    # the benchmark (the fused step's passes, graphed, compiled, and solo graphs on streams, per network and K),
    # the precision timings (seconds per network), the cuDNN timings and the stopping-rule curves each get a
    # share of the time, so that none can push the whole check past its limit
    share = {"benchmark": 0.4, "precision": 0.45, "curves": 0.62, "agreement": 0.88}
    benchmark_deadline, precision_deadline, curves_deadline, agreement_deadline = (
        start + share[key] * 60 * args.minutes for key in ("benchmark", "precision", "curves", "agreement"))
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU; torch sees none")
    report = Report(args.out or paths.outputs_dir() / "gpu_check.json")
    if "tests" in args.only:
        report.section("tests", lambda: cuda_tests(timeout=120))
    if "benchmark" in args.only:
        report.section("benchmark", lambda: benchmark(report, args.repeats, benchmark_deadline))
    if "precision" in args.only:
        report.section("precision", lambda: precision(max(3, args.repeats), precision_deadline))
    if {"curves", "agreement"} & set(args.only) and args.data_pack.exists() and "LTH_DATA_DIR" not in os.environ:
        os.environ["LTH_DATA_DIR"] = str(unpack_jpeg_folder(args.data_pack, Path("/tmp/lth-gpu-data")).parent)
    if "curves" in args.only:
        report.section("stopping_curves", lambda: stopping_curves(curves_deadline))
    if "agreement" in args.only:
        report.section("conv2_precision_agreement", lambda: conv2_precision_agreement(
            agreement_deadline, report.path.parent / "gpu_check_agreement"))
    if "kernels" in args.only:  # diagnostics last: what is left of the time
        report.section("kernels", lambda: kernels(deadline=deadline))
    report.section("paper_projection", lambda: paper_projection(report.data.get("benchmark", []), report.path.parent))
    report.put("total_seconds", round(time.time() - start, 1))


if __name__ == "__main__":
    main()
