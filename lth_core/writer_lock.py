"""One writer per outputs folder: a lock that a second main job, or a notebook kernel writing into
the same folder, cannot take while the first holds it.

`claim(folder, what)` takes an exclusive `fcntl.flock` on `<folder>/.writer.lock` and writes
into it who holds it (process id, host, command line, since when); a second claimant gets
`FolderBusyError` naming that process. The kernel releases the lock when the holder's process
ends, however it ends (even SIGKILL), so a lock is never left stale. The holder keeps it for the
rest of its life or until `release`.
"""
import datetime
import fcntl
import os
import socket
import sys
from pathlib import Path

LOCK_NAME = ".writer.lock"
_held: dict[Path, int] = {}  # folder -> fd of the lock this process holds


class FolderBusyError(RuntimeError):
    """Another process writes into the folder."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process (it has not yet said which)"


def claim(folder: Path, what: str) -> None:
    """Make this process the only writer of `folder` (`what`: what it writes there, for the message
    another claimant sees); FolderBusyError naming the holder when another process is one."""
    folder = Path(folder).resolve()
    if folder in _held:
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderBusyError(f"{folder} is being written by {_holder(path)}; wait for it to finish (or stop "
                              "it), then run again: two writers would replace each other's outputs") from None
    since = datetime.datetime.now().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, (f"process {os.getpid()} on {socket.gethostname()} ({what}), running "
                   f"`{' '.join(sys.argv)}` since {since}\n").encode(), 0)
    _held[folder] = fd


def release(folder: Path) -> None:
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)
