"""A short real IMP run on the offline MNIST (skipped where ../shared/data is absent)."""
import pytest

from lth_core.data import load_dataset
from lth_core.config import paper_config

from lth_core.runs.lockstep import run_cached


def test_lenet_imp_on_real_mnist(shared_data, monkeypatch):
    monkeypatch.setenv("LTH_DATA_DIR", str(shared_data))
    cfg = paper_config("lenet_300_100", rounds=1, iterations=1000, eval_every=100, retrain_on=("half2",),
                       find_on="half1")
    rows = run_cached(cfg, load_dataset("mnist"), progress=False)
    dense = rows[(rows["round"] == 0) & (rows["trained_on"] == "half1")].iloc[0]
    assert dense["test_acc"] >= 95.0, dense
    assert rows["pct_remaining"].tolist() == [100.0, 100.0] + [pytest.approx(100 * 213_060 / 266_200)] * 2
    pruned_s2 = rows[(rows["round"] == 1) & (rows["trained_on"] == "half2")].iloc[0]
    assert pruned_s2["test_acc"] >= 95.0  # a 20%-pruned ticket found on S1 still trains on unseen S2
