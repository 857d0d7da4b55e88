"""Fused training on CUDA: each member matches its solo training (float32, GPU kernels).

Skipped without a GPU; `make gpu-check` runs it on a lent one. On CUDA, solo and fused
trainings use different kernels (a grouped convolution for K convolutions, a batched matmul
for K matmuls), so they agree to float32 rounding amplified by training, not bit for bit:
the same evaluation points, the first validation loss within 1e-3, later ones within 5%
(measured on an H100: Conv-2's drift 3% apart by iteration 40 of this fast-falling synthetic
task) and the same early-stopping iteration. Exact agreement is tested in float64 on the CPU
(test_fused.py). Each network is tested with the forward pass the runner uses on CUDA and with vmap.
ShuffleNet's validation loss is compared at the first evaluation only, within 1%:
its bn2 bias has a zero gradient up to rounding, which Adam turns into full-sized steps that
move bn3's running mean (see test_fused.py), so any two kernels' rounding drifts apart there.
"""
import pytest
import torch

from conftest import synthetic_dataset
from lth_core.models import DATASET_OF, build_model
from lth_core.pruning import attach_masks, get_masks, layer_rates, prune_layerwise, set_masks
from lth_core.runs.fused import fused_layers, train_fused
from lth_core.config import TrainConfig
from lth_core.training import TrainingJob, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


DEVICE = "cuda"


def _members(network: str, n: int):
    out = []
    for k in range(n):
        model = attach_masks(build_model(network, seed=k)).to(DEVICE)
        if k:  # one dense member, the others pruned once from their own init
            masks = get_masks(model)
            set_masks(model, prune_layerwise({m: model.get_parameter(m).detach().cpu() for m in masks}, masks,
                                             layer_rates(model, 0.2)))
        out.append(model)
    return out


NETWORKS = ["lenet_300_100", "conv2", "shufflenet"]
# the runner's forward pass on CUDA (fused.fused_layers), and vmap over the solo network wherever it is not it
PATHS = [(n, *fused_layers(n, DEVICE)) for n in NETWORKS] + [(n, "vmap", False) for n in NETWORKS
                                                            if fused_layers(n, DEVICE)[0] != "vmap"]


@pytest.mark.parametrize("network,layers,channels_last", PATHS)
def test_fused_matches_solo_on_cuda(network, layers, channels_last):
    data = synthetic_dataset(DATASET_OF[network], n_train=600, n_test=100).to(DEVICE)
    cfg = TrainConfig(iterations=40, batch_size=20, eval_every=10, lr=1e-3)
    val, rows = torch.arange(100), [torch.arange(100 + 100 * k, 600) for k in range(3)]
    solo_models, fused_models = _members(network, 3), _members(network, 3)
    solo = [train(m, data, rows[k], val, cfg, seed=k, progress=False) for k, m in enumerate(solo_models)]
    fused = train_fused([TrainingJob(m, rows[k], val, cfg, seed=k) for k, m in enumerate(fused_models)], data,
                        progress=False, layers=layers, channels_last=channels_last)
    for s, f in zip(solo, fused):
        assert [h["iteration"] for h in f.history] == [h["iteration"] for h in s.history]
        if network == "shufflenet":
            assert f.history[0]["val_loss"] == pytest.approx(s.history[0]["val_loss"], rel=1e-2)
            continue
        assert f.history[0]["val_loss"] == pytest.approx(s.history[0]["val_loss"], rel=1e-3)
        assert [h["val_loss"] for h in f.history] == pytest.approx([h["val_loss"] for h in s.history], rel=5e-2)
        assert f.es_iteration == s.es_iteration
    for sm, fm in zip(solo_models, fused_models):
        for name, mask in get_masks(sm).items():
            w = fm.get_parameter(name).detach()
            assert torch.all(w[~mask.to(w.device)] == 0)  # pruned weights stay exactly zero on the GPU too


@pytest.mark.parametrize("network", NETWORKS)
def test_cuda_graph_replays_the_eager_fused_step_on_cuda(network):
    """The graphed step is the eager step: same curves, stops and weights, through every re-recording
    (a member with a shorter budget leaves the stack; a step schedule changes the learning rate each epoch;
    one member's own learning rate makes Adam run slot by slot)."""
    import dataclasses
    data = synthetic_dataset(DATASET_OF[network], n_train=600, n_test=100).to(DEVICE)
    base = TrainConfig(iterations=60, batch_size=20, eval_every=10, lr=1e-3, lr_schedule="step", lr_gamma=0.5)
    cfgs = [base, dataclasses.replace(base, iterations=30), dataclasses.replace(base, lr=3e-3)]
    val, rows = torch.arange(100), [torch.arange(100 + 100 * k, 600) for k in range(3)]
    runs, (layers, channels_last) = {}, fused_layers(network, DEVICE)
    for graphed in (False, True):
        models = _members(network, 3)
        results = train_fused([TrainingJob(m, rows[k], val, cfgs[k], seed=k) for k, m in enumerate(models)], data,
                              progress=False, cuda_graph=graphed, layers=layers, channels_last=channels_last)
        runs[graphed] = (models, results)
    (eager_models, eager), (graph_models, graphed) = runs[False], runs[True]
    for e, g in zip(eager, graphed):
        assert [h["iteration"] for h in g.history] == [h["iteration"] for h in e.history]
        assert [h["val_loss"] for h in g.history] == pytest.approx([h["val_loss"] for h in e.history], rel=1e-6)
        assert g.es_iteration == e.es_iteration
    for em, gm in zip(eager_models, graph_models):
        for (name, ew), gw in zip(em.state_dict().items(), gm.state_dict().values()):
            torch.testing.assert_close(gw, ew, rtol=1e-6, atol=1e-7, msg=lambda m: f"{name}: {m}")
