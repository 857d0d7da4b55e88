"""The run store: IMP runs named by a hash of their configuration, cached, resumable and self-checking.

A run lives in `outputs/runs/<network>-<hash>/`:
- `config.json`: the full config, the non-default values that name it, and the
  numerics it was computed under (`numerics`: torch version, device type, torch
  thread count, the GPU's model on CUDA, the training precision, and the round each setting took effect
  from; the store format is
  `format_version`);
- `init.pt`: the initial state (the reset target) and, when rewinding, the rewind state;
- `round_000.pt`, `round_001.pt`, ...: per finished round, its rows, every
  training's validation curve, the mask of the next round and the round's
  early-stopping checkpoint (optimizer-free);
- `rows.csv`: every row so far (a convenience copy: rebuilt from the round
  files whenever it disagrees with them); `done.json` once the last round finished, with the
  SHA-256 of the last round file (which no later round file vouches for);
- `lock`: the file whose `fcntl.flock` lets one process compute the run at a time.

The hash covers only values that differ from the dataclass defaults, so adding a
new option with a default leaves every old hash (and cache) valid. Every file is
written atomically (temp file `.<name>.<random>.tmp` in the same folder, created
with the umask's permissions, then `os.replace`), so a kill leaves the old file
or the new one, never a torn one; opening a run removes temp files older than
this process.

Checks. Each round file holds its run's name and the SHA-256 of the file before
it (round 0: of `init.pt`), so a round file copied from another run, or one
round replaced by another, is refused with `CorruptRunError` naming the file; a
finished run's last round file is checked against the digest in `done.json`. A
damaged round N (does not load, other run, missing, not the file `done.json`
recorded) keeps rounds 0..N-1; a broken chain between rounds N and N+1 cannot
tell which of the two was replaced, so it is reported at round N. The error lists
the files to delete, and `repair(cfg)` (or `open_run(..., repair=True)`) deletes
them so the run resumes at the first round that cannot be trusted.
Resuming under other numerics than the run started with (torch version, device
type, precision, on CPU the thread count, on CUDA the GPU model) raises `NumericsChangedError` unless allowed
(`allow_numerics_change=True` or `LTH_ALLOW_NUMERICS_CHANGE=1`), which is then
recorded in `config.json`; reading a finished run never checks numerics. Runs
written before these checks (format 2 without `numerics`/chain fields) read as
they are: their existing round files count as unchained, and a resume chains
and records numerics from its first new round on (`chain_from_round`). A finished
run whose `done.json` has no digest (written before it was recorded) gets it on
its first read: a last round replaced before that read is not detected.

API (the store stores and reads; it loads no data and builds no runner: the round driver,
`runs/lockstep.py`, computes rounds and hands each next state to `save_round`):
- `finished_rows(cfg)`: a finished run's rows, without a lock.
- `open_run(cfg, runner, *, allow_numerics_change=False, repair=False, wait=True)` verifies
  the folder, creates `config.json`/`init.pt` for a new run and checks numerics;
  the returned `OpenRun` holds the verified `state` and the lock until `close()`
  (or the end of its `with` block). `save_round(run, next_state)` stores one
  round; `finish_run(run)` writes `done.json` and returns the rows frame.
- `curves_frame(cfg)`: the run's validation curves as one tidy table (rounds
  stored before curves were kept have none).
- `level_masks(cfg)`: the stored mask of every pruned level, {level: masks} (verified, no lock).
- `repair(cfg)`, `load_state(cfg)` (the verified state, no lock), `is_done`,
  `run_dir`, `run_name`, `config_hash`, `atomic_write`/`atomic_save`/`atomic_text`.
"""
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lth_core import crashpoints, paths
from lth_core.config import IMPConfig, TrainConfig
from lth_core.imp import IMPRunner, IMPState
from lth_core.training import check_precision

# 2: plain state_dicts with `<layer>.weight_mask` buffers (1 held torch parametrizations). The chain
# fields and the numerics record were added within format 2: files without them still load as they are.
FORMAT_VERSION = 2
ALLOW_NUMERICS_ENV = "LTH_ALLOW_NUMERICS_CHANGE"
# a temp file that is being written has a modification time after this; older ones were left by a kill
_STARTED = time.time()
# run folders whose lock this process holds: flock would block forever on a second open in this process
_HELD: set[Path] = set()
_log = logging.getLogger(__name__)


class CorruptRunError(RuntimeError):
    """A run folder that cannot be used as it is. `first_bad_round`: rounds before it are intact
    (`repair` deletes the rest); None when only deleting the folder helps."""

    def __init__(self, message: str, first_bad_round: int | None = None):
        super().__init__(message)
        self.first_bad_round = first_bad_round


class NumericsChangedError(RuntimeError):
    """Resuming a run under another torch version, device type, precision, CPU thread count or GPU model than it
    started with."""


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


# ---- atomic files ----
def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename onto `path`: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # os.open applies the umask like open() does; tempfile.mkstemp would make the file 0600
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        try:
            write(str(tmp))
        except OSError as e:  # a failed write names no file (a full disk): name the one it was for
            if e.filename is None:
                raise OSError(e.errno, e.strerror, str(path)) from e
            raise
        crashpoints.reached(f"rename into {path}")  # a kill here leaves the temp file beside the old one
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(obj, path: Path) -> str:
    """torch.save `obj` atomically; returns the SHA-256 of the bytes written (a round file's chain link)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    blob = buf.getvalue()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    return hashlib.sha256(blob).hexdigest()


def atomic_text(text: str, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _remove_stale_temporaries(d: Path) -> None:
    for p in d.glob(".*.tmp"):
        try:
            if p.stat().st_mtime < _STARTED:
                p.unlink()
        except FileNotFoundError:  # its writer renamed it meanwhile
            pass


# ---- reading and verifying ----
def _round_file(d: Path, r: int) -> Path:
    return d / f"round_{r:03d}.pt"


def round_numbers(d: Path) -> list[int]:
    """The round numbers of the round files in run folder `d`, sorted."""
    return sorted(int(p.stem.split("_")[1]) for p in d.glob("round_*.pt") if p.stem.split("_")[1].isdigit())


def _corrupt(d: Path, what: str) -> CorruptRunError:
    return CorruptRunError(f"run directory {d} is corrupt or partial: {what}. Delete the directory to "
                           "recompute this run (other runs are unaffected).")


def _files_from_round(d: Path, r: int) -> list[Path]:
    """What `repair` deletes to resume at round r: round files r and later, rows.csv, done.json."""
    later = [_round_file(d, n) for n in round_numbers(d) if n >= r]
    return later + [p for p in (d / "rows.csv", d / "done.json") if p.exists()]


def _damaged(d: Path, r: int, what: str) -> CorruptRunError:
    kept = f"Its rounds 0-{r - 1} are intact" if r > 0 else "None of its rounds is intact"
    files = ", ".join(p.name for p in _files_from_round(d, r)) or "nothing"
    return CorruptRunError(
        f"run directory {d} is damaged at round {r}: {what}. {kept}: to recompute from round {r}, delete "
        f"{files} in it, or pass repair=True to lockstep.run_cached (or call lth_core.runs.store.repair(cfg)). Delete "
        "the directory to recompute the whole run (other runs are unaffected).", first_bad_round=r)


def _load(path: Path, keys: tuple[str, ...], r: int | None = None) -> tuple[dict, str]:
    """(the object in `path`, SHA-256 of its bytes); damage is reported at round r (None: init.pt)."""
    fail = (lambda what: _corrupt(path.parent, what)) if r is None else (lambda what: _damaged(path.parent, r, what))
    try:
        blob = path.read_bytes()
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or garbage file
        raise fail(f"{path.name} does not load ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not set(keys) <= set(obj):
        raise fail(f"{path.name} lacks {sorted(set(keys) - set(obj if isinstance(obj, dict) else {}))}")
    return obj, hashlib.sha256(blob).hexdigest()


def _read_config(d: Path, cfg: IMPConfig) -> dict:
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
    return saved


@dataclass
class _Scan:
    saved: dict  # config.json
    state: IMPState | None  # None: killed between config.json and init.pt
    digest: str | None  # of the newest file of the chain (init.pt before round 0)


def _scan(cfg: IMPConfig) -> _Scan | None:
    """Read and verify run `cfg`'s folder; None when the run never started."""
    d, name = run_dir(cfg), run_name(cfg)
    if not (d / "config.json").exists():
        if d.exists() and any(p.suffix == ".pt" for p in d.iterdir()):
            raise _corrupt(d, "round files exist but config.json is missing")
        return None
    saved = _read_config(d, cfg)
    rounds = round_numbers(d)
    if not (d / "init.pt").exists():
        if rounds:
            raise _corrupt(d, "round files exist but init.pt is missing")
        return _Scan(saved, None, None)  # nothing trained yet
    init, digest = _load(d / "init.pt", ("init_state", "rewind_state"))
    if init.get("run", name) != name:
        raise _corrupt(d, f"init.pt belongs to run {init['run']}, not {name}")
    if rounds != list(range(len(rounds))):
        gap = next(r for r, n in enumerate(rounds) if r != n)
        raise _damaged(d, gap, f"round files {rounds} are not contiguous from 0 ({_round_file(d, gap).name} "
                               "is missing)")
    if len(rounds) > cfg.rounds + 1:
        raise _damaged(d, cfg.rounds + 1, f"{len(rounds)} round files for a run of {cfg.rounds + 1} rounds")
    # rounds before chain_from_round were written before round files were chained (None: all of them)
    chain_from = saved.get("chain_from_round")
    state = IMPState(round=0, masks=init["masks"], init_state=init["init_state"],
                     rewind_state=init["rewind_state"])
    before = "init.pt"
    for r in rounds:
        f = _round_file(d, r)
        rec, file_digest = _load(f, ("rows", "next_masks", "checkpoint"), r)
        if any(row["round"] != r for row in rec["rows"]):
            raise _damaged(d, r, f"{f.name} holds rows of another round")
        if "prev" in rec:
            if rec.get("run") != name:
                raise _damaged(d, r, f"{f.name} belongs to run {rec.get('run')}, not {name} (copied from "
                                     "another run)")
            if rec["prev"] != digest:  # either file may be the replaced one: the earlier is the first untrusted
                what = (f"{f.name} was written after another {before} than the one here (one of the two was "
                        "replaced)")
                raise _corrupt(d, what) if r == 0 else _damaged(d, r - 1, what)
        elif chain_from is not None and r >= chain_from:
            raise _damaged(d, r, f"{f.name} lacks the run name and chain digest that every round file from "
                                 f"round {chain_from} on has (replaced by a file of an older run?)")
        state = IMPState(round=r + 1, masks=rec["next_masks"], init_state=state.init_state,
                         rewind_state=rec.get("rewind_state", state.rewind_state),
                         rows=state.rows + rec["rows"], checkpoint=rec["checkpoint"],
                         curves=state.curves + rec.get("curves", []))  # rounds stored before curves: none
        digest, before = file_digest, f.name
    if (d / "done.json").exists():
        if state.round != cfg.rounds + 1:
            raise _damaged(d, state.round, f"done.json exists but only {state.round} of {cfg.rounds + 1} round "
                                           "files do")
        _check_done(d, rounds[-1], digest)
    return _Scan(saved, state, digest)


def _check_done(d: Path, last: int, digest: str) -> None:
    """Check the last round file (SHA-256 `digest`) against the digest `done.json` recorded when the run
    finished; a done.json written before digests were recorded gets this one (when the store takes it)."""
    f = _round_file(d, last)
    try:
        done = json.loads((d / "done.json").read_text())
        if not isinstance(done, dict):
            raise ValueError(f"a {type(done).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as e:
        raise _damaged(d, last, f"done.json does not parse ({e}), so nothing vouches for {f.name}") from None
    if done.get("sha256") is None:
        try:
            atomic_text(json.dumps({**done, "last_round": f.name, "sha256": digest}), d / "done.json")
        except OSError as e:  # a read-only store still reads; the digest is recorded by a later read
            _log.warning("run %s: could not record its last round's digest in done.json (%s)", d.name, e)
    elif done["sha256"] != digest:
        raise _damaged(d, last, f"{f.name} is not the file done.json recorded when the run finished (replaced "
                                "since)")


def load_state(cfg: IMPConfig) -> IMPState | None:
    """The verified state to continue from (takes no lock), or None when the run never trained."""
    scan = _scan(cfg)
    return scan.state if scan else None


def level_masks(cfg: IMPConfig) -> dict[int, dict[str, torch.Tensor]]:
    """{level: masks} of every pruned level of run `cfg` stored so far (takes no lock; {} when none is): the
    mask round r trains on is what round r-1 pruned, its round file's `next_masks`. The round files are
    verified (`load_state`) before they are read; the dense level 0 keeps every weight and is left out."""
    d = run_dir(cfg)
    rounds = round_numbers(d)  # listed first: a round written meanwhile by a running job is not yet verified
    if load_state(cfg) is None:
        return {}
    # the last round's next_masks is its own mask again, not a level of its own
    return {r + 1: _load(_round_file(d, r), ("next_masks",), r)[0]["next_masks"] for r in rounds if r < cfg.rounds}


def _rows_csv(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


def _sync_rows_csv(d: Path, rows: list[dict]) -> None:
    """Rewrite rows.csv when it disagrees with the round files (e.g. killed between a round file and it)."""
    path = d / "rows.csv"
    if not rows:
        path.unlink(missing_ok=True)
    elif not path.exists() or path.read_text() != _rows_csv(rows):
        atomic_text(_rows_csv(rows), path)


def repair(cfg: IMPConfig) -> list[str]:
    """Delete a damaged round and what follows it (later rounds, rows.csv, done.json), keeping the
    intact rounds before it; the names deleted (none for an intact run). Takes the run's lock."""
    d = run_dir(cfg)
    if not d.exists():
        return []
    fd = _acquire(d, wait=True)
    try:
        return _repair(cfg)
    finally:
        _release(d, fd)


def _repair(cfg: IMPConfig) -> list[str]:
    try:
        _scan(cfg)
        return []
    except CorruptRunError as e:
        if e.first_bad_round is None:  # config.json or init.pt: nothing of the run can be trusted
            raise
        files = _files_from_round(run_dir(cfg), e.first_bad_round)
    for p in files:
        p.unlink()
    _log.warning("repaired run %s: deleted %s", run_name(cfg), ", ".join(p.name for p in files))
    return [p.name for p in files]


# ---- the lock ----
def _acquire(d: Path, wait: bool) -> int | None:
    """An fd holding the exclusive flock of run folder d; None when busy and not `wait`."""
    key = d.resolve()
    if key in _HELD:
        raise RuntimeError(f"run {d.name} is already open in this process; close it (OpenRun.close(), or "
                           "leave its `with` block) before opening it again")
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                return None
            _log.warning("run %s is being computed by another process; waiting for it to finish", d.name)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    _HELD.add(key)
    return fd


def _release(d: Path, fd: int) -> None:
    _HELD.discard(d.resolve())
    os.close(fd)  # closing the last fd of the open file releases the flock


# ---- numerics ----
# how training treats subnormal floats on a CPU (training.flush_cpu_denormals); records without the key
# were computed before flushing
CPU_DENORMALS, CPU_DENORMALS_BEFORE = "flushed", "kept"
PRECISION_BEFORE = "float32"  # records without `precision` were computed before there was another


def _numerics(device: torch.device, precision: str = "float32") -> dict:
    """What a run computed on `device` in `precision` (TrainConfig.precision) is recorded as computed with;
    refuses a precision the device cannot run before anything is written."""
    check_precision(precision, device)
    n = {"torch": torch.__version__, "device": torch.device(device).type, "threads": torch.get_num_threads(),
         "precision": precision}
    if n["device"] == "cpu":
        n["cpu_denormals"] = CPU_DENORMALS
        # torch picks its CPU kernels per machine (or ATEN_CPU_CAPABILITY): AVX-512 ones round differently
        n["cpu_kernels"] = torch.backends.cpu.get_cpu_capability()
    else:  # another GPU model may pick other kernels (cuDNN's heuristics, cuBLAS's tiling): other rounding
        n["gpu"] = torch.cuda.get_device_name(device)
    return n


def _describe(n: dict) -> str:
    denormals = f", subnormal floats {n.get('cpu_denormals', CPU_DENORMALS_BEFORE)}" if n["device"] == "cpu" else ""
    kernels = f", {n['cpu_kernels']} kernels" if n.get("cpu_kernels") else ""
    gpu = f" ({n['gpu']})" if n.get("gpu") else ""
    precision = n.get("precision", PRECISION_BEFORE)
    return (f"torch {n['torch']} on {n['device']}{gpu} in {precision} with {n['threads']} torch threads"
            f"{kernels}{denormals}")


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    if old["torch"] != new["torch"]:
        out.append(f"torch version {old['torch']} -> {new['torch']}")
    before, now = (n.get("precision", PRECISION_BEFORE) for n in (old, new))
    if before != now:  # bf16 or TF32 products round differently from float32 ones
        out.append(f"precision {before} -> {now}")
    if old["device"] != new["device"]:
        out.append(f"device {old['device']} -> {new['device']}")
    elif new["device"] == "cpu":
        if old["threads"] != new["threads"]:  # CPU kernels round per thread split
            out.append(f"torch threads {old['threads']} -> {new['threads']}")
        before, now = (n.get("cpu_denormals", CPU_DENORMALS_BEFORE) for n in (old, new))
        if before != now:
            out.append(f"subnormal floats {before} -> {now}")
        if old.get("cpu_kernels") and old["cpu_kernels"] != new.get("cpu_kernels"):  # older records: no check
            out.append(f"CPU kernels {old['cpu_kernels']} -> {new.get('cpu_kernels')}")
    elif old.get("gpu") and old.get("gpu") != new.get("gpu"):  # runs recorded before the GPU's name: no check
        out.append(f"GPU {old['gpu']} -> {new.get('gpu')}")
    return out


def _check_numerics(d: Path, saved: dict, now: dict, r: int, allow: bool | None) -> None:
    """Refuse to resume at round r under other numerics than recorded, unless allowed (then recorded)."""
    name = d.name
    record = {**now, "from_round": r}
    history = saved.get("numerics")
    if history is None:  # written before numerics were recorded: nothing to compare, record from here on
        saved["numerics"] = [record]
        saved.setdefault("chain_from_round", r)
    else:
        diffs = _differences(history[-1], now)
        if not diffs:
            return
        env = os.environ.get(ALLOW_NUMERICS_ENV) == "1"
        if not (allow or env):
            raise NumericsChangedError(
                f"run {name} is recorded as computed with {_describe(history[-1])} from round "
                f"{history[-1]['from_round']} on; resuming it at round {r} here would use {_describe(now)} "
                f"({'; '.join(diffs)}), so its later rounds would not equal the same run computed in one "
                "go. Resume it under the recorded settings (e.g. torch.set_num_threads, the executor's "
                "`threads` option, the same device and torch), or allow the change with "
                f"allow_numerics_change=True (lockstep.run_cached / open_run) or {ALLOW_NUMERICS_ENV}=1 (the change "
                f"is then recorded in config.json), or delete {d} to recompute the run.")
        record["allowed_by"] = "allow_numerics_change=True" if allow else f"{ALLOW_NUMERICS_ENV}=1"
        history.append(record)
        _log.warning("run %s resumes at round %d with changed numerics: %s", name, r, "; ".join(diffs))
    atomic_text(json.dumps(saved, indent=1), d / "config.json")


# ---- computing a run ----
@dataclass
class OpenRun:
    """A run opened for computing by `open_run`: its verified state and the lock keeping other processes out."""
    cfg: IMPConfig
    dir: Path
    state: IMPState  # rounds 0..state.round-1 are stored
    digest: str  # SHA-256 of the newest stored file of the chain (init.pt before round 0)
    _lock_fd: int | None

    @property
    def finished(self) -> bool:
        return self.state.round > self.cfg.rounds

    def close(self) -> None:
        if self._lock_fd is not None:
            _release(self.dir, self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "OpenRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"run {self.dir.name} was closed; open it again with open_run")


def open_run(cfg: IMPConfig, runner: IMPRunner | None, *, allow_numerics_change: bool = False,
             repair: bool = False, wait: bool = True) -> OpenRun | None:
    """Lock, verify and (if new) create run `cfg`, checking numerics before it resumes.

    Waits while another process holds the run's lock (returns None instead when `wait` is False), so a
    run another process finished meanwhile opens finished. `runner` gives a new run its initial state
    and the device whose numerics are checked; a finished run needs none. `repair`: delete a damaged round and what follows first (see `repair`).
    """
    d = run_dir(cfg)
    fd = _acquire(d, wait)
    if fd is None:
        return None
    try:
        _remove_stale_temporaries(d)
        if repair:
            _repair(cfg)
        scan = _scan(cfg)
        if scan is not None and scan.state is not None and scan.state.round > cfg.rounds:
            state, digest = scan.state, scan.digest  # finished: read as it is, whatever the numerics
        else:
            if runner is None:
                raise ValueError(f"run {run_name(cfg)} is not finished: open_run needs its IMPRunner to compute it")
            now = _numerics(runner.device, cfg.train.precision)
            if scan is None or scan.state is None:
                atomic_text(json.dumps({"format_version": FORMAT_VERSION, "name": run_name(cfg),
                                        "non_default": non_default_values(cfg), "config": dataclasses.asdict(cfg),
                                        "numerics": [{**now, "from_round": 0}], "chain_from_round": 0},
                                       indent=1), d / "config.json")
                state = runner.initial_state()
                digest = atomic_save({"run": run_name(cfg), "init_state": state.init_state, "masks": state.masks,
                                      "rewind_state": None}, d / "init.pt")
            else:
                _check_numerics(d, scan.saved, now, scan.state.round, allow_numerics_change)
                state, digest = scan.state, scan.digest
        _sync_rows_csv(d, state.rows)
        return OpenRun(cfg, d, state, digest, fd)
    except BaseException:
        _release(d, fd)
        raise


def save_round(run: OpenRun, state: IMPState) -> None:
    """Store the round that took `run.state` to `state` (= runner.run_round(run.state)) and advance `run`."""
    run._check_open()
    r = run.state.round
    if state.round != r + 1 or len(state.rows) < len(run.state.rows):
        raise ValueError(f"run {run.dir.name} is at round {r}; save_round needs the state after round {r}, "
                         f"got one at round {state.round} with {len(state.rows)} rows")
    rec = {"run": run.dir.name, "prev": run.digest, "rows": state.rows[len(run.state.rows):],
           "curves": state.curves[len(run.state.curves):],
           "next_masks": state.masks, "checkpoint": state.checkpoint}
    if r == 0:
        rec["rewind_state"] = state.rewind_state
    run.digest = atomic_save(rec, _round_file(run.dir, r))
    run.state = state
    atomic_text(_rows_csv(state.rows), run.dir / "rows.csv")


def finish_run(run: OpenRun) -> pd.DataFrame:
    """Mark a run whose every round is stored as done; its rows."""
    run._check_open()
    if not run.finished:
        raise ValueError(f"run {run.dir.name} has rounds {run.state.round}-{run.cfg.rounds} still to compute")
    if not (run.dir / "done.json").exists():
        atomic_text(json.dumps({"rounds": run.cfg.rounds + 1, "rows": len(run.state.rows),
                                "last_round": _round_file(run.dir, run.cfg.rounds).name, "sha256": run.digest}),
                    run.dir / "done.json")
    return rows_frame(run.cfg, run.state.rows)


def curves_frame(cfg: IMPConfig) -> pd.DataFrame:
    """Every stored validation curve of run `cfg` as one tidy table: run, round, kind, trained_on,
    iteration, val_loss, val_acc, train_loss, lr, and test_acc where a checkpoint's test accuracy was
    probed (training.TEST_PROBE_AFTER; NaN elsewhere). Rounds stored before curves were kept have none."""
    state = load_state(cfg)
    df = pd.DataFrame(state.curves if state is not None else [],
                      columns=["round", "kind", "trained_on", "iteration", "val_loss", "val_acc", "train_loss", "lr",
                               "test_acc"])
    df.insert(0, "run", run_name(cfg))
    return df


def is_done(cfg: IMPConfig) -> bool:
    return (run_dir(cfg) / "done.json").exists()


def rows_frame(cfg: IMPConfig, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "run", run_name(cfg))
    return df


def finished_rows(cfg: IMPConfig) -> pd.DataFrame:
    """The rows of the finished run `cfg` (its round files verified), without a lock."""
    d = run_dir(cfg)
    if not is_done(cfg):
        raise ValueError(f"run {d.name} is not finished: compute it first (lockstep.run_cached, make reproduce)")
    state = load_state(cfg)
    if state is None or state.round != cfg.rounds + 1:
        raise _corrupt(d, "done.json exists but not every round file does")
    try:
        _sync_rows_csv(d, state.rows)
    except OSError as e:  # a read-only store still reads; only its convenience copy stays stale
        warnings.warn(f"{d / 'rows.csv'} disagrees with the round files and could not be rewritten ({e})")
    return rows_frame(cfg, state.rows)
