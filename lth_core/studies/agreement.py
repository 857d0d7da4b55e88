"""Fused against solo on real data: the same runs trained both ways, their rows compared.

    python -m lth_core.studies.agreement [--seeds 0 1 2] [--rounds 3] [--iterations 3000] [--device auto]

Inside:
- `train_both(configs, load_data, root)`: the runs trained fused (`lockstep`, fuse=True) and one
  training at a time (fuse=False), each mode into its own run store under `root`; their rows.
- `compare(fused, solo)`: one row per training (joined on seed, round, kind, split) with both
  early-stopping iterations and test accuracies, and a one-row summary: the share of trainings
  whose early-stopping iteration is equal, the mean test accuracy of each mode, their difference
  and the largest difference of one training, in points.
- `main()`: Figure 1's LeNet runs at Table 1's settings (real MNIST, the full pool less 5,000
  validation images, evaluation every 100 iterations) with `--iterations` and `--rounds` made
  affordable on a CPU; prints the summary and writes `outputs/tables/fusion_agreement.csv` (per
  training) and `fusion_agreement_summary.csv`.

A fused member equals its solo training exactly in float64 (tests/runs/test_fused.py); in
float32 the stacked kernels round differently, and training amplifies that, so a few early
stops may move by an evaluation or two. This measures how much that changes the results.
"""
import argparse
import contextlib
import os
from pathlib import Path

import pandas as pd

from lth_core import paths
from lth_core.data import load_dataset
from lth_core.imp import IMPConfig
from lth_core.report.tables import save_table
from lth_core.runs import lockstep, store
from lth_core.runs.executors import resolve_device
from lth_core.runs.experiment import grid
from lth_core.studies.unseen import unseen_config

KEYS = ["network", "seed", "round", "kind", "trained_on"]
MODES = {"fused": True, "solo": False}


@contextlib.contextmanager
def _run_store(folder: Path):
    """The run store is `folder` inside the block (runs_dir reads LTH_RUNS_DIR at every call)."""
    saved = os.environ.get("LTH_RUNS_DIR")
    os.environ["LTH_RUNS_DIR"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LTH_RUNS_DIR", None)
        else:
            os.environ["LTH_RUNS_DIR"] = saved


def train_both(configs: list[IMPConfig], load_data, root: Path, progress: bool = True) -> dict[str, pd.DataFrame]:
    """{mode: rows of every run}, each mode trained into `root/<mode>` (cached there like any run)."""
    out = {}
    for mode, fuse in MODES.items():
        with _run_store(root / mode):
            failed = lockstep.run_lockstep(configs, load_data, fuse=fuse, progress=progress)
            if failed:
                raise RuntimeError(f"{mode}: runs failed: {failed}")
            out[mode] = pd.concat([store.run_cached(c) for c in configs], ignore_index=True)
    return out


def compare(fused: pd.DataFrame, solo: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per training, summary) as in the module docstring; every training must be in both."""
    cols = KEYS + ["es_iteration", "test_acc"]
    both = fused[cols].merge(solo[cols], on=KEYS, suffixes=("_fused", "_solo"), how="outer", indicator=True)
    if (both["_merge"] != "both").any():
        raise ValueError(f"fused and solo rows hold different trainings: {both[both['_merge'] != 'both'][KEYS]}")
    both = both.drop(columns="_merge")
    both["es_equal"] = both["es_iteration_fused"] == both["es_iteration_solo"]
    both["test_acc_difference"] = both["test_acc_fused"] - both["test_acc_solo"]
    summary = pd.DataFrame([{
        "trainings": len(both), "es_equal_share": both["es_equal"].mean(),
        "mean_test_acc_fused": both["test_acc_fused"].mean(), "mean_test_acc_solo": both["test_acc_solo"].mean(),
        "mean_difference_points": both["test_acc_difference"].mean(),
        "largest_difference_points": both["test_acc_difference"].abs().max()}])
    return both, summary


def sentence(summary: pd.DataFrame) -> str:
    s = summary.iloc[0]
    return (f"{int(s.trainings)} trainings: early stopping at the same iteration in {100 * s.es_equal_share:.0f}%; "
            f"mean test accuracy {s.mean_test_acc_fused:.2f}% fused against {s.mean_test_acc_solo:.2f}% solo "
            f"({s.mean_difference_points:+.2f} points; the largest difference of one training "
            f"{s.largest_difference_points:.2f} points).")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lth_core.studies.agreement", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3, help="pruning rounds after the dense one")
    ap.add_argument("--iterations", type=int, default=3000, help="training budget (Table 1: 30,000)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    configs = grid(unseen_config("lenet_300_100", rounds=args.rounds, iterations=args.iterations), seeds=args.seeds)
    rows = train_both(configs, lambda name: load_dataset(name, device=device), paths.outputs_dir() / "agreement")
    per_training, summary = compare(rows["fused"], rows["solo"])
    print(per_training.to_string(index=False))
    print(sentence(summary))
    print(f"written to {save_table(per_training, 'fusion_agreement')[0]} and "
          f"{save_table(summary, 'fusion_agreement_summary')[0]}")


if __name__ == "__main__":
    main()
