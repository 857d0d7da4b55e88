"""Stacked layers (lth_core.runs.ops) against K solo networks, in float64: logits, gradients, BN buffers,
and stacked evaluation against training.evaluate."""
import copy

import pytest
import torch
from torch import nn

from lth_core.models import build_model
from lth_core.runs.ops.network import StackedForward, evaluate_stacked, member_losses
from lth_core.training import evaluate

K = 3
NETWORKS = {  # name: (build options, image shape)
    "lenet_300_100": ({}, (1, 28, 28)),
    "conv2": ({}, (3, 32, 32)),
    "shufflenet": ({}, (3, 32, 32)),
    "shufflenet groups=2": ({"groups": 2}, (3, 32, 32)),  # grouped 1x1 convolutions and the channel shuffle
}


def _stacked(models):
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
              for n, _ in models[0].named_parameters()}
    buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models]) for n, _ in models[0].named_buffers()}
    return params, buffers


def _models(case):
    options, shape = NETWORKS[case]
    models = [build_model(case.split()[0], seed=k, **options).double() for k in range(K)]
    return models, shape


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", list(NETWORKS))
def test_a_stacked_training_step_is_k_solo_steps(case, channels_last):
    models, shape = _models(case)
    params, buffers = _stacked(models)
    forward = StackedForward(copy.deepcopy(models[0]).to("meta"), channels_last)
    x = torch.randn(K, 8, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (K, 8), generator=torch.Generator().manual_seed(1))
    logits = forward(params, buffers, x, training=True)
    member_losses(logits, y, "mean").sum().backward()
    for k, m in enumerate(models):
        m.train()
        out = m(x[k])
        nn.functional.cross_entropy(out, y[k]).backward()
        torch.testing.assert_close(logits[k].detach(), out.detach(), rtol=1e-9, atol=1e-12)
        for n, p in m.named_parameters():
            torch.testing.assert_close(params[n].grad[k], p.grad, rtol=1e-9, atol=1e-12, msg=lambda s: f"{n}: {s}")
        for n, b in m.named_buffers():  # running statistics and batch counts, updated in the stacked buffers
            torch.testing.assert_close(buffers[n][k], b, rtol=1e-9, atol=1e-12, msg=lambda s: f"{n}: {s}")


@pytest.mark.parametrize("case", ["lenet_300_100", "shufflenet"])
def test_stacked_evaluation_is_each_members_evaluation(case):
    models, shape = _models(case)
    for m in models:  # running statistics away from their initial values, so evaluation mode matters
        m.train()
        m(torch.randn(16, *shape, dtype=torch.float64))
    params, buffers = _stacked(models)
    forward = StackedForward(copy.deepcopy(models[0]).to("meta"))
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(K, n, *shape, dtype=torch.float64, generator=gen),
                torch.randint(0, 10, (K, n), generator=gen)) for n in (7, 7, 3)]
    before = {n: b.clone() for n, b in buffers.items()}
    got = evaluate_stacked(forward, params, buffers, batches)
    for k, m in enumerate(models):
        loss, acc = evaluate(m, [(x[k], y[k]) for x, y in batches])
        assert got[k][1] == acc and got[k][0] == pytest.approx(loss, rel=1e-12)
    assert all(torch.equal(before[n], buffers[n]) for n in buffers)  # evaluation leaves BN statistics alone


def test_a_layer_without_a_stacked_form_is_refused_at_once():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Tanh())
    with pytest.raises(ValueError, match="no form for Tanh at 2.*layers='vmap'"):
        StackedForward(net)
