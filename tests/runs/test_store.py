import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

from conftest import synthetic_dataset
from lth_core import config, paths
from lth_core.runs import lockstep, store
from lth_core.config import IMPConfig, TrainConfig
from lth_core.runs.store import CorruptRunError, atomic_text, config_hash, finished_rows, run_dir
from lth_core.runs.lockstep import run_cached

TINY = TrainConfig(iterations=30, batch_size=50, eval_every=10)
CFG = IMPConfig(network="lenet_300_100", rounds=2, train=TINY, val_size=200)


def test_hashes_are_pinned():
    # changing these breaks every user's cache: only ever add options with defaults
    assert config_hash(IMPConfig()) == "44136fa355b3"
    assert config_hash(CFG) == "923d7cf7506d"
    assert config_hash(config.paper_config("conv2")) == "a4a5d11ce9f7"


def test_new_option_with_default_keeps_old_hashes():
    @dataclasses.dataclass(frozen=True)
    class Extended(IMPConfig):
        some_new_option: float = 0.5

    assert config_hash(Extended(**dataclasses.asdict(CFG) | {"train": TINY})) == config_hash(CFG)
    assert config_hash(Extended(**dataclasses.asdict(CFG) | {"train": TINY}, some_new_option=1.0)) != config_hash(CFG)


def test_hash_depends_on_every_value():
    assert config_hash(dataclasses.replace(CFG, seed=1)) != config_hash(CFG)
    assert config_hash(dataclasses.replace(CFG, train=dataclasses.replace(TINY, lr=2e-3))) != config_hash(CFG)


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path):
    target = tmp_path / "f.txt"
    atomic_text("old", target)

    def boom(tmp):
        open(tmp, "w").write("half-writ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(target, boom)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def _strip(df):
    return df.drop(columns=["wall_seconds"]).reset_index(drop=True)


def test_cache_hit_does_no_training(monkeypatch):
    calls = []
    real = lockstep.train_job
    monkeypatch.setattr(lockstep, "train_job", lambda *a, **k: calls.append(1) or real(*a, **k))
    data = synthetic_dataset()
    first = run_cached(CFG, data, progress=False)
    n = len(calls)
    assert n == 3 and len(first) == 3
    again = run_cached(CFG, data, progress=False)
    assert len(calls) == n
    pd.testing.assert_frame_equal(first, again)
    files = sorted(p.name for p in run_dir(CFG).iterdir())
    assert files == ["config.json", "done.json", "init.pt", "lock", "round_000.pt", "round_001.pt", "round_002.pt",
                     "rows.csv"]
    assert json.loads((run_dir(CFG) / "config.json").read_text())["non_default"]["rounds"] == 2


def test_resume_after_kill_equals_uninterrupted(tmp_path, tmp_outputs):
    cfg = dataclasses.replace(CFG, rounds=3, train=dataclasses.replace(TINY, iterations=200))
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(paths.REPO_ROOT / 'tests')!r})
        from conftest import synthetic_dataset
        from lth_core.runs.lockstep import run_cached
        from lth_core.config import IMPConfig
        from lth_core.config import TrainConfig
        cfg = {cfg!r}
        run_cached(cfg, synthetic_dataset(), progress=False)
    """))
    # the resume below runs in this process: the store refuses to resume under another CPU thread count
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    d = run_dir(cfg)
    deadline = time.time() + 300
    while not (d / "round_001.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "worker ended before round 1 was stored"
        time.sleep(0.05)
    time.sleep(0.3)  # into round 2's training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (d / "done.json").exists()
    finished = len(list(d.glob("round_*.pt")))
    assert 2 <= finished <= 3

    calls = []
    real = lockstep.train_job
    lockstep.train_job = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        resumed = run_cached(cfg, synthetic_dataset(), progress=False)
    finally:
        lockstep.train_job = real
    assert len(calls) == 4 - finished  # only the unfinished rounds trained again

    os.environ["LTH_OUTPUTS_DIR"] = str(tmp_path / "fresh")
    straight = run_cached(cfg, synthetic_dataset(), progress=False)
    pd.testing.assert_frame_equal(_strip(resumed), _strip(straight))


def test_corrupt_round_file_is_reported():
    run_cached(CFG, synthetic_dataset(), progress=False)
    f = run_dir(CFG) / "round_001.pt"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CorruptRunError, match="round_001.pt does not load.*Delete the directory"):
        run_cached(CFG, synthetic_dataset(), progress=False)


def test_missing_round_is_reported():
    run_cached(CFG, synthetic_dataset(), progress=False)
    (run_dir(CFG) / "round_001.pt").unlink()
    with pytest.raises(CorruptRunError, match="not contiguous"):
        run_cached(CFG, synthetic_dataset(), progress=False)


def test_config_mismatch_is_reported():
    run_cached(CFG, synthetic_dataset(), progress=False)
    p = run_dir(CFG) / "config.json"
    saved = json.loads(p.read_text())
    saved["config"]["seed"] = 7
    p.write_text(json.dumps(saved))
    with pytest.raises(CorruptRunError, match="different configuration"):
        run_cached(CFG, synthetic_dataset(), progress=False)


def test_run_of_an_older_store_format_is_reported():
    run_cached(CFG, synthetic_dataset(), progress=False)
    p = run_dir(CFG) / "config.json"
    saved = json.loads(p.read_text())
    saved["format_version"] = 1  # masks stored as torch parametrizations
    p.write_text(json.dumps(saved))
    with pytest.raises(CorruptRunError, match="store format 1, and this lth_core reads format 2.*Delete"):
        run_cached(CFG, synthetic_dataset(), progress=False)


def test_every_training_curve_is_stored_and_read_back_as_a_table(tmp_path):
    cfg = IMPConfig(rounds=1, controls=("reinit",), train=TrainConfig(iterations=40, batch_size=50, eval_every=10),
                    val_size=100)
    from conftest import synthetic_dataset
    rows = run_cached(cfg, synthetic_dataset(), progress=False)
    curves = store.curves_frame(cfg)
    # 3 trainings (round 0 ticket, round 1 ticket and control), 4 evaluations each
    assert len(curves) == 3 * 4 and set(curves["run"]) == {store.run_name(cfg)}
    assert list(curves.columns) == ["run", "round", "kind", "trained_on", "iteration", "val_loss", "val_acc",
                                    "train_loss", "lr", "test_acc"]
    per = curves.groupby(["round", "kind", "trained_on"])
    assert set(per.groups) == {(r["round"], r["kind"], r["trained_on"]) for _, r in rows.iterrows()}
    for (r, kind, split), c in per:  # the row's early-stopping point is the curve's best validation loss
        row = rows[(rows["round"] == r) & (rows["kind"] == kind) & (rows["trained_on"] == split)].iloc[0]
        assert c.loc[c["val_loss"].idxmin(), "iteration"] == row["es_iteration"]
        assert list(c["iteration"]) == [10, 20, 30, 40] and (c["lr"] == cfg.train.lr).all()


def test_rounds_stored_before_curves_were_kept_still_read(tmp_path):
    cfg = IMPConfig(rounds=0, train=TrainConfig(iterations=20, batch_size=50, eval_every=10), val_size=100)
    from conftest import synthetic_dataset
    run_cached(cfg, synthetic_dataset(), progress=False)
    path = run_dir(cfg) / "round_000.pt"
    rec = torch.load(path, weights_only=False)
    del rec["curves"]
    torch.save(rec, path)  # an older round file; its chain digest now differs, so the run is read as unchained
    cfg_json = json.loads((run_dir(cfg) / "config.json").read_text())
    cfg_json.pop("chain_from_round", None)
    (run_dir(cfg) / "config.json").write_text(json.dumps(cfg_json))
    (run_dir(cfg) / "done.json").write_text(json.dumps({"rounds": 1, "rows": 1}))  # before it held a digest
    assert store.curves_frame(cfg).empty and len(finished_rows(cfg)) == 1
