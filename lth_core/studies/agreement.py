"""Two ways of training the same runs on real data, their rows compared: fused against solo, or
float32 against bf16 (`lth_core/programs/agreement.py` runs it on Figure 1's runs).

Inside:
- `ARMS`: the ways a run can be trained here, each (fuse, precision): `fused` (`lockstep`, fuse=True,
  float32), `solo` (one training at a time, float32), `bf16` (fused, in bf16 autocast).
- `COMPARISONS`: what `--compare` sets side by side, {the name each side is shown as: arm}:
  `fusion` (fused against solo, both float32) and `precision` (float32 against bf16, both fused).
- `train_both(configs, load_data, root, arms)`: the runs trained in each arm, each arm into its own
  run store under `root` (named after the arm, so the float32 fused runs serve both comparisons);
  their rows, by the names the comparison shows.
- `compare(a, b, names)`: one row per training (joined on seed, round, kind, split) with both
  early-stopping iterations and test accuracies, and a one-row summary: the share of trainings
  whose early-stopping iteration is equal, the mean test accuracy of each side, their difference
  and the largest difference of one training, in points.
- `adoption(summary)`: the verdict on the faster precision from one summary row, by the rule the
  issues set: adopted only where mean test accuracy moves by at most `ADOPT_MAX_POINTS` and early
  stops are equal at least as often as fused-vs-solo training leaves them (`FUSION_ES_EQUAL_SHARE`).
- `compare_replayed(curves, rows, patience)`: `compare` of float32 against bf16 runs trained without
  patience or with at least `patience` (`stopping.curve_configs`), each training's curve replayed at `patience`: the early stops
  and test accuracies trainings with that patience would have had, from one set of trainings for
  every patience (`lth_core/programs/curves.py`).

A fused member equals its solo training exactly in float64 (tests/runs/test_fused.py); in
float32 the stacked kernels round differently, and training amplifies that, so a few early
stops may move by an evaluation or two. This measures how much that changes the results, and
how much more bf16's rounding changes them: the yardstick a faster precision is judged by.
"""
import contextlib
import dataclasses
import os
from pathlib import Path

import pandas as pd

from lth_core.config import IMPConfig
from lth_core.runs import lockstep, store
from lth_core.studies.stopping import replay_trainings

KEYS = ["network", "seed", "round", "kind", "trained_on"]
# fused against solo in float32: 25 of Figure 1's 33 LeNet trainings early-stopped at the same iteration
# (README, "Fused training"); a faster precision may move early stops no more often than that
FUSION_ES_EQUAL_SHARE = 25 / 33
ADOPT_MAX_POINTS = 0.5  # how far a faster precision may move mean test accuracy (issue #28)
ARMS = {"fused": (True, "float32"), "solo": (False, "float32"), "bf16": (True, "bf16")}  # name: (fuse, precision)
COMPARISONS = {"fusion": {"fused": "fused", "solo": "solo"}, "precision": {"float32": "fused", "bf16": "bf16"}}


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


def _in_arm(cfg: IMPConfig, arm: str) -> IMPConfig:
    """`cfg` in the arm's precision (another precision is another run, named by its own hash)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=ARMS[arm][1]))


def train_both(configs: list[IMPConfig], load_data, root: Path, progress: bool = True,
               arms: dict[str, str] = COMPARISONS["fusion"], deadline: float | None = None) -> dict[str, pd.DataFrame]:
    """{name: rows of every run} for each `arms` entry (name: arm), each arm trained into `root/<arm>`
    (cached there like any run). Past `deadline` (a `time.time()` value) no further round starts: an arm
    whose runs did not finish by then, and the arms after it, are left out (their finished rounds stay)."""
    out = {}
    for name, arm in arms.items():
        fuse = ARMS[arm][0]
        runs = [_in_arm(c, arm) for c in configs]
        with _run_store(root / arm):
            failed = lockstep.run_lockstep(runs, load_data, fuse=fuse, progress=progress, deadline=deadline)
            if failed:
                raise RuntimeError(f"{name}: runs failed: {failed}")
            if not all(store.is_done(c) for c in runs):
                break
            out[name] = pd.concat([store.finished_rows(c) for c in runs], ignore_index=True)
    return out


def compare(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str] = ("fused", "solo")
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per training, summary) of the rows `a` and `b`, shown as `names`, as in the module docstring;
    every training must be in both. Differences are a - b."""
    x, y = names
    cols = KEYS + ["es_iteration", "test_acc"]
    both = a[cols].merge(b[cols], on=KEYS, suffixes=(f"_{x}", f"_{y}"), how="outer", indicator=True)
    if (both["_merge"] != "both").any():
        raise ValueError(f"{x} and {y} rows hold different trainings: {both[both['_merge'] != 'both'][KEYS]}")
    both = both.drop(columns="_merge")
    both["es_equal"] = both[f"es_iteration_{x}"] == both[f"es_iteration_{y}"]
    both["test_acc_difference"] = both[f"test_acc_{x}"] - both[f"test_acc_{y}"]
    summary = pd.DataFrame([{
        "trainings": len(both), "es_equal_share": both["es_equal"].mean(),
        f"mean_test_acc_{x}": both[f"test_acc_{x}"].mean(), f"mean_test_acc_{y}": both[f"test_acc_{y}"].mean(),
        "mean_difference_points": both["test_acc_difference"].mean(),
        "largest_difference_points": both["test_acc_difference"].abs().max()}])
    return both, summary


def compare_replayed(curves: pd.DataFrame, rows: pd.DataFrame, patience: int,
                     names: tuple[str, str] = ("float32", "bf16")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`compare` of the trainings of `rows` (`stopping.stored`, one run per precision) in the precisions
    `names` that can be replayed at `patience` (trained without patience, or with at least `patience`), each
    at the checkpoint and test accuracy `patience` would have kept (NaN accuracy where that checkpoint's test
    accuracy was never probed)."""
    r = replay_trainings(curves, rows, [patience], keep=["network", "seed", "precision"], stopped_curves=True)
    r = r.assign(es_iteration=r["rule_es_iteration"], test_acc=r["rule_test_acc"])
    arms = [r[r["precision"] == name] for name in names]
    for name, arm in zip(names, arms):
        if arm.empty:
            raise ValueError(f"no {name} training in these rows can be replayed at patience {patience}: "
                             "train both precisions first, without patience or with at least this one")
    return compare(*arms, names=names)


def adoption(summary: pd.DataFrame) -> str:
    """"adopted", "not adopted: <each condition it fails>" or "not judged: <why>" for the second arm of
    `compare`'s one-row `summary` (the faster precision against float32)."""
    s = summary.iloc[0]
    if pd.isna(s.mean_difference_points):
        return "not judged: a checkpoint's test accuracy was never measured"
    failed = []
    if abs(s.mean_difference_points) > ADOPT_MAX_POINTS:
        failed.append(f"mean test accuracy moved {abs(s.mean_difference_points):.2f} points "
                      f"(at most {ADOPT_MAX_POINTS})")
    if s.es_equal_share < FUSION_ES_EQUAL_SHARE:
        failed.append(f"early stops equal in {100 * s.es_equal_share:.0f}% of trainings "
                      f"(fused against solo: {100 * FUSION_ES_EQUAL_SHARE:.0f}%)")
    return "not adopted: " + "; ".join(failed) if failed else "adopted"


def sentence(summary: pd.DataFrame) -> str:
    s = summary.iloc[0]
    x, y = (c.removeprefix("mean_test_acc_") for c in summary.columns if c.startswith("mean_test_acc_"))
    return (f"{int(s.trainings)} trainings: early stopping at the same iteration in {100 * s.es_equal_share:.0f}%; "
            f"mean test accuracy {s[f'mean_test_acc_{x}']:.2f}% {x} against {s[f'mean_test_acc_{y}']:.2f}% {y} "
            f"({s.mean_difference_points:+.2f} points; the largest difference of one training "
            f"{s.largest_difference_points:.2f} points).")
