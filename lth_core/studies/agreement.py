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
  whose early-stopping iteration is equal, the largest early-stop shift of one training (iterations),
  the mean test accuracy of each side, their difference and the largest difference of one training,
  in points.
- `adoption(summary, network, device)`: the verdict on the faster precision from one summary row, by the
  rule issue #39 set, against what the claims read: adopted where mean test accuracy moves by at most
  `ADOPT_MAX_POINTS`, the largest early-stop shift is within the reference precision's own (`yardstick`:
  the largest shift a harmless perturbation of float32 makes for that network and device, measured and
  stored in `precision_agreement.csv`), and the speed-up claim's verdict does not change (`_claim_moves`).
- `measured(network, device, role)`: a row of `precision_agreement.csv`, the agreements measured so far
  (`role` "yardstick": float32 against a harmless perturbation of itself; "faster": float32 against a
  faster precision), in `compare`'s summary columns; `measured_verdicts()` judges every "faster" row.
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
from lth_core.report.paper import has_paper_value, paper_value
from lth_core.runs import lockstep, store
from lth_core.studies.stopping import replay_trainings

KEYS = ["network", "seed", "round", "kind", "trained_on"]
ADOPT_MAX_POINTS = 0.5  # how far a faster precision may move mean test accuracy (issue #28)
MEASURED_CSV = Path(__file__).with_name("precision_agreement.csv")
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
    shift = (both[f"es_iteration_{x}"] - both[f"es_iteration_{y}"]).abs()
    both["test_acc_difference"] = both[f"test_acc_{x}"] - both[f"test_acc_{y}"]
    summary = pd.DataFrame([{
        "trainings": len(both), "es_equal_share": both["es_equal"].mean(), "largest_es_shift": shift.max(),
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


def measured(network: str, device: str, role: str) -> pd.DataFrame | None:
    """The `role` row ("yardstick" or "faster") of `precision_agreement.csv` for `network` on `device`, as a
    one-row summary like `compare`'s; None where none was measured."""
    table = pd.read_csv(MEASURED_CSV)
    row = table[(table["network"] == network) & (table["device"] == device) & (table["role"] == role)]
    if row.empty:
        return None
    return row.assign(es_equal_share=row["es_equal"] / row["trainings"]).reset_index(drop=True)


def _claim_moves(network: str, shift: float) -> str | None:
    """Why the speed-up claim's verdict would change with the 100% ticket's early stop moved `shift` iterations
    either way; None when it would not, or when no claim reads the network's early stops (no paper numbers for
    them: Section 4 is about LeNet and Conv-2). The agreement runs are trainings on the full pool (the 100% tickets),
    not a claim's whole experiment, so the claim is read at the paper's early stops (Section 4: 10% against
    100%, `faster.es_subset` / `faster.es_full`) with the 100% one moved: the subset's own shift is not measured.
    The accuracy claims read differences of points between arms trained in one precision: the accuracy limit
    bounds how far a precision moves them."""
    if not has_paper_value(f"faster.es_full.{network}"):
        return None
    subset, full = paper_value(f"faster.es_subset.{network}"), paper_value(f"faster.es_full.{network}")
    bar = paper_value("faster.speedup")
    holds = full / subset >= bar
    for moved in (full - shift, full + shift):
        if (moved / subset >= bar) != holds:
            return (f"the speed-up claim's ratio at the paper's early stops ({full:,.0f} / {subset:,.0f} = "
                    f"{full / subset:.2f}x) crosses its {bar:g}x bar at {moved / subset:.2f}x when the 100% "
                    f"early stop moves {shift:,.0f} iterations")
    return None


def adoption(summary: pd.DataFrame, network: str, device: str) -> str:
    """"adopted", "not adopted: <each condition it fails>" or "not judged: <why>" for the second arm of
    `compare`'s one-row `summary` of `network` on `device` (the faster precision against float32), by the
    rule of the module docstring."""
    s = summary.iloc[0]
    if pd.isna(s.mean_difference_points):
        return "not judged: a checkpoint's test accuracy was never measured"
    yardstick = measured(network, device, "yardstick")
    if yardstick is None:
        return (f"not judged: no yardstick for {network} on {device} (float32's early-stop shift under a harmless "
                f"perturbation) in {MEASURED_CSV.name}")
    spread = yardstick.iloc[0]
    failed = []
    if abs(s.mean_difference_points) > ADOPT_MAX_POINTS:
        failed.append(f"mean test accuracy moved {abs(s.mean_difference_points):.2f} points "
                      f"(at most {ADOPT_MAX_POINTS})")
    if s.largest_es_shift > spread.largest_es_shift:
        failed.append(f"an early stop moved {s.largest_es_shift:,.0f} iterations ({spread.other} moved float32's "
                      f"by at most {spread.largest_es_shift:,.0f})")
    claim = _claim_moves(network, s.largest_es_shift)
    if claim:
        failed.append(claim)
    return "not adopted: " + "; ".join(failed) if failed else "adopted"


def measured_verdicts() -> pd.DataFrame:
    """Every "faster" row of `precision_agreement.csv` beside its yardstick, with `adoption`'s verdict."""
    table = pd.read_csv(MEASURED_CSV)
    yardsticks = table.loc[table["role"] == "yardstick", ["network", "device", "other", "largest_es_shift"]]
    out = table[table["role"] == "faster"].merge(
        yardsticks.rename(columns={"other": "yardstick", "largest_es_shift": "yardstick_es_shift"}),
        on=["network", "device"], how="left")
    out["verdict"] = [adoption(measured(n, d, "faster"), n, d) for n, d in zip(out["network"], out["device"])]
    return out[["network", "device", "other", "trainings", "es_equal", "largest_es_shift", "mean_difference_points",
                "yardstick", "yardstick_es_shift", "verdict"]]


def sentence(summary: pd.DataFrame) -> str:
    s = summary.iloc[0]
    x, y = (c.removeprefix("mean_test_acc_") for c in summary.columns if c.startswith("mean_test_acc_"))
    return (f"{int(s.trainings)} trainings: early stopping at the same iteration in {100 * s.es_equal_share:.0f}%; "
            f"mean test accuracy {s[f'mean_test_acc_{x}']:.2f}% {x} against {s[f'mean_test_acc_{y}']:.2f}% {y} "
            f"({s.mean_difference_points:+.2f} points; the largest difference of one training "
            f"{s.largest_difference_points:.2f} points).")
