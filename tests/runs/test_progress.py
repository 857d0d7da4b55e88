"""The store-read progress bar: trainings counted from round files, the run in progress named."""
import dataclasses

from conftest import synthetic_dataset
from lth_core.config import IMPConfig, TrainConfig
from lth_core.imp import IMPRunner
from lth_core.runs import lockstep, store
from lth_core.runs.progress import StoreProgress, stored_rounds
from lth_core.runs.lockstep import solo_round

CFG = IMPConfig(rounds=2, controls=("reinit",), train=TrainConfig(iterations=20, batch_size=50, eval_every=10),
                val_size=100)  # trainings per round: 1, 2, 2


def test_progress_counts_the_stored_trainings_and_names_the_run_in_progress():
    other = dataclasses.replace(CFG, seed=1)
    progress = StoreProgress([CFG, other, CFG], desc="test", poll_s=0.01)  # a config listed twice counts once
    assert progress.bar.total == 10 and progress.done() == (0, "")
    data = synthetic_dataset()
    run = store.open_run(CFG, IMPRunner(CFG, data, progress=False))
    runner = IMPRunner(CFG, data, progress=False)
    store.save_round(run, solo_round(runner, run.state))  # round 0: one training
    store.save_round(run, solo_round(runner, run.state))  # round 1: two more
    run.close()
    assert stored_rounds(CFG) == 2 and stored_rounds(other) == 0
    assert progress.done() == (3, f"{store.run_name(CFG)} round 2/2")
    with progress:
        progress.set_label("notebook 1/1 test")
        lockstep.run_cached(other, data, progress=False)
    assert progress.bar.n == 3 + 5 and progress.done()[1] == f"{store.run_name(CFG)} round 2/2"
    lockstep.run_cached(CFG, data, progress=False)
    assert progress.done() == (10, "")  # every run finished: nothing in progress


def test_trainings_in_the_lockstep_process_show_their_iterations_only_when_progress_is_asked(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.setenv("LTH_RUNS_DIR", str(tmp_path))
    data = synthetic_dataset()
    quiet = dataclasses.replace(CFG, rounds=0)
    for fuse in (True, False):
        cfg = dataclasses.replace(quiet, seed=int(fuse))
        assert not lockstep.run_lockstep([cfg], lambda name: data, fuse=fuse, progress=False)
        assert "it/s" not in capsys.readouterr().err
        shown = dataclasses.replace(cfg, seed=2 + int(fuse))
        assert not lockstep.run_lockstep([shown], lambda name: data, fuse=fuse, progress=True)
        err = capsys.readouterr().err
        assert "trainings" in err and "/20 [" in err  # the 20-iteration bar under the trainings bar
