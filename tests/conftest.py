"""Shared fixtures: a synthetic learnable dataset, the offline data folder, tmp outputs and data-cache dirs, the main job's tiny project and its error line."""
import os
from pathlib import Path

import pytest
import torch

from lth_core import paths
from lth_core.data import Dataset


def shared_data_dir() -> Path | None:
    """LTH_DATA_DIR if set, else ../shared/data beside the repo; None when absent."""
    candidates = [os.environ.get("LTH_DATA_DIR"), paths.REPO_ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "MNIST" / "raw").is_dir():
            return Path(c)
    return None


@pytest.fixture
def shared_data():
    d = shared_data_dir()
    if d is None:
        pytest.skip("offline datasets not found: set LTH_DATA_DIR or put ../shared/data beside the repo")
    return d


def synthetic_dataset(name: str = "mnist", n_train: int = 900, n_test: int = 200, seed: int = 0) -> Dataset:
    """Random images whose class sets the brightness of one image band: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, 28, 28) if name == "mnist" else (3, 32, 32)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.randint(0, 80, (n, *shape), generator=g, dtype=torch.uint8)
        rows = shape[1] // 10
        for c in range(10):
            sel = y == c
            x[sel, :, c * rows:(c + 1) * rows, :] += 150
        return x, y

    (tx, ty), (sx, sy) = make(n_train), make(n_test)
    return Dataset(name=name, train_x=tx, train_y=ty, test_x=sx, test_y=sy)


@pytest.fixture(autouse=True)
def tmp_outputs(tmp_path, monkeypatch):
    """Every test writes its outputs into its own tmp folder, never the repo's outputs/."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(out))
    monkeypatch.delenv("LTH_RUNS_DIR", raising=False)  # a user's run store must not receive test runs
    monkeypatch.setenv("LTH_DOWNLOAD", "0")  # no test reaches the internet (download tests serve 127.0.0.1)
    return out


@pytest.fixture(scope="session")
def _session_data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture(autouse=True)
def tmp_data_cache(_session_data_cache, monkeypatch):
    """The decoded-data cache of this test session, never the user's data/ (a cache written from a test's
    data root would win over the user's data root later). Kernels started by tests read LTH_CACHE_DIR."""
    monkeypatch.setattr(paths, "CACHE_DIR", _session_data_cache)
    monkeypatch.setenv("LTH_CACHE_DIR", str(_session_data_cache))
    return _session_data_cache


def run_in_memory(runner):
    """Every round of `runner`'s run in memory, one training at a time (the round driver's `solo_round`);
    the last state."""
    from lth_core.runs.lockstep import solo_round
    state = runner.initial_state()
    while state.round <= runner.cfg.rounds:
        state = solo_round(runner, state)
    return state


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The main job's tiny project (tests/jobs/tiny_project.py) installed in this process; its notebooks folder."""
    import tiny_project  # tests/jobs is on the path of the tests that use it
    return tiny_project.install_in_test(tmp_path, monkeypatch)


@pytest.fixture
def error_line(capsys):
    """Reads what the job printed to stderr and returns its one `error:` line (failing if not exactly one)."""
    def read() -> str:
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, err[-2000:]
        return lines[0]
    return read
