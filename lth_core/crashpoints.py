"""The points where the main job writes a file, numbered so that a test can kill it at each one in turn.

Every file write of the run store and of the main job calls `reached(what)` just before it changes
what a reader sees: an atomic write between its temp file and the rename onto the file, a move
into place, a removal. Two environment variables,
read once when this module is imported, drive it (tests only; unset, `reached` does nothing):
- `LTH_KILL_AT_WRITE=N`: the process SIGKILLs itself at its Nth point, before that write, as a
  `kill -9` would stop it;
- `LTH_WRITE_LOG=<file>`: each point appends a line naming it, so a test learns how many there are.
Both are removed from os.environ when read, so that notebook kernels and worker processes (which
write into their own work folders) are never killed by a count meant for the main job.
"""
import os
import signal

KILL_ENV, LOG_ENV = "LTH_KILL_AT_WRITE", "LTH_WRITE_LOG"

# SIGKILL at the _kill_at-th point (0: never), log each to _log; _count: points reached so far
_kill_at, _log, _count = int(os.environ.pop(KILL_ENV, "0") or 0), os.environ.pop(LOG_ENV, None), 0


def reached(what: str) -> None:
    """Count one write point (`what`: the file and the step, for the log)."""
    global _count
    if not _kill_at and not _log:
        return
    _count += 1
    if _log:
        with open(_log, "a") as f:
            f.write(f"{_count}\t{what}\n")
    if _count == _kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
