import pytest
import torch

from lth_core.models import build_model, count_prunable, output_layer_name, prunable_weights


@pytest.mark.parametrize("name,count", [("lenet_300_100", 266_200), ("conv2", 4_300_992), ("shufflenet", 946_008)])
def test_prunable_weight_counts_match_table1(name, count):
    assert count_prunable(build_model(name, seed=0)) == count


def test_lenet_has_266610_parameters_with_biases():
    assert sum(p.numel() for p in build_model("lenet_300_100").parameters()) == 266_610


def test_shufflenet_has_48_unit_convs_plus_stem_and_no_conv_bias():
    model = build_model("shufflenet")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 49 and all(c.bias is None for c in convs)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name,shape", [("lenet_300_100", (1, 28, 28)), ("conv2", (3, 32, 32))])
def test_forward_shapes(name, shape):
    assert build_model(name)(torch.randn(3, *shape)).shape == (3, 10)


def test_output_layer_is_last_linear():
    assert output_layer_name(build_model("lenet_300_100")) == "fc3.weight"
    assert output_layer_name(build_model("conv2")) == "fc3.weight"
    assert output_layer_name(build_model("shufflenet")) == "fc.weight"


def test_unknown_network_lists_valid_names():
    with pytest.raises(ValueError, match="lenet_300_100, conv2, shufflenet"):
        build_model("resnet")


def test_seeded_init_is_reproducible_and_seed_dependent():
    a, b, c = (build_model("lenet_300_100", seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1.weight"], c["fc1.weight"])


def test_initialisation_follows_spec():
    lenet = build_model("lenet_300_100", seed=0)
    assert abs(lenet.fc1.weight.std().item() - 1e-3) < 1e-4 and lenet.fc1.bias.abs().sum() == 0
    shuffle = build_model("shufflenet", seed=0)
    bn = shuffle.units[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("groups", [0, 5, 8, 9])
def test_groups_that_do_not_divide_every_layer_are_refused_with_the_valid_ones(groups):
    # 9 divides every stage width by 4*9 but not the 120 channels the first stage's stride-2 unit adds
    with pytest.raises(ValueError, match=r"valid groups up to 8: \[1, 2, 3, 4, 6\]"):
        build_model("shufflenet", groups=groups)


def test_groups_change_the_weight_count():
    assert count_prunable(build_model("shufflenet", groups=2)) < count_prunable(build_model("shufflenet"))


def test_bn_gammas_listed_only_when_asked():
    model = build_model("shufflenet")
    assert len(prunable_weights(model, include_bn=True)) - len(prunable_weights(model)) == 49
