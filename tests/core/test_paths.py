"""Tests of lth_core.paths: relative LTH_* folders mean the caller's working directory everywhere.

In this process (read after a chdir, and the absolute value written back to os.environ) and in
child processes started in another folder, as papermill starts notebook kernels in notebooks/.
"""
import os
import subprocess
import sys

import pytest

from lth_core import paths

VARIABLES = {  # variable -> the paths function that reads it
    "LTH_OUTPUTS_DIR": paths.outputs_dir,
    "LTH_DATA_DIR": paths.data_root,
    "LTH_RUNS_DIR": paths.runs_dir,
}


@pytest.mark.parametrize("var", VARIABLES)
def test_relative_value_means_the_working_directory_and_is_made_absolute(tmp_path, monkeypatch, var):
    (tmp_path / "caller").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "caller")
    monkeypatch.setenv(var, "rel/folder")
    expected = tmp_path.resolve() / "caller" / "rel" / "folder"
    assert VARIABLES[var]() == expected
    assert os.environ[var] == str(expected)  # what child processes inherit
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert VARIABLES[var]() == expected


def test_outputs_follow_the_outputs_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LTH_OUTPUTS_DIR", "out")
    monkeypatch.delenv("LTH_RUNS_DIR", raising=False)
    out = tmp_path.resolve() / "out"
    assert [paths.runs_dir(), paths.tables_dir(), paths.figures_dir(), paths.executed_notebooks_dir()] \
        == [out / "runs", out / "tables", out / "figures", out / "notebooks"]


def test_absolute_values_are_kept_and_unset_or_empty_mean_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_DATA_DIR", str(tmp_path))
    assert paths.data_root() == tmp_path.resolve()
    monkeypatch.setenv("LTH_DATA_DIR", "")
    assert paths.data_root() == paths.REPO_ROOT / "data"
    monkeypatch.delenv("LTH_OUTPUTS_DIR")
    assert paths.outputs_dir() == paths.REPO_ROOT / "outputs"
    assert "LTH_OUTPUTS_DIR" not in os.environ  # nothing is written for an unset variable


def test_child_started_in_another_folder_sees_the_callers_folders(tmp_path):
    """Like `make reproduce` running papermill: the caller only imports lth_core, then starts a
    process in notebooks/; that process must resolve the relative values as the caller did."""
    caller, kernel_dir = tmp_path / "caller", tmp_path / "notebooks"
    caller.mkdir()
    kernel_dir.mkdir()
    kernel = "from lth_core import paths; print(paths.outputs_dir()); print(paths.data_root()); " \
             "print(paths.CACHE_DIR)"
    parent = ("import subprocess, sys, lth_core.paths; "
              f"subprocess.run([sys.executable, '-c', {kernel!r}], cwd={str(kernel_dir)!r}, check=True)")
    env = {**os.environ, "LTH_OUTPUTS_DIR": "my_outputs", "LTH_DATA_DIR": "../my_data",
           "LTH_CACHE_DIR": "my_cache", "PYTHONPATH": str(paths.REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", parent], cwd=caller, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    root = tmp_path.resolve()
    assert result.stdout.split() == [str(root / "caller" / "my_outputs"), str(root / "my_data"),
                                     str(root / "caller" / "my_cache")]
