"""IMPConfig, TrainConfig and paper_config reject values outside their ranges when built, before any
data loads or round trains (these used to fail after round 0, at the first evaluation, or not at all)."""
import pytest

from lth_core.config import IMPConfig, paper_config
from lth_core.config import TrainConfig


@pytest.mark.parametrize("network", ["lenet_300_100", "conv2", "shufflenet"])
@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1])
def test_paper_config_rejects_a_prune_rate_outside_0_1(network, rate):
    with pytest.raises(ValueError, match=rf"prune_rate must be a number in \[0, 1\), got {rate}"):
        paper_config(network, prune_rate=rate)


@pytest.mark.parametrize("over,match", [
    ({"output_rate": 1.0}, r"output_rate must be a number in \[0, 1\), got 1.0"),
    ({"val_size": 0}, r"val_size must be in \[1, 60000\) for mnist, got 0"),
    ({"val_size": 60_000}, r"val_size must be in \[1, 60000\) for mnist, got 60000"),
    ({"network": "conv2", "val_size": 50_000}, r"val_size must be in \[1, 50000\) for cifar10"),
    ({"train_limit": 0}, "train_limit must be None or >= 1, got 0"),
    ({"test_limit": -5}, "test_limit must be None or >= 1, got -5"),
    ({"rounds": -1}, "rounds must be >= 0, got -1"),
])
def test_imp_config_rejects_out_of_range_values(over, match):
    with pytest.raises(ValueError, match=match):
        IMPConfig(**over)


def test_imp_config_accepts_its_boundaries():
    cfg = IMPConfig(prune_rate=0.0, output_rate=0.0, val_size=1, train_limit=1, test_limit=1, rounds=0)
    assert cfg.val_size == 1 and IMPConfig(val_size=59_999, prune_rate=0.999).prune_rate == 0.999


@pytest.mark.parametrize("over,match", [
    ({"lr": float("nan")}, "lr must be > 0"),
    ({"lr": float("inf")}, "lr must be > 0"),
    ({"weight_decay": float("nan")}, "weight_decay >= 0"),
    ({"lr_gamma": float("nan")}, r"lr_gamma > 0, got lr_step_epochs=1, lr_gamma=nan"),
    ({"lr_gamma": 0.0}, "lr_gamma > 0"),
    ({"patience": 0}, "patience must be None or >= 1, got 0"),
])
def test_train_config_rejects_out_of_range_values(over, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**over)
