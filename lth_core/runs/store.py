"""The run store: IMP runs named by a hash of their configuration, cached and resumable.

A run lives in `outputs/runs/<network>-<hash>/`:
- `config.json`: the full config and the non-default values that name it;
- `init.pt`: the initial state (the reset target) and, when rewinding, the rewind state;
- `round_000.pt`, `round_001.pt`, ...: per finished round, its rows, the mask of
  the next round and the round's early-stopping checkpoint (optimizer-free);
- `rows.csv`: every row so far; `done.json` once the last round finished.

The hash covers only values that differ from the dataclass defaults, so adding a
new option with a default leaves every old hash (and cache) valid. Every file is
written atomically (temp file in the same folder, then `os.replace`), so a kill
leaves the old file or the new one, never a torn one. `run_cached(cfg)` returns a
finished run's rows without training, resumes an interrupted one at its first
unfinished round, and refuses (with `CorruptRunError`) a directory whose files do
not load, do not match its config, or skip a round.
"""
import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch

from lth_core import paths
from lth_core.imp import IMPConfig, IMPRunner, IMPState
from lth_core.training import TrainConfig

# 2: plain state_dicts with `<layer>.weight_mask` buffers (1 held torch parametrizations)
FORMAT_VERSION = 2


class CorruptRunError(RuntimeError):
    pass


def non_default_values(obj) -> dict:
    """Flattened {"field" or "parent.field": value} of dataclass fields that differ from defaults."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in non_default_values(value).items()})
        elif value != default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_hash(cfg: IMPConfig) -> str:
    blob = json.dumps(non_default_values(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_name(cfg: IMPConfig) -> str:
    return f"{cfg.network}-{config_hash(cfg)}"


def run_dir(cfg: IMPConfig) -> Path:
    return paths.runs_dir() / run_name(cfg)


def config_from_json(d: dict) -> IMPConfig:
    d = dict(d)
    d["train"] = TrainConfig(**d["train"])
    return IMPConfig(**d)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename onto `path`: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_text(text: str, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _round_file(d: Path, r: int) -> Path:
    return d / f"round_{r:03d}.pt"


def _corrupt(d: Path, what: str) -> CorruptRunError:
    return CorruptRunError(f"run directory {d} is corrupt or partial: {what}. Delete the directory to "
                           "recompute this run (other runs are unaffected).")


def _load(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or garbage file
        raise _corrupt(path.parent, f"{path.name} does not load ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not set(keys) <= set(obj):
        raise _corrupt(path.parent, f"{path.name} lacks {sorted(set(keys) - set(obj or {}))}")
    return obj


def load_state(cfg: IMPConfig) -> IMPState | None:
    """The state to continue from, or None when the run never started."""
    d = run_dir(cfg)
    if not (d / "config.json").exists():
        if d.exists() and any(p.suffix == ".pt" for p in d.iterdir()):
            raise _corrupt(d, "round files exist but config.json is missing")
        return None
    try:
        saved = json.loads((d / "config.json").read_text())
        same = config_from_json(saved["config"]) == cfg
    except Exception as e:
        raise _corrupt(d, f"config.json does not parse ({e})") from None
    if not same:
        raise _corrupt(d, "config.json describes a different configuration than its name")
    if saved.get("format_version") != FORMAT_VERSION:
        raise CorruptRunError(f"run directory {d} was written in store format {saved.get('format_version')}, "
                              f"and this lth_core reads format {FORMAT_VERSION}; its checkpoints do not load "
                              "into today's models. Delete the directory to recompute this run.")
    if not (d / "init.pt").exists():
        return None  # killed between config.json and init.pt: nothing trained yet
    init = _load(d / "init.pt", ("init_state", "rewind_state"))
    rounds = sorted(int(p.stem.split("_")[1]) for p in d.glob("round_*.pt"))
    if rounds != list(range(len(rounds))):
        raise _corrupt(d, f"round files {rounds} are not contiguous from 0")
    if len(rounds) > cfg.rounds + 1:
        raise _corrupt(d, f"{len(rounds)} round files for a run of {cfg.rounds + 1} rounds")
    state = IMPState(round=0, masks=init["masks"], init_state=init["init_state"],
                     rewind_state=init["rewind_state"])
    for r in rounds:
        rec = _load(_round_file(d, r), ("rows", "next_masks", "checkpoint"))
        if any(row["round"] != r for row in rec["rows"]):
            raise _corrupt(d, f"{_round_file(d, r).name} holds rows of another round")
        state = IMPState(round=r + 1, masks=rec["next_masks"], init_state=state.init_state,
                         rewind_state=rec.get("rewind_state", state.rewind_state),
                         rows=state.rows + rec["rows"], checkpoint=rec["checkpoint"])
    return state


def _save_round(d: Path, state: IMPState, new_rows: list[dict]) -> None:
    r = state.round - 1
    rec = {"rows": new_rows, "next_masks": state.masks, "checkpoint": state.checkpoint}
    if r == 0:
        rec["rewind_state"] = state.rewind_state
    atomic_save(rec, _round_file(d, r))
    atomic_text(pd.DataFrame(state.rows).to_csv(index=False), d / "rows.csv")


def is_done(cfg: IMPConfig) -> bool:
    return (run_dir(cfg) / "done.json").exists()


def rows_frame(cfg: IMPConfig, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "run", run_name(cfg))
    return df


def run_cached(cfg: IMPConfig, data=None, device: str | torch.device = "cpu", progress: bool = True) -> pd.DataFrame:
    """Rows of run `cfg`: read when finished, else computed (resuming) and stored round by round."""
    d = run_dir(cfg)
    if is_done(cfg):
        state = load_state(cfg)
        if state is None or state.round != cfg.rounds + 1:
            raise _corrupt(d, "done.json exists but not every round file does")
        return rows_frame(cfg, state.rows)
    if data is None:
        from lth_core.data import load_dataset
        data = load_dataset(cfg.dataset, device=device)
    runner = IMPRunner(cfg, data, progress=progress)
    state = load_state(cfg)
    if state is None:
        atomic_text(json.dumps({"format_version": FORMAT_VERSION, "name": run_name(cfg),
                                "non_default": non_default_values(cfg),
                                "config": dataclasses.asdict(cfg)}, indent=1), d / "config.json")
        state = runner.initial_state()
        atomic_save({"init_state": state.init_state, "masks": state.masks, "rewind_state": None}, d / "init.pt")
    while state.round <= cfg.rounds:
        before = len(state.rows)
        state = runner.run_round(state)
        _save_round(d, state, state.rows[before:])
    atomic_text(json.dumps({"rounds": cfg.rounds + 1, "rows": len(state.rows)}), d / "done.json")
    return rows_frame(cfg, state.rows)
