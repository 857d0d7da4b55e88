"""The main job against files it did not write and signals it did not expect: manifest entries and
profile names that point outside its folders, forged round files and shared tables, manifest records of
the wrong type, profiles no one means, and SIGTERM / SIGINT sent to its process group as Slurm sends them.
Each ends in one `error:` line naming the file or value at fault, and nothing outside its folders changes.

Runs the tiny project of `tiny_project.py` (one notebook, tiny LeNet runs on synthetic data)."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import tiny_project
from lth_core import paths
from lth_core.programs import reproduce
from lth_core.report.results_page import write_results_page
from lth_core.runs import store

CLI = ["--profile", "t", "--device", "cpu", "-o", "fuse=false"]




def _manifest_path() -> Path:
    return reproduce.profile_dir("t") / "manifest.json"


def _edit_manifest(change) -> None:
    manifest = json.loads(_manifest_path().read_text())
    change(manifest["notebooks"]["01_t"])
    _manifest_path().write_text(json.dumps(manifest))


# ---- nothing outside its folders ----
@pytest.mark.parametrize("entry", ["../../victim.txt", "ABSOLUTE", "tables/../../victim.txt", "victim.txt"])
def test_a_manifest_entry_outside_the_outputs_folder_is_refused_and_nothing_deleted(tiny, tmp_path, entry, capsys, error_line):
    assert reproduce.main(CLI) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("not the job's")
    name = str(victim) if entry == "ABSOLUTE" else entry
    _edit_manifest(lambda record: record["published"]["files"].update({name: "0" * 64}))
    capsys.readouterr()
    assert reproduce.main([*CLI, "--force"]) == 1
    line = error_line()
    assert f"{_manifest_path()} is damaged" in line and repr(name) in line and "delete it and run again" in line
    assert victim.read_text() == "not the job's"


@pytest.mark.parametrize("profile", ["/abs/dir/evil", "../../../dir/evil", "..", ".hidden"])
def test_a_profile_name_that_is_a_path_is_refused(tiny, tmp_path, profile, capsys, error_line):
    evil = tmp_path / "dir"
    evil.mkdir()
    (evil / "evil.yaml").write_text("seeds: [0]\n")
    assert reproduce.main(["--profile", profile.replace("/abs", str(tmp_path)), "--device", "cpu"]) == 1
    line = error_line()
    assert "is not a profile name (a name, not a path" in line and "valid profiles: t" in line, line
    assert sorted(p.name for p in evil.iterdir()) == ["evil.yaml"] and not paths.outputs_dir().exists()


def test_the_run_store_guard_compares_resolved_folders(tiny, monkeypatch, capsys, error_line):
    monkeypatch.setenv("LTH_RUNS_DIR", str(paths.outputs_dir() / "runs" / ".." / "t"))
    assert reproduce.main(CLI) == 1
    assert "profile 't' would write into the run store" in error_line()


def test_a_published_file_changed_since_is_not_deleted(tiny, capsys):
    (tiny / "params" / "t.yaml").write_text("seeds: [0]\n")
    assert reproduce.main(CLI) == 0
    folder = reproduce.profile_dir("t")
    # an earlier publication's file the notebook no longer writes, which someone has edited since
    (folder / "tables" / "old.csv").write_text("edited by hand\n")
    _edit_manifest(lambda record: record["published"]["files"].update({"tables/old.csv": "0" * 64}))
    assert reproduce.main([*CLI, "--force"]) == 0
    assert (folder / "tables" / "old.csv").read_text() == "edited by hand\n"
    assert "it is not the file the manifest records as published" in capsys.readouterr().out


# ---- every file it trusts is checked ----
def test_a_replaced_last_round_file_is_refused_and_never_published(tiny, capsys, error_line):
    assert reproduce.main(CLI) == 0
    [cfg] = tiny_project.configs_from_parameters({"seeds": [0]})
    last = store.run_dir(cfg) / "round_001.pt"
    rec = torch.load(last, weights_only=False)
    for row in rec["rows"]:
        row["test_acc"] = 99.99
    torch.save(rec, last)  # same keys, run name and chain link: only done.json's digest tells
    capsys.readouterr()
    assert reproduce.main([*CLI, "--force"]) == 1
    line = error_line()
    assert str(store.run_dir(cfg)) in line and "round_001.pt is not the file done.json recorded" in line, line
    assert "delete round_001.pt, rows.csv, done.json" in line
    published = pd.read_csv(reproduce.profile_dir("t") / "tables" / "tiny.csv")
    assert 99.99 not in set(published["test_acc"])


@pytest.mark.parametrize("record", ["done", {"status": "done", "published": {"files": None, "fingerprint": "x"}},
                                    {"status": "done", "published": {"files": {"tables/tiny.csv": 1},
                                                                     "fingerprint": "x"}}])
def test_a_manifest_record_of_the_wrong_type_gives_the_damaged_manifest_line(tiny, record, capsys, error_line):
    folder = reproduce.profile_dir("t")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"notebooks": {"01_t": record}}))
    assert reproduce.main(CLI) == 1
    line = error_line()
    assert f"{folder / 'manifest.json'} is damaged (the record of 01_t" in line and "delete it and run again" in line


def test_a_damaged_shared_table_is_named_and_rebuilt(tmp_path, monkeypatch, capsys):
    """Two notebooks each add their row to tables/claims.csv; replaced by random bytes, it is named, not
    read, and rebuilt with both rows by the next plain run."""
    nbs = tmp_path / "nbs"
    (nbs / "params").mkdir(parents=True)
    params = 'device: str = "auto"\nexecutor: str = "local"\nexecutor_options: dict = {}\n'
    for name in ("01_a", "02_b"):
        tiny_project.write_notebook(nbs, name, params, f'''paths.tables_dir().mkdir(parents=True, exist_ok=True)
table = paths.tables_dir() / "claims.csv"
rows = set(table.read_text().splitlines()[1:]) if table.exists() else set()
table.write_text("\\n".join(["notebook", *sorted(rows | {{{name!r}}})]) + "\\n")
''')
    (nbs / "params" / "p.yaml").write_text("{}\n")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", nbs)
    monkeypatch.setattr(paths, "PARAMS_DIR", nbs / "params")
    assert reproduce.main(["--profile", "p", "--device", "cpu"]) == 0
    claims = reproduce.profile_dir("p") / "tables" / "claims.csv"
    assert claims.read_text() == "notebook\n01_a\n02_b\n"
    claims.write_bytes(os.urandom(256) + b"\xff\xfe")
    capsys.readouterr()
    assert reproduce.main(["--profile", "p", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{claims} is not the file any notebook published (damaged or edited)" in out
    assert claims.read_text() == "notebook\n01_a\n02_b\n"  # both notebooks ran again, each adding its row


def test_the_results_page_names_a_damaged_claims_table(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "claims.csv").write_bytes(b"\xff\xfe\x00garbage\x81")
    (tmp_path / "manifest.json").write_text(json.dumps({"notebooks": {}}))
    page = write_results_page(tmp_path / "manifest.json").read_text()
    assert "tables/claims.csv could not be read (UnicodeDecodeError" in page and "rebuilds it" in page


# ---- signals, sent to the job's process group as Slurm sends them ----
def _wait_for(condition, job, what: str) -> None:
    deadline = time.time() + 300
    while not condition():
        assert job.poll() is None and time.time() < deadline, f"the job ended before {what}"
        time.sleep(0.05)


def _status() -> str | None:
    try:
        return json.loads(_manifest_path().read_text())["notebooks"]["01_t"]["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.parametrize("sig, phase", [(signal.SIGTERM, "notebook"), (signal.SIGINT, "notebook"),
                                        (signal.SIGTERM, "training")])
def test_a_signal_to_the_process_group_ends_the_job_with_one_line(tiny, sig, phase):
    if phase == "training":  # enough runs that the job is still training when the first one has started
        (tiny / "params" / "t.yaml").write_text("seeds: [0, 1, 2, 3, 4, 5]\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([sys.executable, str(Path(tiny_project.__file__)), str(tiny), *CLI], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if phase == "notebook":
            _wait_for(lambda: _status() == "running", job, "its notebook started")
        else:
            _wait_for(lambda: any(paths.runs_dir().glob("*/init.pt")), job, "it started training")
        os.killpg(job.pid, sig)
        assert job.wait(timeout=120) == 128 + sig
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    lines = [line for line in job.stderr.read().splitlines() if line.startswith("error:")]
    where = "notebook 01_t was executing" if phase == "notebook" else "training the runs of 01_t"
    assert len(lines) == 1 and f"interrupted by {sig.name} while {where}; run the same command" in lines[0], lines
    folder = reproduce.profile_dir("t")
    assert "Interrupted" in (folder / "reproduce.log").read_text()
    record = json.loads(_manifest_path().read_text())["notebooks"]["01_t"]
    assert record["status"] == "interrupted" and sig.name in record["error"]
    assert not (folder / "notebooks" / "01_t.ipynb").exists()  # nothing called done
    page = (folder / "index.html").read_text()
    assert "interrupted" in page and f"interrupted by {sig.name}" in page


# ---- values no one means ----
def test_a_profile_setting_a_key_twice_or_not_utf8_is_named(tiny, capsys, error_line):
    profile = tiny / "params" / "t.yaml"
    profile.write_text("seeds: [0]\nfail: false\nseeds: [1]\n")
    assert reproduce.main(CLI) == 1
    assert f"{profile} sets `seeds` twice (lines 1 and 3): keep one" in error_line()
    profile.write_bytes(b"seeds: [0]\n# r\xe9sum\xe9\n")
    assert reproduce.main(CLI) == 1
    assert f"{profile} is not UTF-8 text (byte 0xe9 at offset 14): save it as UTF-8" in error_line()
    assert not paths.outputs_dir().exists()


def _huge_profile(tmp_path, monkeypatch, text: str) -> None:
    params = tmp_path / "params"
    params.mkdir(exist_ok=True)
    (params / "huge.yaml").write_text(text)
    monkeypatch.setattr(paths, "PARAMS_DIR", params)


def _paper_with_seeds(n: int) -> str:
    """The paper profile with `n` seeds."""
    lines = (paths.PARAMS_DIR / "paper.yaml").read_text().splitlines()
    return "\n".join(f"seeds: {list(range(n))}" if line.startswith("seeds:") else line for line in lines) + "\n"


@pytest.mark.parametrize("what", ["a 10^12-iteration budget, priced at the fastest shipped figure",
                                  "the paper's budgets with 5,001 seeds, at this CPU's benchmark"])
def test_a_budget_no_profile_could_finish_is_refused_before_training(tmp_path, monkeypatch, what, capsys, error_line):
    if what.startswith("a 10^12"):
        _huge_profile(tmp_path, monkeypatch, "lenet_iterations: 1000000000000\n")
    else:
        _huge_profile(tmp_path, monkeypatch, _paper_with_seeds(5001))
        paths.tables_dir().mkdir(parents=True)
        pd.DataFrame([{"network": n, "device": "cpu", "K": 1, "solo ms/model-step": 2.0, "fused ms/model-step": 2.0}
                      for n in ("lenet_300_100", "conv2", "shufflenet")]).to_csv(paths.tables_dir() / "benchmark.csv")
    assert reproduce.main(["--profile", "huge", "--device", "cpu", "-o", "fuse=false"]) == 1
    line = error_line()
    assert "profile 'huge' projects to" in line and "more than 8,766 (a year: --max-hours)" in line, line
    assert str(tmp_path / "params" / "huge.yaml") in line and "trainings of" in line
    assert not reproduce.profile_dir("huge").exists() and not paths.runs_dir().exists()  # nothing trained


def test_max_hours_lets_a_long_profile_through_the_bound(tmp_path, monkeypatch):
    _huge_profile(tmp_path, monkeypatch, "lenet_iterations: 1000000000000\n")
    name = "01_trainability_unseen"
    configs = reproduce.STUDIES[name].configs_from_parameters(
        reproduce.notebook_parameters(name, reproduce.load_profile("huge")))
    reproduce._check_cost("huge", {name: configs}, "cpu", {"fuse": False}, math.inf)  # no error
    with pytest.raises(ValueError, match="projects to"):
        reproduce._check_cost("huge", {name: configs}, "cpu", {"fuse": False}, reproduce.YEAR_HOURS)


def test_estimate_prints_the_hours_it_can_and_says_why_not_for_the_rest(tmp_path, capsys):
    bench = tmp_path / "bench.csv"
    pd.DataFrame([{"network": "lenet_300_100", "device": "cpu", "K": 1, "solo ms/model-step": 2.0,
                   "fused ms/model-step": 2.0}]).to_csv(bench, index=False)
    assert reproduce.main(["--profile", "smoke", "--device", "cpu", "--estimate", "--benchmark", str(bench),
                           "-o", "fuse=false"]) == 0
    total = capsys.readouterr().out.splitlines()[-1]
    assert "n/a" not in total and " hours for the rest and no hours for conv2, shufflenet" in total, total
    assert f"{bench} has no figures for them on cpu (run `make benchmark`" in total
