"""Fused training (lth_core.runs.fused) against solo train(), member by member, in float64."""
import copy
import dataclasses
import re

import pytest
import torch

from conftest import synthetic_dataset
from lth_core.data import Dataset
from lth_core.models import build_model
from lth_core.pruning import attach_masks, get_masks, layer_rates, prune_layerwise, random_masks_like, set_masks
from lth_core.runs import fused
from lth_core.runs.ops import network as network_ops
from lth_core.runs.fused import FusedStack, train_fused
from lth_core.config import TrainConfig
from lth_core.training import TrainingJob, train


class Float64Dataset(Dataset):
    """Batches in float64, so fused and solo differ by rounding far below the tolerances."""

    def normalize(self, x_uint8):
        return super().normalize(x_uint8).double()


def _data(name: str, n_train: int, n_test: int) -> Float64Dataset:
    d = synthetic_dataset(name, n_train=n_train, n_test=n_test)
    return Float64Dataset(name=d.name, train_x=d.train_x, train_y=d.train_y, test_x=d.test_x, test_y=d.test_y)


def _models(network: str, n: int) -> list[torch.nn.Module]:
    """n reset tickets, each with its own init: dense, one magnitude-pruning round, then random masks."""
    models = [attach_masks(build_model(network, seed=100 + k)).double() for k in range(n)]
    dense = get_masks(models[0])
    pruned = prune_layerwise({name: p.detach() for name, p in models[0].named_parameters()}, dense,
                             layer_rates(models[0], 0.2))
    for k, model in enumerate(models):
        set_masks(model, dense if k == 0 else pruned if k == 1
                  else random_masks_like(pruned, torch.Generator().manual_seed(k)))
    return models


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return torch.equal(a, b)
    return float((a - b).abs().max()) <= 1e-5 * max(float(b.abs().max()), 1e-12)


# ShuffleNet's bn2 feeds conv3 and then bn3 with no nonlinearity between: bn3's mean subtraction
# removes bn2's bias, whose gradient is therefore zero up to rounding, and Adam scales that rounding
# noise to full-sized steps. Solo and fused runs differ there (and in bn3's running mean, which
# tracks the shift) by rounding alone; every other tensor must agree.
UNIDENTIFIABLE = {"shufflenet": re.compile(r"units\.\d+\.(bn2\.bias|bn3\.running_mean)")}


def _assert_same(fused_res, fused_model, solo_res, solo_model, network, check_masks=True):
    assert fused_res.es_iteration == solo_res.es_iteration
    assert fused_res.iterations == solo_res.iterations
    assert [h["iteration"] for h in fused_res.history] == [h["iteration"] for h in solo_res.history]
    assert [h["lr"] for h in fused_res.history] == [h["lr"] for h in solo_res.history]
    assert [h["val_acc"] for h in fused_res.history] == [h["val_acc"] for h in solo_res.history]
    assert fused_res.test_acc == solo_res.test_acc and fused_res.val_acc == solo_res.val_acc
    assert fused_res.test_loss == pytest.approx(solo_res.test_loss, rel=1e-6)
    assert (fused_res.snapshot_state is None) == (solo_res.snapshot_state is None)
    states = [(fused_res.best_state, solo_res.best_state), (fused_model.state_dict(), solo_model.state_dict())]
    if solo_res.snapshot_state is not None:
        states.append((fused_res.snapshot_state, solo_res.snapshot_state))
    for fs, ss in states:
        assert list(fs) == list(ss)
        skip = UNIDENTIFIABLE.get(network)
        bad = [k for k in ss if not (skip and skip.fullmatch(k)) and not _close(fs[k].cpu(), ss[k].cpu())]
        assert not bad, f"differ from solo training: {bad}"
    assert all(v.device.type == "cpu" for v in fused_res.best_state.values())
    if not check_masks:
        return
    rates = layer_rates(solo_model, 0.2)
    masks = get_masks(solo_model)
    next_fused = prune_layerwise({n: fused_res.best_state[n] for n in masks}, masks, rates)
    next_solo = prune_layerwise({n: solo_res.best_state[n] for n in masks}, masks, rates)
    assert all(torch.equal(next_fused[n], next_solo[n]) for n in masks)


CASES = {  # network: dataset shape, rows, batch, iterations, eval_every (CPU-sized, float64)
    "lenet_300_100": ("mnist", 700, 100, 20, 90, 15),
    "conv2": ("cifar10", 80, 20, 4, 4, 2),
    "shufflenet": ("cifar10", 60, 20, 4, 5, 2),
}


# the step's forward passes (FusedStack's layers, channels_last); channels-last only where there are channels
PATHS = [(network, layers, channels_last) for network in CASES
         for layers, channels_last in [("stacked", False), ("stacked", True), ("vmap", False)]
         if not (channels_last and network == "lenet_300_100")]


@pytest.mark.parametrize("network,layers,channels_last", PATHS)
def test_fused_group_matches_solo_training_member_by_member(network, layers, channels_last):
    torch.manual_seed(0)
    shape, n_train, n_test, batch, iterations, every = CASES[network]
    data = _data(shape, n_train, n_test)
    val = torch.arange(n_test // 2)
    base = TrainConfig(iterations=iterations, batch_size=batch, eval_every=every, lr=2e-3)
    # different rows (so different epoch lengths), schedules, decay, criteria and budgets per member
    cfgs = [base,
            dataclasses.replace(base, lr_schedule="exponential", lr_gamma=0.8, weight_decay=1e-3),
            dataclasses.replace(base, lr=1e-3, criterion="val_acc", lr_schedule="step", lr_gamma=0.5),
            dataclasses.replace(base, iterations=iterations - every, eval_every=every + 1, weight_decay=1e-2)]
    rows = [torch.arange(len(val), n_train - 7 * k * batch // 4) for k in range(4)]
    snapshot = [None, 2, 0, iterations // 2]
    models = _models(network, 4)
    solo_models = [copy.deepcopy(m) for m in models]
    members = [TrainingJob(models[k], rows[k], val, cfgs[k], seed=10 + k, snapshot_at=snapshot[k], desc=f"m{k}")
               for k in range(4)]
    results = train_fused(members, data, progress=False, layers=layers, channels_last=channels_last)
    for k, (member, res, solo_model) in enumerate(zip(members, results, solo_models)):
        solo = train(solo_model, data, rows[k], val, cfgs[k], seed=10 + k, snapshot_at=snapshot[k], progress=False)
        # the next round's mask costs two sorts of every weight (1.5 s for Conv-2): the pruned member suffices
        _assert_same(res, member.model, solo, solo_model, network, check_masks=k == 1)
        assert member.model.training


def test_patience_stops_a_member_where_solo_stops_and_the_others_go_on():
    data = _data("mnist", 700, 100)
    val = torch.arange(100)
    rows = torch.arange(100, 700)
    # a large learning rate makes the validation loss jump, so patience 1 ends that run early
    cfgs = [TrainConfig(iterations=120, batch_size=20, eval_every=5, lr=0.05, patience=1),
            TrainConfig(iterations=120, batch_size=20, eval_every=10, lr=1e-3),
            TrainConfig(iterations=40, batch_size=20, eval_every=10, lr=1e-3)]
    models = _models("lenet_300_100", 3)
    solo_models = [copy.deepcopy(m) for m in models]
    members = [TrainingJob(models[k], rows, val, cfgs[k], seed=k) for k in range(3)]
    results = train_fused(members, data, progress=False)
    assert results[0].iterations < 120 and [r.iterations for r in results[1:]] == [120, 40]
    for k, (member, res, solo_model) in enumerate(zip(members, results, solo_models)):
        solo = train(solo_model, data, rows, val, cfgs[k], seed=k, progress=False)
        _assert_same(res, member.model, solo, solo_model, "lenet_300_100")


def test_an_epoch_budget_and_a_rewind_snapshot_hold_in_a_group_as_alone():
    data = _data("mnist", 700, 100)
    val, rows = torch.arange(100), torch.arange(100, 700)
    # 2 epochs of 600 rows at batch 20: 60 iterations; the second member would stop by patience before its
    # snapshot at iteration 100 (the first test above), and must train on until it has the snapshot
    cfgs = [TrainConfig(epochs=2, batch_size=20, eval_every=5, lr=1e-3),
            TrainConfig(iterations=120, batch_size=20, eval_every=5, lr=0.05, patience=1)]
    snapshot = [None, 100]
    models = _models("lenet_300_100", 2)
    solo_models = [copy.deepcopy(m) for m in models]
    members = [TrainingJob(models[k], rows, val, cfgs[k], seed=k, snapshot_at=snapshot[k]) for k in range(2)]
    results = train_fused(members, data, progress=False)
    assert results[0].iterations == 60 and results[1].iterations >= 100 and results[1].snapshot_state is not None
    assert [r.group_size for r in results] == [2, 2]  # their wall_seconds are the group's, and say so
    for k, (member, res, solo_model) in enumerate(zip(members, results, solo_models)):
        solo = train(solo_model, data, rows, val, cfgs[k], seed=k, snapshot_at=snapshot[k], progress=False)
        assert solo.iterations == res.iterations and solo.group_size == 1
        _assert_same(res, member.model, solo, solo_model, "lenet_300_100")


def test_pruned_weights_moments_and_gradients_stay_exactly_zero(monkeypatch):
    data = synthetic_dataset(n_train=400, n_test=50)
    models = [attach_masks(build_model("lenet_300_100", seed=k)) for k in range(3)]
    for k, m in enumerate(models):
        set_masks(m, random_masks_like(prune_layerwise(
            {n: p.detach() for n, p in m.named_parameters()}, get_masks(m), layer_rates(m, 0.6)),
            torch.Generator().manual_seed(k)))
    pruned = [{n: ~mask for n, mask in get_masks(m).items()} for m in models]
    seen = []
    original_step = FusedStack.step

    def checked_step(stack, x, y):
        # something writes into pruned weights: the forward pass must not see it, and it must not survive
        with torch.no_grad():
            for n in stack.masks:
                stack.params[n].add_(1.0)
        losses = original_step(stack, x, y)
        for n in stack.masks:
            for s in range(len(stack)):
                off = pruned[s][n]
                for t in (stack.params[n], stack.params[n].grad, stack.exp_avg[n], stack.exp_avg_sq[n]):
                    assert torch.count_nonzero(t[s][off]) == 0
                assert torch.count_nonzero(stack.exp_avg_sq[n][s][~off]) > 0  # the check sees live weights
        seen.append(len(stack))
        return losses

    monkeypatch.setattr(FusedStack, "step", checked_step)
    cfg = TrainConfig(iterations=30, batch_size=50, eval_every=10, weight_decay=1e-2)
    members = [TrainingJob(m, torch.arange(50, 400), torch.arange(50), cfg, seed=k) for k, m in enumerate(models)]
    train_fused(members, data, progress=False)
    assert seen == [3] * 30
    for m, off in zip(models, pruned):
        assert all(torch.count_nonzero(dict(m.named_parameters())[n].detach()[o]) == 0 for n, o in off.items())


def test_stopped_members_leave_the_stack(monkeypatch):
    data = synthetic_dataset(n_train=400, n_test=50)
    sizes = []
    original_step = FusedStack.step

    def counting_step(stack, x, y):
        sizes.append((len(stack), tuple(next(iter(stack.params.values())).shape[:1]), len(stack.lr)))
        return original_step(stack, x, y)

    monkeypatch.setattr(FusedStack, "step", counting_step)
    cfgs = [TrainConfig(iterations=n, batch_size=50, eval_every=5) for n in (10, 20, 5)]
    members = [TrainingJob(attach_masks(build_model("lenet_300_100", seed=k)), torch.arange(50, 400),
                           torch.arange(50), cfgs[k], seed=k) for k in range(3)]
    results = train_fused(members, data, progress=False)
    assert [r.iterations for r in results] == [10, 20, 5]
    assert sizes == [(3, (3,), 3)] * 5 + [(2, (2,), 2)] * 5 + [(1, (1,), 1)] * 10


def test_mismatched_members_are_refused():
    data = synthetic_dataset(n_train=300, n_test=50)
    rows, val = torch.arange(50, 300), torch.arange(50)

    def member(network="lenet_300_100", batch=50, rows=rows):
        return TrainingJob(attach_masks(build_model(network, seed=0)), rows, val,
                           TrainConfig(iterations=5, batch_size=batch), seed=0)
    with pytest.raises(ValueError, match="batch size"):
        train_fused([member(), member(batch=25)], data, progress=False)
    with pytest.raises(ValueError, match="batch size"):  # fewer rows than the batch: train() shrinks it
        train_fused([member(), member(rows=rows[:30])], data, progress=False)
    with pytest.raises(ValueError, match="same network"):
        train_fused([member(), member("conv2")], data, progress=False)
    with pytest.raises(ValueError, match="same network"):
        train_fused([member(), TrainingJob(attach_masks(build_model("lenet_300_100")).double(), rows, val,
                                           TrainConfig(iterations=5, batch_size=50), seed=0)], data, progress=False)
    with pytest.raises(ValueError, match="at least one"):
        train_fused([], data, progress=False)
    bf16 = TrainingJob(attach_masks(build_model("lenet_300_100", seed=0)), rows, val,
                       TrainConfig(iterations=5, batch_size=50, precision="bf16"), seed=0)
    with pytest.raises(ValueError, match=r"share one precision, got \['bf16', 'float32'\]"):
        train_fused([member(), bf16], data, progress=False)


def test_validation_and_test_passes_run_for_the_group_at_once(monkeypatch):
    """Members evaluated at one iteration share each batch's pass: their own validation rows (as many rows each),
    and the test set for every checkpoint that ends or is probed there; the results equal solo training's."""
    data = _data("mnist", 700, 100)
    cfg = TrainConfig(iterations=20, batch_size=20, eval_every=5, lr=1e-3)
    vals = [torch.arange(40), torch.arange(40, 80), torch.arange(40)]  # two members share their rows
    rows = torch.arange(100, 700)
    passes = []
    for name in ("evaluate", "evaluate_states"):
        original = getattr(FusedStack, name)

        def counted(stack, what, batches, original=original, name=name):
            passes.append((name, len(what)))
            return original(stack, what, batches)
        monkeypatch.setattr(FusedStack, name, counted)
    models = _models("lenet_300_100", 3)
    solo_models = [copy.deepcopy(m) for m in models]
    results = train_fused([TrainingJob(models[k], rows, vals[k], cfg, seed=k) for k in range(3)], data,
                          progress=False, eval_batch=16)
    assert passes == [("evaluate", 3)] * 4 + [("evaluate_states", 3)]
    for k, (res, solo_model) in enumerate(zip(results, solo_models)):
        solo = train(solo_model, data, rows, vals[k], cfg, seed=k, progress=False, eval_batch=16)
        _assert_same(res, models[k], solo, solo_model, "lenet_300_100", check_masks=False)
        assert [h["val_loss"] for h in res.history] == pytest.approx([h["val_loss"] for h in solo.history],
                                                                      rel=1e-12)


def test_an_unknown_forward_pass_is_refused():
    model = attach_masks(build_model("lenet_300_100", seed=0))
    with pytest.raises(ValueError, match="layers must be one of"):
        FusedStack([model], [1e-3], [0.0], layers="compiled")


def test_a_compiled_step_trains_as_the_eager_one_and_needs_the_stacked_layers():
    """torch.compile reorders and fuses the forward's float operations, so the compiled step agrees with the
    eager one to float32 rounding: the same early stops, losses within 1e-4 relative."""
    model = attach_masks(build_model("lenet_300_100", seed=0))
    with pytest.raises(ValueError, match="compile_step compiles the stacked layers' step"):
        FusedStack([model], [1e-3], [0.0], layers="vmap", compile_step=True)
    data = synthetic_dataset()
    cfg = TrainConfig(iterations=30, batch_size=50, eval_every=10)

    def group(compile_step):
        jobs = [TrainingJob(attach_masks(build_model("lenet_300_100", seed=k)), torch.arange(100, 900),
                            torch.arange(100), cfg, seed=k) for k in range(2)]
        return train_fused(jobs, data, progress=False, compile_step=compile_step)
    for eager, compiled in zip(group(False), group(True)):
        assert compiled.es_iteration == eager.es_iteration
        assert compiled.val_loss == pytest.approx(eager.val_loss, rel=1e-4)
        for a, b in zip(eager.history, compiled.history):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)


def test_group_size_on_cpu_is_the_fixed_cap():
    assert fused.group_size("conv2", "cpu", 200) == fused.CPU_GROUP_SIZE


def test_cuda_graph_on_a_cpu_is_refused():
    model = attach_masks(build_model("lenet_300_100", seed=0))
    with pytest.raises(ValueError, match="cuda_graph=True needs the members on a CUDA device"):
        FusedStack([model], [1e-3], [0.0], cuda_graph=True)



BF16_CASES = {  # network: dataset shape, rows, test rows, batch, iterations (CPU-sized, float32 data)
    "lenet_300_100": ("mnist", 700, 100, 50, 40),
    "shufflenet": ("cifar10", 80, 40, 20, 6),  # batch norms, grouped and depthwise convolutions
}


@pytest.mark.parametrize("network", BF16_CASES)
def test_a_bf16_group_member_agrees_with_solo_bf16_training(network, monkeypatch):
    """bf16 rounds differently in the stacked kernels than in solo ones, so the two agree to bf16's
    precision, not exactly; the float32 master weights and the masks must hold exactly."""
    shape, n_train, n_test, batch, iterations = BF16_CASES[network]
    data = synthetic_dataset(shape, n_train=n_train, n_test=n_test)
    val, rows = torch.arange(n_test // 2), torch.arange(n_test // 2, n_train)
    models = [m.float() for m in _models(network, 2)]
    solo_model = copy.deepcopy(models[1])  # the pruned member
    cfg = TrainConfig(iterations=iterations, batch_size=batch, eval_every=iterations // 2, weight_decay=1e-3,
                      precision="bf16")
    logits, state = [], []  # the dtype of every stacked pass's logits; the dtypes of the stack after each step

    def recorded(losses):
        def member_losses(out, y, reduction):
            logits.append((reduction, out.dtype))
            return losses(out, y, reduction)
        return member_losses
    monkeypatch.setattr(fused, "member_losses", recorded(fused.member_losses))  # training steps
    monkeypatch.setattr(network_ops, "member_losses", recorded(network_ops.member_losses))  # evaluations
    original_step = FusedStack._step

    def checked_step(stack, x, y):
        losses = original_step(stack, x, y)
        state.append({t.dtype for t in [*stack.params.values(), *stack.exp_avg.values(),
                                        *stack.exp_avg_sq.values(), *(p.grad for p in stack.params.values())]})
        return losses
    monkeypatch.setattr(FusedStack, "_step", checked_step)
    results = train_fused([TrainingJob(m, rows, val, cfg, seed=10 + k) for k, m in enumerate(models)], data,
                          progress=False)
    assert set(logits) == {("mean", torch.bfloat16), ("sum", torch.bfloat16)}  # steps and evaluations alike
    assert state and all(s == {torch.float32} for s in state)
    solo = train(solo_model, data, rows, val, cfg, seed=11, progress=False)
    fused_res, fused_model = results[1], models[1]
    assert fused_res.iterations == solo.iterations
    assert [h["iteration"] for h in fused_res.history] == [h["iteration"] for h in solo.history]
    assert [h["val_loss"] for h in fused_res.history] == pytest.approx([h["val_loss"] for h in solo.history],
                                                                        rel=0.03)
    assert fused_res.test_loss == pytest.approx(solo.test_loss, rel=0.03)
    masks = get_masks(solo_model)
    assert {n: m.shape for n, m in get_masks(fused_model).items()} == {n: m.shape for n, m in masks.items()}
    for state_dict in (fused_model.state_dict(), fused_res.best_state):
        assert all(v.dtype == torch.float32 for v in state_dict.values() if v.is_floating_point())
        assert all(torch.count_nonzero(state_dict[n][~m]) == 0 for n, m in masks.items())
