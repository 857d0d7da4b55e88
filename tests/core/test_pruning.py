import copy
import io

import pytest
import torch
import torch.nn.functional as F

from lth_core.models import build_model, prunable_weights
from lth_core.pruning import (attach_masks, density_table, get_masks, layer_rates, n_to_prune, ones_masks,
                              prune_global, prune_layerwise, random_masks_like, set_masks)


def _weights(model):
    return {n: p.detach().clone() for n, p in prunable_weights(model).items()}


def test_layer_rates_hidden_p_output_half():
    model = build_model("conv2")
    rates = layer_rates(model, 0.2)
    assert rates == {"conv1.weight": 0.2, "conv2.weight": 0.2, "fc1.weight": 0.2, "fc2.weight": 0.2,
                     "fc3.weight": 0.1}
    assert layer_rates(build_model("shufflenet"), 0.1)["fc.weight"] == 0.05


def test_layer_rates_overrides_and_bn():
    model = build_model("shufflenet")
    rates = layer_rates(model, 0.1, prune_bn=True, overrides={"stem.0.weight": 0.0})
    assert rates["stem.0.weight"] == 0.0 and rates["stem.1.weight"] == 0.1
    with pytest.raises(ValueError, match="unknown layer"):
        layer_rates(model, 0.1, overrides={"nope.weight": 0.1})


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, "0.2"])
def test_impossible_layer_rates_rejected(rate):
    # the hidden and output rates are a config's (IMPConfig checks them); a layer's own rate is checked here
    model = build_model("shufflenet")
    with pytest.raises(ValueError, match=r"fc.weight = .* is out of range; valid: a number in \[0, 1\)"):
        layer_rates(model, 0.1, overrides={"fc.weight": rate})
    with pytest.raises(ValueError, match=r"a number in \[0, 1\)"):
        layer_rates(model, 0.1, prune_bn=True, bn_rate=rate)


def test_numpy_rates_are_rates():
    import numpy as np
    assert layer_rates(build_model("lenet_300_100"), np.float64(0.2)) == layer_rates(build_model("lenet_300_100"), 0.2)


def test_exact_counts_over_several_rounds_and_remaining_fraction():
    model = build_model("lenet_300_100", seed=0)
    masks, rates = ones_masks(model), layer_rates(model, 0.2)
    alive = {n: m.numel() for n, m in masks.items()}
    for _ in range(6):
        masks = prune_layerwise(_weights(model), masks, rates)
        for n, m in masks.items():
            alive[n] -= n_to_prune(alive[n], rates[n])
            assert int(m.sum()) == alive[n]
    for n, m in masks.items():  # (1-p)^k up to rounding
        assert abs(m.float().mean().item() - (1 - rates[n]) ** 6) < 2e-3


def test_prunes_smallest_surviving_magnitudes_and_never_revives():
    w = torch.tensor([[0.5, -0.1, 0.3, 2.0, -0.05]])
    masks = {"l.weight": torch.tensor([[True, True, True, True, False]])}
    new = prune_layerwise({"l.weight": w}, masks, {"l.weight": 0.5})
    # 4 alive -> prune 2: -0.1 and 0.3 (the masked -0.05 is not counted and stays masked)
    assert new["l.weight"].tolist() == [[True, False, False, True, False]]
    assert masks["l.weight"].tolist() == [[True, True, True, True, False]]  # input untouched: pure


def test_ties_broken_by_index():
    w = {"l.weight": torch.ones(1, 6)}
    new = prune_layerwise(w, {"l.weight": torch.ones(1, 6, dtype=torch.bool)}, {"l.weight": 0.5})
    assert new["l.weight"].tolist() == [[False, False, False, True, True, True]]


def test_global_pruning_keeps_exact_counts_under_one_threshold_and_the_output_layer_at_its_rate():
    model = build_model("lenet_300_100", seed=0)
    weights, masks = _weights(model), ones_masks(model)
    weights["fc2.weight"] = weights["fc2.weight"].abs() + 1  # every fc2 weight above every fc1 weight (std 0.001)
    hidden, out_rate = ["fc1.weight", "fc2.weight"], {"fc3.weight": 0.1}
    pool, out = sum(masks[n].numel() for n in hidden), masks["fc3.weight"].numel()
    for _ in range(4):
        new = prune_global(weights, masks, 0.2, out_rate)
        pool -= n_to_prune(pool, 0.2)
        out -= n_to_prune(out, 0.1)
        assert sum(int(new[n].sum()) for n in hidden) == pool and int(new["fc3.weight"].sum()) == out
        assert all(torch.all(new[n] <= masks[n]) for n in masks)  # a pruned weight is never revived
        kept = torch.cat([weights[n][new[n]].abs() for n in hidden])
        dropped = torch.cat([weights[n][masks[n] & ~new[n]].abs() for n in hidden])
        assert kept.min() >= dropped.max()  # one threshold over both hidden layers
        masks = new
    # one threshold reaches none of fc2's larger weights: fc1 alone gave up the pool's 59% (layer-wise: each 59%)
    assert int(masks["fc2.weight"].sum()) == 30_000 and int(masks["fc1.weight"].sum()) == pool - 30_000
    assert list(masks) == list(ones_masks(model))


def test_global_pruning_prunes_the_output_layer_as_layerwise_pruning_does():
    model = build_model("conv2", seed=0)
    rates, masks = layer_rates(model, 0.3), ones_masks(model)
    glob = prune_global(_weights(model), masks, 0.3, {"fc3.weight": rates["fc3.weight"]})
    assert torch.equal(glob["fc3.weight"], prune_layerwise(_weights(model), masks, rates)["fc3.weight"])
    with pytest.raises(ValueError, match="unknown layers"):
        prune_global(_weights(model), masks, 0.3, {"fc9.weight": 0.1})


def test_masks_apply_in_forward_and_pruned_weights_stay_zero_through_adam():
    torch.manual_seed(0)
    model = attach_masks(build_model("lenet_300_100", seed=0))
    masks = prune_layerwise(_weights(model), get_masks(model), layer_rates(model, 0.5))
    set_masks(model, masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(50):
        x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for name, raw in prunable_weights(model).items():
        m = masks[name]
        assert torch.all(raw.detach()[~m] == 0), name
        assert torch.all(raw.detach()[m] != 0), name  # the surviving ones did train
        assert torch.all(opt.state[raw]["exp_avg"][~m] == 0)
        mod = model.get_submodule(name.rsplit(".", 1)[0])
        assert torch.all(mod.weight[~m] == 0)  # the effective (forward) weight


def _half_pruned_lenet():
    model = attach_masks(build_model("lenet_300_100", seed=0))
    masks = prune_layerwise(_weights(model), get_masks(model), layer_rates(model, 0.5))
    set_masks(model, masks)
    return model, masks


def test_forward_masks_weights_written_after_pruning():
    model, masks = _half_pruned_lenet()
    with torch.no_grad():  # e.g. a state loaded from an unpruned network
        for p in prunable_weights(model).values():
            p.add_(1.0)
    plain = build_model("lenet_300_100")
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith("_mask")})
    with torch.no_grad():
        for n, p in prunable_weights(plain).items():
            p.mul_(masks[n])
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(model(x), plain(x))
    assert all(torch.all(p.detach()[~masks[n]] == 0) for n, p in prunable_weights(model).items())


def _train_steps(model, steps=5):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(16, 1, 28, 28)), torch.randint(0, 10, (16,))).backward()
        opt.step()


def _reload(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("clone", [copy.deepcopy, _reload])
def test_copies_of_a_masked_model_keep_gradients_masked(clone):
    # copying makes new Parameters without hooks; the forward pass must install the gradient mask again
    model, masks = _half_pruned_lenet()
    twin = clone(model)
    _train_steps(twin)
    for n, p in prunable_weights(twin).items():
        assert torch.all(p.detach()[~masks[n]] == 0) and torch.all(p.grad[~masks[n]] == 0), n
        assert not torch.equal(p.detach(), prunable_weights(model)[n].detach())  # the copy trained, alone
        assert len(p._post_accumulate_grad_hooks) == 1, "one gradient hook, however many forward passes"


def test_two_forward_passes_then_one_backward():
    model, masks = _half_pruned_lenet()
    x1, x2 = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    (model(x1).sum() + model(x2).sum()).backward()  # the second forward must not invalidate the first graph
    for n, p in prunable_weights(model).items():
        assert torch.all(p.grad[~masks[n]] == 0) and torch.any(p.grad[masks[n]] != 0), n


def test_masks_move_with_the_model_and_load_from_a_state_dict():
    model, masks = _half_pruned_lenet()
    fresh = attach_masks(build_model("lenet_300_100", seed=1))
    fresh.load_state_dict(model.state_dict())
    assert all(torch.equal(get_masks(fresh)[n], masks[n]) for n in masks)
    assert set(model.state_dict()) == {f"fc{i}.{k}" for i in (1, 2, 3) for k in ("weight", "weight_mask", "bias")}
    assert attach_masks(fresh) is fresh and torch.equal(get_masks(fresh)["fc1.weight"], masks["fc1.weight"])


def test_random_masks_keep_per_layer_counts():
    model = build_model("conv2", seed=0)
    masks = prune_layerwise(_weights(model), ones_masks(model), layer_rates(model, 0.3))
    rnd = random_masks_like(masks, torch.Generator().manual_seed(0))
    for n in masks:
        assert int(rnd[n].sum()) == int(masks[n].sum())
        assert not torch.equal(rnd[n], masks[n])


def test_density_table():
    masks = {"a": torch.tensor([True, False, False, False]), "b": torch.ones(4, dtype=torch.bool)}
    df = density_table(masks).set_index("layer")
    assert df.loc["a", "pct_remaining"] == 25.0 and df.loc["overall", "pct_remaining"] == 62.5


def test_set_masks_rejects_mismatch():
    model = attach_masks(build_model("lenet_300_100"))
    with pytest.raises(ValueError, match="do not match"):
        set_masks(model, {"fc1.weight": torch.ones(300, 784, dtype=torch.bool)})
