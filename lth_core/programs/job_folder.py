"""The profile folder the main job writes: claimed for one writer, checked writable before any
training starts, and cleared of the temporary files a killed job left half-written.

Writability is checked by writing (and removing) a small probe file in the profile folder and in
the run store: a read-only mount, a folder without write permission or a full disk is reported
before hours of training rather than when the first notebook publishes.
"""
import errno
import os
from pathlib import Path

from lth_core import writer_lock
from lth_core.programs.job_errors import JobError

PROBE_BYTES = 64 * 1024  # more than a full disk's reserve of partly used blocks can take


def check_writable(folder: Path, what: str) -> None:
    """JobError naming `folder` when a file cannot be created, filled and removed there."""
    probe = Path(folder) / f".writable-probe-{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        why = "it is full" if e.errno == errno.ENOSPC else e.strerror
        raise JobError(f"cannot write into {what} {folder} ({why}): make room or make it writable, or point "
                       f"{'LTH_RUNS_DIR' if what == 'the run store' else 'LTH_OUTPUTS_DIR'} at another folder; "
                       "nothing was trained or changed") from e
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def prepare(folder: Path, runs: Path) -> None:
    """Before the first training: check that the run store and `folder` take files, make this process
    `folder`'s only writer, and remove the temporaries a killed writer left there."""
    check_writable(runs, "the run store")
    check_writable(folder, "the outputs folder")
    writer_lock.claim(folder, "the main job")
    for tmp in folder.glob(".*.tmp"):  # no other writer exists now: these are a killed one's
        tmp.unlink(missing_ok=True)
