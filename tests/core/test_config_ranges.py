"""IMPConfig, TrainConfig, paper_config and grid refuse values outside their ranges when built, before any
data loads or round trains (these used to fail after round 0, at the first evaluation, or not at all), with
one error type and one message form (`checks.ConfigError`)."""
import numpy as np
import pytest

from lth_core import checks
from lth_core.config import IMPConfig, TrainConfig, paper_config
from lth_core.runs.experiment import grid
from lth_core.runs.store import run_name

INTEGER_FIELDS = {  # field: (owner, the words of its range at Table 1's LeNet)
    "rounds": ("IMPConfig", "an integer >= 0"), "seed": ("IMPConfig", "an integer >= 0"),
    "split_seed": ("IMPConfig", "an integer >= 0"),
    "val_size": ("IMPConfig", "an integer in [1, 59999] (mnist has 60,000 training rows; the rest is the pool)"),
    "train_limit": ("IMPConfig", "None or an integer >= 1"),
    "test_limit": ("IMPConfig", "None or an integer in [1, 10000] (mnist has 10,000 test rows; None: all of them)"),
    "rewind_iteration": ("IMPConfig", "None or an integer in [0, 30000] (within the training budget of 30,000 "
                                      "iterations)"),
    "iterations": ("TrainConfig", "an integer >= 1"), "batch_size": ("TrainConfig", "an integer >= 1"),
    "eval_every": ("TrainConfig", "an integer >= 1"), "lr_step_epochs": ("TrainConfig", "an integer >= 1"),
    "patience": ("TrainConfig", "None or an integer >= 1"),
}


def _refused(call, owner, field, value, valid):
    with pytest.raises(checks.ConfigError) as err:
        call()
    assert (err.value.owner, err.value.field, err.value.valid) == (owner, field, valid)
    assert str(err.value) == f"{owner}: {field} = {value!r} is out of range; valid: {valid}"
    return err.value


@pytest.mark.parametrize("field", INTEGER_FIELDS)
@pytest.mark.parametrize("value", [1.5, 2.0, True])
def test_integer_fields_refuse_floats_and_bools(field, value):
    # 1.5 rounds or iterations used to train and store a run; 2.5 val_size failed later, slicing
    owner, valid = INTEGER_FIELDS[field]
    _refused(lambda: paper_config("lenet_300_100", **{field: value}), owner, field, value, valid)


@pytest.mark.parametrize("over,field,valid", [
    ({"rounds": -1}, "rounds", "an integer >= 0"),
    ({"seed": -1}, "seed", "an integer >= 0"),
    ({"val_size": 0}, "val_size", r"an integer in [1, 59999] (mnist has 60,000 training rows; the rest is the pool)"),
    ({"val_size": 60_000}, "val_size", "an integer in [1, 59999] (mnist has 60,000 training rows; the rest is the pool)"),
    ({"network": "conv2", "val_size": 50_000}, "val_size",
     "an integer in [1, 49999] (cifar10 has 50,000 training rows; the rest is the pool)"),
    ({"train_limit": 0}, "train_limit", "None or an integer >= 1"),
    ({"test_limit": -5}, "test_limit", "None or an integer in [1, 10000] (mnist has 10,000 test rows; None: all of them)"),
    ({"test_limit": 10_001}, "test_limit", "None or an integer in [1, 10000] (mnist has 10,000 test rows; None: all of them)"),
    ({"prune_rate": 0}, "prune_rate", "a fraction in (0, 1) (0 prunes nothing, 1 every weight)"),
    ({"prune_rate": 0.0}, "prune_rate", "a fraction in (0, 1) (0 prunes nothing, 1 every weight)"),
    ({"prune_rate": 1.0}, "prune_rate", "a fraction in (0, 1) (0 prunes nothing, 1 every weight)"),
    ({"prune_rate": "0.2"}, "prune_rate", "a fraction in (0, 1) (0 prunes nothing, 1 every weight)"),
    ({"output_rate": 1.0}, "output_rate", "None or a fraction in (0, 1)"),
    ({"output_rate": 0.0}, "output_rate", "None or a fraction in (0, 1)"),
    ({"subset_percent": 0}, "subset_percent", "a number in (0, 100]"),
    ({"subset_percent": 100.5}, "subset_percent", "a number in (0, 100]"),
    ({"subset_percent": float("nan")}, "subset_percent", "a number in (0, 100]"),
    ({"controls": ("reinit", "reinit")}, "controls", "a list of distinct controls from ['reinit', 'random_prune']"),
    ({"controls": ("shuffle",)}, "controls", "a list of distinct controls from ['reinit', 'random_prune']"),
    ({"controls": "reinit"}, "controls", "a list of distinct controls from ['reinit', 'random_prune']"),
    ({"retrain_on": ["all", "all"]}, "retrain_on", "a list of distinct splits from ['all', 'half1', 'half2', 'subset']"),
    ({"find_on": "S3"}, "find_on", "one of all, half1, half2, subset"),
    ({"prune_bn": 1}, "prune_bn", "True or False"),
    ({"network": "vgg"}, "network", "one of lenet_300_100, conv2, shufflenet"),
])
def test_imp_config_refuses_out_of_range_values(over, field, valid):
    _refused(lambda: IMPConfig(**over), "IMPConfig", field, over[field], valid)


@pytest.mark.parametrize("over,field,valid", [
    ({"lr": float("nan")}, "lr", "a finite number > 0"),
    ({"lr": float("inf")}, "lr", "a finite number > 0"),
    ({"lr": 0}, "lr", "a finite number > 0"),
    ({"weight_decay": -1e-3}, "weight_decay", "a finite number >= 0"),
    ({"lr_gamma": 0.0}, "lr_gamma", "a finite number > 0"),
    ({"patience": 0}, "patience", "None or an integer >= 1"),
    ({"epochs": 0}, "epochs", "None or a finite number > 0"),
    ({"epochs": float("nan")}, "epochs", "None or a finite number > 0"),
    ({"precision": "fp16"}, "precision", "one of float32, tf32, bf16"),
    ({"lr_schedule": "cosine"}, "lr_schedule", "one of constant, step, exponential"),
    ({"optimizer": "sgd"}, "optimizer", "one of adam"),
])
def test_train_config_refuses_out_of_range_values(over, field, valid):
    _refused(lambda: TrainConfig(**over), "TrainConfig", field, over[field], valid)


def test_paper_config_refuses_through_the_same_rules():
    _refused(lambda: paper_config("vgg"), "IMPConfig", "network", "vgg", "one of lenet_300_100, conv2, shufflenet")
    _refused(lambda: paper_config("shufflenet", iterations=6, rewind_iteration=7), "IMPConfig", "rewind_iteration", 7,
             "None or an integer in [0, 6] (within the training budget of 6 iterations)")


def test_boundaries_are_accepted():
    cfg = IMPConfig(prune_rate=0.999, output_rate=0.001, val_size=59_999, train_limit=1, test_limit=10_000, rounds=0,
                    subset_percent=100, controls=["reinit", "random_prune"], train=TrainConfig(iterations=6),
                    rewind_iteration=6)
    assert cfg.controls == ("reinit", "random_prune") and IMPConfig(val_size=1).val_size == 1
    # validating past the budget validates once, at the end: tiny trainings rely on it
    assert TrainConfig(iterations=5).eval_every == 100
    # with an epoch budget the rewind is checked against it when the data is known (IMPRunner)
    assert paper_config("lenet_300_100", epochs=1.0, rewind_iteration=10**6).rewind_iteration == 10**6


def test_numpy_numbers_become_python_numbers_and_run_names_stay():
    cfg = paper_config("shufflenet", prune_rate=np.float64(0.1), seed=np.int64(2), iterations=np.int64(6))
    assert type(cfg.prune_rate) is float and type(cfg.seed) is int and type(cfg.train.iterations) is int
    # the names the run store gave these configs before the checks moved here
    assert [run_name(c) for c in [
        paper_config("lenet_300_100"),
        paper_config("conv2", find_on="subset", subset_percent=10.0, retrain_on=("all",), iterations=40, rounds=2,
                     train_limit=900),
        paper_config("shufflenet", prune_rate=np.float64(0.1), rewind_iteration=2, iterations=6, batch_size=8,
                     controls=["reinit"]),
        paper_config("lenet_300_100", find_on="half1", retrain_on=["half2"], controls=("reinit", "random_prune"),
                     epochs=5.0, val_size=1000, test_limit=2000)]] == [
        "lenet_300_100-9c228454e3a5", "conv2-cc0cd12490d2", "shufflenet-884785e59ed6", "lenet_300_100-df3785645724"]


@pytest.mark.parametrize("axes,name", [({"seeds": [0, 0]}, "seeds"), ({"rounds": [1, 2, 1]}, "rounds"),
                                       ({"retrain_on": [["all"], ["all"]]}, "retrain_on")])
def test_grid_refuses_a_repeated_value_on_any_axis(axes, name):
    # seeds=[0, 0] used to return every row twice
    err = _refused(lambda: grid(paper_config("lenet_300_100"), **axes), "grid", name, axes[name],
                   "distinct values (a repeated one would repeat its runs' rows)")
    assert isinstance(err, ValueError)


def test_grid_checks_each_value_by_its_field_rule():
    assert len(grid(paper_config("lenet_300_100"), seeds=[0, 1], rounds=[1, 2])) == 4
    _refused(lambda: grid(paper_config("lenet_300_100"), seeds=[0, 1.5]), "IMPConfig", "seed", 1.5, "an integer >= 0")
