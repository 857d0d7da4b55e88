"""`reproduce --estimate`: the profile's trainings counted from the code, hours from benchmark figures."""
import pandas as pd
import pytest

from lth_core.config import paper_config
from lth_core.programs import reproduce
from lth_core.studies import catalog
from lth_core.studies.unseen import unseen_config
from lth_core.imp import trainings_per_run


def _bench(tmp_path, device="cpu"):
    rows = [{"network": n, "device": device, "K": k, "solo ms/model-step": 2.0, "fused ms/model-step": 2.0 / k}
            for n in ("lenet_300_100", "conv2", "shufflenet") for k in (1, 4)]
    path = tmp_path / "benchmark.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_paper_profile_counts_every_training_of_every_notebook(tmp_path):
    table = reproduce.estimate("paper", "cpu", benchmark_csv=_bench(tmp_path))
    by_net = table.groupby("network")["trainings"].sum()
    # Figure 1, Figures 2-3 (under both budget protocols) and Figure 4 at Table 1's settings, 3 seeds, every round
    assert by_net.to_dict() == {"lenet_300_100": 735 + 513, "conv2": 618 + 432, "shufflenet": 507}
    fixed = table[table["notebook"] != "02_faster_tickets"]
    assert (fixed["iterations"] == fixed["trainings"] * 30_000).all()
    # LeNet's 20 epochs of its own rows: 11,000 iterations on the 55,000-row pool, 440 on 4% of it; per seed and
    # level the 4/10/20/40% runs find on their subset and retrain on the pool, the 100% run trains once
    per_level = (440 + 1100 + 2200 + 4400) + 5 * 11_000
    lenet = table[(table["notebook"] == "02_faster_tickets") & (table["network"] == "lenet_300_100")].iloc[0]
    assert lenet["iterations"] == 513 * 30_000 + per_level * 19 * 3
    smoke = reproduce.estimate("smoke", "cpu", benchmark_csv=_bench(tmp_path))
    cfgs = catalog.STUDIES["01_trainability_unseen"].configs_from_parameters(
        catalog.notebook_parameters("01_trainability_unseen", {}))
    assert smoke.iloc[0]["trainings"] == sum(trainings_per_run(c) for c in cfgs if c.network == "lenet_300_100")


def test_hours_follow_the_benchmark_and_the_fusion_setting(tmp_path):
    solo = reproduce.estimate("smoke", "cpu", {"fuse": False}, benchmark_csv=_bench(tmp_path))
    fused = reproduce.estimate("smoke", "cpu", {"fuse": True}, benchmark_csv=_bench(tmp_path))
    assert (solo["ms/model-step"] == 2.0).all() and (solo["K"] == 1).all()
    assert (fused["K"] >= 1).all() and (fused["hours"] <= solo["hours"]).all()
    assert fused["hours"].iloc[0] == pytest.approx(solo["hours"].iloc[0] * fused["ms/model-step"].iloc[0] / 2.0)
    gpu = reproduce.estimate("smoke", "cuda", benchmark_csv=_bench(tmp_path))  # no benchmark rows for cuda
    assert gpu["hours"].isna().all() and (gpu["device"] == "cuda").all()


def test_cpu_workers_share_the_hours(tmp_path):
    solo = reproduce.estimate("smoke", "cpu", {"fuse": False}, benchmark_csv=_bench(tmp_path))
    workers = reproduce.estimate("smoke", "cpu", {"workers": 2}, benchmark_csv=_bench(tmp_path))
    assert (workers["workers"] == 2).all() and (solo["workers"] == 1).all()
    assert list(workers["hours"]) == pytest.approx(list(solo["hours"] / 2))


def test_a_training_with_patience_is_expected_to_stop_after_the_papers_early_stop_in_epochs():
    # Conv-2: the paper's 4,500 iterations on 45,000 images at batch 200 are 20 epochs; on the pool that is
    # 4,500 again, and 10 evaluations of patience (every 100) add 1,000
    dense = paper_config("conv2", rounds=0, find_on="all", retrain_on=("all",), patience=10)
    assert reproduce._expected_iterations(dense) == (5_500, "early stop at 20 epochs (paper) + patience")
    capped = paper_config("conv2", rounds=0, find_on="all", retrain_on=("all",), patience=10, iterations=5_000)
    assert reproduce._expected_iterations(capped)[0] == 5_000  # the budget comes first
    # Figure 1's dense ticket, trained on each 22,500-image half: half the iterations to its early stop
    assert reproduce._expected_iterations(unseen_config("conv2", rounds=0, patience=10))[0] == 2 * (2_250 + 1_000)
    assert reproduce._expected_iterations(unseen_config("conv2", rounds=0)) == (60_000, "full budget (no patience)")
    shufflenet = paper_config("shufflenet", rounds=0, patience=10)
    assert reproduce._expected_iterations(shufflenet)[1] == "full budget (no expected early stop for shufflenet)"


def test_the_hours_are_those_of_the_expected_iterations(tmp_path):
    table = reproduce.estimate("cifar", "cpu", {"fuse": False, "workers": 1}, benchmark_csv=_bench(tmp_path))
    figure1 = table.iloc[0]
    assert figure1["expected iterations"] < figure1["iterations"] / 5
    # 65,000 steps and a validation pass of 25 batches (a third of a step each) every 100, at 2 ms a step
    steps = figure1["expected iterations"] * (1 + 25 / 100 / 3)
    assert figure1["expected iterations"] == 65_000 and figure1["hours"] == pytest.approx(steps * 2.0 / 3.6e6)
