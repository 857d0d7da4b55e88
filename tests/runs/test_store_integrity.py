"""The run store checks itself: chained round files, numerics on resume, rows.csv, the lock, repair,
permissions and leftovers of a kill, format 2 runs written before the checks, the open_run API."""
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from conftest import synthetic_dataset
from lth_core import paths
from lth_core.config import IMPConfig, TrainConfig
from lth_core.imp import IMPRunner
from lth_core.runs import lockstep, store
from lth_core.runs.store import CorruptRunError, NumericsChangedError, finish_run, open_run, run_dir, save_round
from lth_core.runs.lockstep import run_cached, solo_round

TINY = TrainConfig(iterations=30, batch_size=50, eval_every=10)
CFG = IMPConfig(network="lenet_300_100", rounds=2, train=TINY, val_size=200)  # one training per round
OTHER = dataclasses.replace(CFG, seed=1)


@pytest.fixture
def trainings(monkeypatch):
    """The number of trainings run so far, as a list to take len() of."""
    calls = []
    real = lockstep.train_job
    monkeypatch.setattr(lockstep, "train_job", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _strip(df):
    return df.drop(columns=["wall_seconds"]).reset_index(drop=True)


def _finished(cfg=CFG):
    return run_cached(cfg, synthetic_dataset(), progress=False)


def _edit_round(cfg, r, change):
    f = run_dir(cfg) / f"round_{r:03d}.pt"
    rec = torch.load(f, weights_only=False)
    change(rec)
    torch.save(rec, f)


def _config_json(cfg=CFG) -> dict:
    return json.loads((run_dir(cfg) / "config.json").read_text())


def _write_config_json(saved, cfg=CFG):
    (run_dir(cfg) / "config.json").write_text(json.dumps(saved))


def _partial(cfg=CFG, rounds_done=1):
    """A run killed after `rounds_done` rounds, stored through the public API."""
    runner = IMPRunner(cfg, synthetic_dataset(), progress=False)
    with open_run(cfg, runner) as run:
        for _ in range(rounds_done):
            save_round(run, solo_round(runner, run.state))


# ---- the chain ----
def test_round_file_copied_from_another_run_is_refused():
    _finished(OTHER)
    _finished()
    shutil.copy(run_dir(OTHER) / "round_001.pt", run_dir(CFG) / "round_001.pt")
    with pytest.raises(CorruptRunError, match=f"round_001.pt belongs to run {store.run_name(OTHER)}, not "
                                              f"{store.run_name(CFG)}"):
        _finished()


def test_round_with_another_predecessor_is_refused():
    _finished()
    _edit_round(CFG, 1, lambda rec: rec.update(prev=hashlib.sha256(b"another round 0").hexdigest()))
    with pytest.raises(CorruptRunError, match="round_001.pt was written after another round_000.pt"):
        _finished()


def test_replaced_round_breaks_the_next_link_and_following_the_advice_recomputes_it(trainings):
    first = _finished()
    _edit_round(CFG, 1, lambda rec: rec["rows"][0].update(test_acc=1.0))  # same name and link, other content
    with pytest.raises(CorruptRunError, match="round_002.pt was written after another round_001.pt") as err:
        _finished()
    # the replaced round is the first that cannot be trusted: the advice deletes it, not only the one after it
    assert err.value.first_bad_round == 1 and "delete round_001.pt, round_002.pt, rows.csv, done.json" in str(err.value)
    store.repair(CFG)
    before = len(trainings)
    pd.testing.assert_frame_equal(_strip(_finished()), _strip(first))
    assert len(trainings) - before == 2


def test_replaced_last_round_is_refused_by_done_json(trainings):
    first = _finished()
    _edit_round(CFG, 2, lambda rec: rec["rows"][0].update(test_acc=99.99))  # no later round vouches for it
    with pytest.raises(CorruptRunError, match="round_002.pt is not the file done.json recorded") as err:
        store.finished_rows(CFG)
    assert err.value.first_bad_round == 2 and "Its rounds 0-1 are intact" in str(err.value)
    store.repair(CFG)
    before = len(trainings)
    pd.testing.assert_frame_equal(_strip(_finished()), _strip(first))
    assert len(trainings) - before == 1  # the last round again, and the forged row is gone with it


def test_a_damaged_done_json_leaves_the_last_round_untrusted():
    _finished()
    (run_dir(CFG) / "done.json").write_bytes(os.urandom(64))
    with pytest.raises(CorruptRunError, match="done.json does not parse .*nothing vouches for round_002.pt") as err:
        store.finished_rows(CFG)
    assert err.value.first_bad_round == 2


def test_replaced_init_breaks_the_link_to_round_0():
    _finished()
    init = run_dir(CFG) / "init.pt"
    torch.save({**torch.load(init, weights_only=False), "note": "another init.pt of this run"}, init)
    with pytest.raises(CorruptRunError, match="round_000.pt was written after another init.pt"):
        _finished()


def test_unchained_round_in_a_chained_run_is_refused():
    _finished()
    _edit_round(CFG, 1, lambda rec: [rec.pop("prev"), rec.pop("run")])
    with pytest.raises(CorruptRunError, match="round_001.pt lacks the run name and chain digest"):
        _finished()


def test_init_of_another_run_is_refused_and_not_repairable():
    _finished(OTHER)
    _finished()
    shutil.copy(run_dir(OTHER) / "init.pt", run_dir(CFG) / "init.pt")
    with pytest.raises(CorruptRunError, match=f"init.pt belongs to run {store.run_name(OTHER)}.*Delete the "
                                              "directory") as err:
        _finished()
    assert err.value.first_bad_round is None
    with pytest.raises(CorruptRunError, match="init.pt belongs"):
        store.repair(CFG)


# ---- damaged rounds and repair ----
def test_damaged_round_names_the_files_to_delete_and_repair_resumes_there(trainings):
    first = _finished()
    d = run_dir(CFG)
    round0 = (d / "round_000.pt").stat().st_mtime_ns
    (d / "round_001.pt").write_bytes((d / "round_001.pt").read_bytes()[:100])
    with pytest.raises(CorruptRunError) as err:
        _finished()
    message = str(err.value)
    assert "round_001.pt does not load" in message and "rounds 0-0 are intact" in message
    assert "delete round_001.pt, round_002.pt, rows.csv, done.json in it" in message
    assert "repair=True" in message and err.value.first_bad_round == 1
    before = len(trainings)
    repaired = run_cached(CFG, synthetic_dataset(), progress=False, repair=True)
    assert len(trainings) - before == 2  # rounds 1 and 2 only
    assert (d / "round_000.pt").stat().st_mtime_ns == round0
    pd.testing.assert_frame_equal(_strip(repaired), _strip(first))
    assert store.repair(CFG) == []  # intact now


def test_repair_deletes_from_the_damaged_round(trainings):
    _finished()
    d = run_dir(CFG)
    (d / "round_002.pt").write_bytes(b"garbage")
    assert store.repair(CFG) == ["round_002.pt", "rows.csv", "done.json"]
    assert sorted(p.name for p in d.glob("round_*.pt")) == ["round_000.pt", "round_001.pt"]
    before = len(trainings)
    assert len(_finished()) == 3 and len(trainings) - before == 1


def test_missing_round_keeps_the_rounds_before_it():
    _finished()
    (run_dir(CFG) / "round_001.pt").unlink()
    with pytest.raises(CorruptRunError, match="not contiguous.*delete round_002.pt, rows.csv, done.json in it"):
        _finished()


def test_done_without_every_round_is_repairable(trainings):
    _finished()
    (run_dir(CFG) / "round_002.pt").unlink()
    with pytest.raises(CorruptRunError, match="done.json exists but only 2 of 3.*delete rows.csv, done.json"):
        _finished()
    before = len(trainings)
    assert len(run_cached(CFG, synthetic_dataset(), progress=False, repair=True)) == 3
    assert len(trainings) - before == 1


# ---- numerics ----
def _now():
    return {"torch": torch.__version__, "device": "cpu", "threads": torch.get_num_threads(), "precision": "float32",
            "cpu_denormals": "flushed", "cpu_kernels": torch.backends.cpu.get_cpu_capability()}


def test_numerics_are_recorded_when_a_run_starts():
    _finished()
    saved = _config_json()
    assert saved["numerics"] == [{**_now(), "from_round": 0}]
    assert saved["format_version"] == store.FORMAT_VERSION and saved["chain_from_round"] == 0


@pytest.mark.parametrize("field, recorded, expected", [
    ("threads", lambda n: n + 1, "torch threads {old} -> {new}"),
    ("torch", lambda v: "1.0.0", "torch version {old} -> {new}"),
    ("device", lambda v: "cuda", "device {old} -> {new}"),
    ("cpu_denormals", lambda v: "kept", "subnormal floats {old} -> {new}"),
    ("cpu_kernels", lambda v: "AVX512" if v != "AVX512" else "AVX2", "CPU kernels {old} -> {new}"),
    ("precision", lambda v: "bf16", "precision {old} -> {new}"),
])
def test_resuming_under_other_numerics_is_refused(field, recorded, expected, trainings):
    _partial()
    saved = _config_json()
    old = saved["numerics"][0][field] = recorded(saved["numerics"][0][field])
    _write_config_json(saved)
    before = len(trainings)
    with pytest.raises(NumericsChangedError) as err:
        _finished()
    message = str(err.value)
    assert expected.format(old=old, new=_now()[field]) in message
    assert "allow_numerics_change=True" in message and "LTH_ALLOW_NUMERICS_CHANGE=1" in message
    assert len(trainings) == before and sorted(p.name for p in run_dir(CFG).glob("round_*")) == ["round_000.pt"]


def test_a_run_recorded_before_denormals_were_flushed_is_refused_on_resume():
    _partial()
    saved = _config_json()
    del saved["numerics"][0]["cpu_denormals"]  # the record of a run started before flushing
    _write_config_json(saved)
    with pytest.raises(NumericsChangedError, match="subnormal floats kept -> flushed"):
        _finished()


def test_allowed_numerics_change_is_recorded(monkeypatch):
    _partial()
    saved = _config_json()
    saved["numerics"][0]["threads"] += 1
    _write_config_json(saved)
    assert len(run_cached(CFG, synthetic_dataset(), progress=False, allow_numerics_change=True)) == 3
    assert _config_json()["numerics"][1] == {**_now(), "from_round": 1, "allowed_by": "allow_numerics_change=True"}

    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(paths.outputs_dir() / "env"))
    _partial(rounds_done=2)
    saved = _config_json()
    saved["numerics"][0]["torch"] = "1.0.0"
    _write_config_json(saved)
    monkeypatch.setenv("LTH_ALLOW_NUMERICS_CHANGE", "1")
    assert len(_finished()) == 3
    assert _config_json()["numerics"][1] == {**_now(), "from_round": 2, "allowed_by": "LTH_ALLOW_NUMERICS_CHANGE=1"}


def test_finished_run_reads_under_any_numerics():
    first = _finished()
    saved = _config_json()
    saved["numerics"][0].update(torch="1.0.0", device="cuda", threads=64)
    _write_config_json(saved)
    pd.testing.assert_frame_equal(_finished(), first)
    with open_run(CFG, None) as run:  # finished: no numerics check, no data needed
        assert run.finished and len(run.state.rows) == 3


def test_a_run_recorded_before_cpu_kernels_were_recorded_resumes():
    _partial()
    saved = _config_json()
    del saved["numerics"][0]["cpu_kernels"]
    _write_config_json(saved)
    assert len(_finished()) == 3


def test_a_run_records_its_precision_and_one_recorded_before_precisions_resumes_as_float32():
    _partial()
    assert _config_json()["numerics"][0]["precision"] == "float32"
    saved = _config_json()
    del saved["numerics"][0]["precision"]  # the record of a run started before there was a precision setting
    _write_config_json(saved)
    assert len(_finished()) == 3
    bf16 = dataclasses.replace(CFG, train=dataclasses.replace(TINY, precision="bf16"))
    assert run_dir(bf16) != run_dir(CFG)  # another precision is another run
    _partial(bf16)
    assert _config_json(bf16)["numerics"][0]["precision"] == "bf16"
    assert " in bf16 with " in store._describe(_config_json(bf16)["numerics"][0])


def test_tf32_on_a_cpu_is_refused_before_the_run_is_written():
    tf32 = dataclasses.replace(CFG, train=dataclasses.replace(TINY, precision="tf32"))
    with pytest.raises(ValueError, match="precision 'tf32' needs a CUDA device"):
        _finished(tf32)
    assert not (run_dir(tf32) / "config.json").exists()


def test_thread_count_matters_only_on_cpu():
    cuda = {"torch": "2.0", "device": "cuda", "threads": 1}
    assert store._differences(cuda, {**cuda, "threads": 8}) == []
    assert store._differences({**cuda, "device": "cpu"}, {**cuda, "device": "cpu", "threads": 8}) != []


# ---- rows.csv ----
def test_rows_csv_is_rebuilt_when_one_row_short_after_done():
    first = _finished()
    path = run_dir(CFG) / "rows.csv"
    full = path.read_text()
    path.write_text("".join(full.splitlines(keepends=True)[:-1]))
    pd.testing.assert_frame_equal(_finished(), first)
    assert path.read_text() == full


def test_kill_between_last_round_file_and_rows_csv(trainings):
    _partial(rounds_done=3)  # every round file, no done.json
    path = run_dir(CFG) / "rows.csv"
    full = path.read_text()
    path.write_text("".join(full.splitlines(keepends=True)[:-1]))  # rows.csv of before the last round
    before = len(trainings)
    assert len(_finished()) == 3 and len(trainings) == before
    assert path.read_text() == full and store.is_done(CFG)


# ---- the lock ----
_SCRIPT_HEAD = """
    import sys, os, time; sys.path.insert(0, {tests!r})
    from conftest import synthetic_dataset
    from lth_core.runs import lockstep, store
    from lth_core.config import IMPConfig, TrainConfig
    cfg = {cfg!r}
    calls = []
    real = lockstep.train_job
    # a pause before each training keeps the run in progress long enough for the other process to overlap
    lockstep.train_job = lambda *a, **k: calls.append(1) or time.sleep({pause}) or real(*a, **k)
"""
_SCRIPT_RUN = """
    rows = lockstep.run_cached(cfg, synthetic_dataset(), progress=False)
    print(f"trainings={{len(calls)}}", flush=True)
    print(rows.drop(columns=["wall_seconds"]).to_json(), flush=True)
"""


def _spawn(tmp_path, name, cfg, middle="", pause=0.0):
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(_SCRIPT_HEAD + middle + _SCRIPT_RUN).format(
        tests=str(paths.REPO_ROOT / "tests"), cfg=cfg, pause=pause))
    # the same numerics and the same lth_core as this process
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()),
               PYTHONPATH=os.pathsep.join([str(paths.REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    return lines[:-2], int(lines[-2].split("=")[1]), lines[-1]  # printed, trainings, rows as JSON


def test_second_process_waits_for_the_first_and_reads_its_rows(tmp_path):
    data = synthetic_dataset()
    runner = IMPRunner(CFG, data, progress=False)
    with open_run(CFG, runner) as run:
        waiter = _spawn(tmp_path, "waiter", CFG, middle="""
    print("busy" if store.open_run(cfg, None, wait=False) is None else "free", flush=True)
""")
        for line in waiter.stderr:  # until it waits for the lock
            if "being computed by another process" in line:
                break
        else:
            pytest.fail(f"the second process never waited for the lock: {_result(waiter)}")
        while not run.finished:
            save_round(run, solo_round(runner, run.state))
        rows = finish_run(run)
    printed, trained, waiter_rows = _result(waiter)
    assert printed == ["busy"] and trained == 0
    assert waiter_rows == _strip(rows).to_json()


def test_two_processes_compute_a_run_once(tmp_path):
    go = tmp_path / "go"
    barrier = f"""
    print("ready", flush=True)
    while not os.path.exists({str(go)!r}):
        time.sleep(0.01)
"""
    procs = [_spawn(tmp_path, f"p{i}", CFG, middle=barrier, pause=1.0) for i in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()  # both start run_cached at once
    results = [_result(p) for p in procs]
    assert sorted(r[1] for r in results) == [0, 3]  # one computed all three rounds, the other none
    assert results[0][2] == results[1][2]


def test_opening_a_run_twice_in_one_process_is_an_error_not_a_deadlock():
    with open_run(CFG, IMPRunner(CFG, synthetic_dataset(), progress=False)):
        for wait in (False, True):  # wait=False first: without the check, wait=True would block forever
            with pytest.raises(RuntimeError, match="already open in this process"):
                open_run(CFG, IMPRunner(CFG, synthetic_dataset(), progress=False), wait=wait)
    open_run(CFG, IMPRunner(CFG, synthetic_dataset(), progress=False)).close()  # released by the with block


# ---- files ----
def test_files_are_created_with_the_umask():
    old = os.umask(0o022)
    try:
        _finished()
        modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir(CFG).iterdir()}
        assert set(modes.values()) == {0o644}, modes
        os.umask(0o027)
        store.atomic_text("x", run_dir(CFG) / "note.txt")
        assert (run_dir(CFG) / "note.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_stale_temporaries_are_removed_when_a_run_is_opened():
    _partial()
    d = run_dir(CFG)
    stale, live = d / ".round_001.pt.dead.tmp", d / ".error.log.live.tmp"
    stale.write_bytes(b"left by a kill")
    live.write_bytes(b"being written")
    os.utime(stale, (store._STARTED - 60, store._STARTED - 60))
    _finished()
    assert not stale.exists() and live.exists()


# ---- runs written before the checks ----
def _make_legacy(cfg=CFG):
    """Strip what this change added, leaving a folder as the format 2 store wrote it before."""
    d = run_dir(cfg)
    saved = _config_json(cfg)
    del saved["numerics"], saved["chain_from_round"]
    _write_config_json(saved, cfg)
    init = torch.load(d / "init.pt", weights_only=False)
    del init["run"]
    torch.save(init, d / "init.pt")
    for f in d.glob("round_*.pt"):
        rec = torch.load(f, weights_only=False)
        del rec["run"], rec["prev"]
        torch.save(rec, f)
    if (d / "done.json").exists():
        (d / "done.json").write_text(json.dumps({"rounds": cfg.rounds + 1, "rows": cfg.rounds + 1}))
    (d / "lock").unlink()


def test_format_2_run_of_before_the_checks_still_reads():
    first = _finished()
    _make_legacy()
    pd.testing.assert_frame_equal(_finished(), first)


def test_a_finished_run_of_before_the_last_round_digest_gets_it_on_first_read():
    first = _finished()
    done = run_dir(CFG) / "done.json"
    done.write_text(json.dumps({"rounds": 3, "rows": 3}))  # as finish_run wrote it before
    pd.testing.assert_frame_equal(store.finished_rows(CFG), first)
    recorded = json.loads(done.read_text())
    last = run_dir(CFG) / "round_002.pt"
    assert recorded["sha256"] == hashlib.sha256(last.read_bytes()).hexdigest() and recorded["rows"] == 3
    _edit_round(CFG, 2, lambda rec: rec["rows"][0].update(test_acc=99.99))  # from then on it vouches for it
    with pytest.raises(CorruptRunError, match="round_002.pt is not the file done.json recorded"):
        store.finished_rows(CFG)


def test_format_2_run_of_before_the_checks_resumes_chained(trainings):
    first = _finished()
    _make_legacy()
    d = run_dir(CFG)
    (d / "round_002.pt").unlink()
    (d / "done.json").unlink()
    before = len(trainings)
    pd.testing.assert_frame_equal(_strip(_finished()), _strip(first))
    assert len(trainings) - before == 1
    saved = _config_json()
    assert saved["chain_from_round"] == 2 and saved["numerics"] == [{**_now(), "from_round": 2}]
    assert "prev" in torch.load(d / "round_002.pt", weights_only=False)
    _edit_round(CFG, 2, lambda rec: [rec.pop("prev"), rec.pop("run")])
    with pytest.raises(CorruptRunError, match="round_002.pt lacks the run name and chain digest"):
        _finished()


# ---- the API for driving rounds from elsewhere ----
def test_open_run_save_round_finish_run_store_what_run_cached_does(monkeypatch):
    runner = IMPRunner(CFG, synthetic_dataset(), progress=False)
    with open_run(CFG, runner) as run:
        with pytest.raises(ValueError, match="rounds 0-2 still to compute"):
            finish_run(run)
        after0 = solo_round(runner, run.state)
        with pytest.raises(ValueError, match="needs the state after round 0"):
            save_round(run, solo_round(runner, after0))
        save_round(run, after0)
        while not run.finished:
            save_round(run, solo_round(runner, run.state))
        driven = finish_run(run)
    with pytest.raises(RuntimeError, match="was closed"):
        save_round(run, run.state)
    files = sorted(p.name for p in run_dir(CFG).iterdir())
    monkeypatch.setenv("LTH_OUTPUTS_DIR", str(paths.outputs_dir() / "cached"))
    cached = _finished()
    pd.testing.assert_frame_equal(_strip(driven), _strip(cached))
    assert sorted(p.name for p in run_dir(CFG).iterdir()) == files
    assert pd.read_csv(run_dir(CFG) / "rows.csv").shape == (3, len(cached.columns) - 1)


def test_open_run_without_a_runner_refuses_an_unfinished_run():
    with pytest.raises(ValueError, match="needs its IMPRunner"):
        open_run(CFG, None)
    open_run(CFG, IMPRunner(CFG, synthetic_dataset(), progress=False)).close()  # the refusal released the lock


def test_another_gpu_model_is_a_numerics_change_and_runs_recorded_without_one_are_not():
    h100 = {"torch": "2.0", "device": "cuda", "threads": 1, "gpu": "NVIDIA H100 80GB HBM3"}
    assert store._differences(h100, {**h100, "gpu": "NVIDIA A100-SXM4-40GB"}) == [
        "GPU NVIDIA H100 80GB HBM3 -> NVIDIA A100-SXM4-40GB"]
    assert store._differences(h100, dict(h100)) == []
    recorded_before = {k: v for k, v in h100.items() if k != "gpu"}
    assert store._differences(recorded_before, h100) == []
    assert "(NVIDIA H100 80GB HBM3)" in store._describe(h100)
