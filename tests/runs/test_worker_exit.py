"""A training pool's workers end with the process that started them: a job killed mid-training leaves no
worker training on (and slowing) the cores its rerun needs."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MIDDLE = """
import os, time
from lth_core.runs.parallel import TrainingPool
if __name__ == "__main__":
    pool = TrainingPool(1, 1)
    print(pool._pool.submit(os.getpid).result(), flush=True)  # the worker's pid, its initializer has run
    pool._pool.submit(time.sleep, 120)  # a long training, as far as the worker knows
    time.sleep(120)
"""


def _running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()  # an exited orphan may stay a zombie in a container
    except FileNotFoundError:
        return False


def test_a_worker_ends_within_seconds_of_its_killed_parent(tmp_path):
    script = tmp_path / "middle.py"
    script.write_text(MIDDLE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    middle = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    worker = None
    try:
        worker = int(middle.stdout.readline())
        assert _running(worker)
        middle.send_signal(signal.SIGKILL)  # no cleanup runs: as a killed job
        middle.wait(10)
        deadline = time.time() + 10
        while _running(worker) and time.time() < deadline:
            time.sleep(0.2)
        assert not _running(worker), "the worker kept running after its parent was killed"
    finally:
        middle.kill()
        if worker is not None and _running(worker):
            os.kill(worker, signal.SIGKILL)
