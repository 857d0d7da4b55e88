"""How the main job ends when it fails: one `error:` line saying what is at fault and what to do,
and the traceback in a log file.

Every error the main job (`python -m lth_core.programs.reproduce`) can end with, and its line:
- `JobError`: a failure the job has already phrased (a damaged manifest, runs that failed, a
  notebook that failed, a folder that cannot be written): its message;
- `ParameterError` / `ValueError`: a profile, parameter, device or executor that is not valid (a
  profile that is not valid YAML names its file and line);
- `FolderBusyError`: another process writes the profile folder: it is named;
- `CorruptRunError`: a run folder damaged after it was written, found when the run is read: the
  folder and what to delete; `NumericsChangedError`: a run resumed under other numerics;
- `DataError`: a dataset that cannot be read or found;
- `OSError`: no space left on a device, or a file that cannot be written: the file;
- `KeyboardInterrupt` / `Interrupted`: the job was stopped by Ctrl-C or SIGTERM (a Slurm time limit,
  `scancel`), named with what it was doing: run it again to resume;
- anything else: a bug, reported with its type and message.
"""
import datetime
import errno
import traceback
from pathlib import Path

from lth_core.data import DataError
from lth_core.runs.store import CorruptRunError, NumericsChangedError
from lth_core.writer_lock import FolderBusyError

KEPT = "finished runs and published outputs are kept"


class JobError(RuntimeError):
    """A failure of the main job whose message is already its error line (what is at fault, what to do)."""


class Interrupted(KeyboardInterrupt):
    """The main job stopped by a signal (`signal_name`: SIGINT from Ctrl-C, SIGTERM from a Slurm time limit or
    `scancel`); `where`: what it was doing then, set by the job (None: before it started any work)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name, self.where = signal_name, None


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] + (" (more in the log)" if len(lines) > 1 else "") if lines else ""


def describe(err: BaseException) -> str:
    """The error line for `err`, without the `error:` prefix."""
    if isinstance(err, KeyboardInterrupt):
        by = f" by {err.signal_name}" if isinstance(err, Interrupted) else ""
        during = f" while {err.where}" if getattr(err, "where", None) else ""
        return f"interrupted{by}{during}; run the same command again to resume ({KEPT})"
    if isinstance(err, (JobError, ValueError, FolderBusyError, CorruptRunError, NumericsChangedError, DataError)):
        return _one_line(err)
    if isinstance(err, OSError):
        where = err.filename or "a file"
        if err.errno == errno.ENOSPC:
            return (f"no space left on the device holding {where}: free some space (or point LTH_OUTPUTS_DIR / "
                    f"LTH_RUNS_DIR at a larger disk) and run again; {KEPT}")
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return (f"cannot write {where} ({err.strerror}): make it writable (or point LTH_OUTPUTS_DIR / "
                    f"LTH_RUNS_DIR elsewhere) and run again; {KEPT}")
        return f"{err.strerror or type(err).__name__}: {where}; {KEPT}"
    return f"unexpected {type(err).__name__}: {_one_line(err)} (a bug: please report it with the log)"


def log_traceback(err: BaseException, log: Path) -> Path | None:
    """Append `err`'s traceback to `log`; the log's path, or None when it cannot be written either."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"--- {datetime.datetime.now().isoformat(timespec='seconds')}\n")
            f.write("".join(traceback.format_exception(err)))
        return log
    except OSError:
        return None
