"""The stopping rule's cost: what a patience of p evaluations would have changed, read from full-budget curves.

A training that runs its whole budget stores its validation curve (`store.curves_frame`),
so any patience rule can be replayed on it without training again:
`replay(scores, p)` walks the curve as `training.EarlyStopping` does (a strictly better
score resets the count; `p` evaluations without one stop training; under a step schedule no
stop while a learning-rate drop is ahead, and the count restarts at each drop) and gives the
checkpoint the rule would have kept and the evaluation it would have stopped at.

`patience_table(curves, rows, patiences)` does that for every full-budget training
(its curve reaches its budget) and reports, per patience (and optional groups):
- `es_reproduced`: share of trainings whose early-stopping iteration the rule keeps exactly;
- `test_acc_reproduced`: share whose reported test accuracy is unchanged (the same
  checkpoint, or another with the same accuracy);
- `iterations_saved`: share of all iterations the rule would not have run;
- `test_acc_diff_mean` / `_worst`: the rule's test accuracy minus the full budget's,
  points. An earlier checkpoint's test accuracy is the one `train()` probed when that
  checkpoint had stayed best `TEST_PROBE_AFTER` evaluations (NaN for smaller patiences
  or curves stored before probing).
`choose_patience(table)` is the profiles' rule: the smallest patience that keeps at least
98% of early-stopping iterations exactly and saves at least 10% of iterations, else None
(train the full budget).

`curve_configs(network, iterations, rounds, precisions)` names the runs such curves come from when no profile
has them: Table 1's network on the full pool, no patience, one run per precision. A precision may be given a
patience there: its curves stop, and only a comparison of precisions (`agreement.compare_replayed`) replays
them, at patiences up to their own.

`lth_core/programs/stopping_rule.py` (`make stopping-rule`) runs it on a profile's stored runs;
`lth_core/programs/curves.py` (`make curves`) trains `curve_configs` and reads them.
"""
import math

import pandas as pd

from lth_core.config import IMPConfig, paper_config
from lth_core.runs import store
from lth_core.training import TEST_PROBE_AFTER

PATIENCES = (10, 20, 30, 50, 70, 100, 150)
MIN_ES_REPRODUCED = 0.98  # share of early-stopping iterations a profile's patience must keep exactly
MIN_ITERATIONS_SAVED = 0.10  # a rule saving less than this is not worth its risk: train the full budget
KEYS = ["run", "round", "kind", "trained_on"]


def replay(scores: list[float], patience: int | None, step_lrs: list[float] | None = None) -> tuple[int, int]:
    """(index of the kept checkpoint, index of the last evaluation run) for lower-is-better `scores`.
    `step_lrs`: the curve's learning rates, for a step schedule: as in training, the count restarts at a
    drop and no stop comes while a drop is ahead (the curve's last rate is lower than the current one)."""
    best, stale = 0, 0
    for i in range(1, len(scores)):
        if step_lrs is not None and step_lrs[i] < step_lrs[i - 1]:
            stale = 0
        if scores[i] < scores[best]:
            best, stale = i, 0
        else:
            stale += 1
            drop_ahead = step_lrs is not None and step_lrs[-1] < step_lrs[i]
            if patience is not None and stale >= patience and not drop_ahead:
                return best, i
    return best, len(scores) - 1


def replayable(curves: pd.DataFrame, rows: pd.DataFrame, patience: int | None = None) -> pd.DataFrame:
    """The rows whose curve reaches their budget, and, given a `patience`, those trained with at least that
    patience (column `patience`, `stored`'s): up to its stop such a curve is the one a longer training draws,
    so replaying `patience` on it gives what that patience gives."""
    last = curves.groupby(KEYS, as_index=False)["iteration"].max().rename(columns={"iteration": "last_iteration"})
    rows = rows.merge(last, on=KEYS, how="inner")
    ok = rows["last_iteration"] >= rows["budget"]
    if patience is not None and "patience" in rows:
        ok |= rows["patience"].fillna(0) >= patience
    return rows[ok]


def replay_trainings(curves: pd.DataFrame, rows: pd.DataFrame, patiences=PATIENCES,
                     criterion: str = "val_loss", keep: list[str] | None = None,
                     stopped_curves: bool = False) -> pd.DataFrame:
    """One row per (full-budget training, patience): the rule's checkpoint, stop and test accuracy, with the
    rows' columns `keep`. `stopped_curves`: also, at each patience, the trainings that stopped with at least
    that patience (`replayable`); their `es_iteration` is their own, not the full budget's, so the stopping
    rule's study leaves them out and a comparison of two ways of training may take them."""
    if criterion not in ("val_loss", "val_acc"):
        raise ValueError(f"unknown criterion {criterion!r}; valid: val_loss, val_acc")
    eligible = replayable(curves, rows, min(patiences) if stopped_curves else None)
    if eligible.empty:
        raise ValueError("no full-budget training in these rows: the study needs runs trained without patience "
                         "(their curves reach their budget)")
    groups = dict(tuple(curves.sort_values("iteration").groupby(KEYS)))
    out = []
    for _, row in eligible.iterrows():
        whole = row["last_iteration"] >= row["budget"]
        mine = [p for p in patiences if whole or row.get("patience", 0) >= p]  # a stopped curve: up to its own
        out += _replay_row(row, groups[tuple(row[k] for k in KEYS)], mine, criterion, keep)
    return pd.DataFrame(out)


def _replay_row(row: pd.Series, curve: pd.DataFrame, patiences: list[int], criterion: str,
                keep: list[str] | None) -> list[dict]:
    """One training's curve replayed at each of `patiences` (`replay_trainings`' rows)."""
    its = curve["iteration"].tolist()
    scores = (curve["val_loss"] if criterion == "val_loss" else -curve["val_acc"]).tolist()
    probes = curve["test_acc"].tolist()
    step_lrs = curve["lr"].tolist() if row.get("lr_schedule") == "step" else None
    full_best, _ = replay(scores, None)
    if its[full_best] != row["es_iteration"]:
        raise ValueError(f"{row['run']} round {row['round']} {row['kind']} on {row['trained_on']}: its curve's "
                         f"best evaluation ({its[full_best]}) is not its early-stopping iteration "
                         f"({row['es_iteration']}); was it trained with another criterion than {criterion!r}?")
    out = []
    for p in patiences:
        kept, stop = replay(scores, p, step_lrs)
        same = kept == full_best
        test_acc = row["test_acc"] if same else (probes[kept] if p >= TEST_PROBE_AFTER else math.nan)
        out.append({**{k: row[k] for k in KEYS + list(keep or [])}, "subset_percent": row["subset_percent"],
                    "patience": p, "budget": row["budget"], "es_iteration": row["es_iteration"],
                    "rule_es_iteration": its[kept], "rule_iterations": its[stop], "test_acc": row["test_acc"],
                    "rule_test_acc": test_acc})
    return out


def patience_table(curves: pd.DataFrame, rows: pd.DataFrame, patiences=PATIENCES, by: list[str] | None = None,
                   criterion: str = "val_loss") -> pd.DataFrame:
    """Per patience (and `by` groups): trainings, shares reproduced, iterations saved, test-accuracy change."""
    r = replay_trainings(curves, rows, patiences, criterion, keep=by)
    r = r.assign(es_same=(r["rule_es_iteration"] == r["es_iteration"]).astype(float),
                 acc_same=(r["rule_test_acc"] == r["test_acc"]).astype(float).where(r["rule_test_acc"].notna()),
                 acc_diff=r["rule_test_acc"] - r["test_acc"])
    keys = (by or []) + ["patience"]
    t = r.groupby(keys, as_index=False).agg(
        trainings=("es_same", "size"), es_reproduced=("es_same", "mean"), test_acc_reproduced=("acc_same", "mean"),
        iterations_full=("budget", "sum"), iterations_rule=("rule_iterations", "sum"),
        # unknown (not probed) for one training: unknown for the group, not silently left out
        test_acc_diff_mean=("acc_diff", lambda d: d.mean(skipna=False)),
        test_acc_diff_worst=("acc_diff", lambda d: d.min(skipna=False)))
    t["iterations_saved"] = 1 - t["iterations_rule"] / t["iterations_full"]
    return t[keys + ["trainings", "es_reproduced", "test_acc_reproduced", "iterations_saved",
                     "test_acc_diff_mean", "test_acc_diff_worst"]]


def choose_patience(table: pd.DataFrame, min_es_reproduced: float = MIN_ES_REPRODUCED,
                    min_saved: float = MIN_ITERATIONS_SAVED) -> int | None:
    """The smallest patience of an ungrouped `patience_table` that qualifies (see the module docstring)."""
    ok = table[(table["es_reproduced"] >= min_es_reproduced) & (table["iterations_saved"] >= min_saved)]
    return None if ok.empty else int(ok["patience"].min())


def curve_configs(network: str, iterations: int, rounds: int, precisions=("float32",),
                  patience: dict[str, int] | None = None, **overrides) -> list[IMPConfig]:
    """One run per precision of Table 1's `network` on the full pool (less the validation set), trained without
    patience over `iterations` (set it well past the early stops), the dense level and `rounds` pruned ones;
    `overrides` shrink them for a test. Pruning ranks the early-stopping checkpoint, so every level's mask is the
    one a training with any patience that keeps that checkpoint would give.
    `patience`: {precision: patience} for precisions that need not draw whole curves (a comparison arm, once
    the rule is known: it costs the iterations past the early stop); the others train without."""
    unknown = set(patience or {}) - set(precisions)
    if unknown:
        raise ValueError(f"patience given for {sorted(unknown)}, which are not among the precisions {list(precisions)}")
    return [paper_config(network, iterations=iterations, rounds=rounds, patience=(patience or {}).get(p),
                         precision=p, **overrides) for p in precisions]


def stored(configs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, rows) of every stored round of `configs`' runs, finished or not."""
    curves, rows = [], []
    for cfg in dict.fromkeys(configs):
        state = store.load_state(cfg)
        if state is not None:
            curves.append(store.curves_frame(cfg))
            patience = math.nan if cfg.train.patience is None else cfg.train.patience  # NaN: trained without
            rows.append(store.rows_frame(cfg, state.rows).assign(lr_schedule=cfg.train.lr_schedule,
                                                                 precision=cfg.train.precision, patience=patience))
    if not rows:
        raise ValueError("none of these runs has a stored round: run them first (make reproduce)")
    return pd.concat(curves, ignore_index=True), pd.concat(rows, ignore_index=True)
