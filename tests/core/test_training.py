import copy
import dataclasses

import pytest
import torch

from conftest import synthetic_dataset
from lth_core.data import validation_split
from lth_core.models import build_model
from lth_core.pruning import attach_masks, get_masks, set_masks
from lth_core import training
from lth_core.config import TrainConfig
from lth_core.training import TEST_PROBE_AFTER, budget_bound, evaluate, train

CFG = TrainConfig(iterations=60, batch_size=50, lr=1e-3, eval_every=10)


def _run(cfg=CFG, seed=0, **kw):
    data = synthetic_dataset()
    tr, va = validation_split(len(data.train_y), 200, seed=0)
    model = attach_masks(build_model("lenet_300_100", seed=0))
    return train(model, data, tr, va, cfg, seed=seed, progress=False, **kw), model


def test_same_seed_same_numbers_on_cpu():
    (a, ma), (b, mb) = _run(), _run()
    assert a.history == b.history and a.test_acc == b.test_acc and a.es_iteration == b.es_iteration
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    c, _ = _run(seed=1)
    assert c.history != a.history


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("network", ["lenet_300_100", "conv2", "shufflenet"])
def test_same_seed_same_numbers_on_cuda(network):
    from lth_core.programs.benchmark import synthetic_dataset as shaped_like
    from lth_core.models import DATASET_OF
    data = shaped_like(DATASET_OF[network], torch.device("cuda"), 50)
    cfg = TrainConfig(iterations=20, batch_size=50, eval_every=10)
    runs = []
    for _ in range(2):
        model = attach_masks(build_model(network, seed=0)).cuda()
        res = train(model, data, torch.arange(100, 2000), torch.arange(100), cfg, seed=0, progress=False)
        runs.append((res.history, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1].values(), runs[1][1].values()))


def test_training_on_a_cpu_flushes_subnormal_floats():
    torch.set_flush_denormal(False)  # an earlier training in this process has set it
    subnormal = torch.tensor([1e-39])
    assert (subnormal * 1.0).item() != 0.0
    train(build_model("lenet_300_100", seed=0), synthetic_dataset(), torch.arange(100, 300), torch.arange(100),
          TrainConfig(iterations=2, batch_size=50, eval_every=1), seed=0, progress=False)
    assert (subnormal * 1.0).item() == 0.0  # computed as zero from here on


def test_deterministic_kernels_turn_tf32_off():
    """PyTorch's default lets cuDNN convolve float32 in TF32; the deterministic path must not."""
    from lth_core.training import select_deterministic_kernels
    cudnn, conv, matmul = torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = cudnn.deterministic, cudnn.benchmark, conv.fp32_precision, matmul.fp32_precision
    try:
        conv.fp32_precision = matmul.fp32_precision = "tf32"
        select_deterministic_kernels()
        assert conv.fp32_precision == "ieee" and matmul.fp32_precision == "ieee"
        assert cudnn.deterministic is True and cudnn.benchmark is False
    finally:
        cudnn.deterministic, cudnn.benchmark, conv.fp32_precision, matmul.fp32_precision = saved


def test_tf32_precision_selects_tf32_kernels_on_cuda_and_float32_selects_them_off():
    cudnn, conv, matmul = torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = cudnn.deterministic, cudnn.benchmark, conv.fp32_precision, matmul.fp32_precision
    try:
        training.select_numerics("cuda", "tf32")
        assert conv.fp32_precision == "tf32" and matmul.fp32_precision == "tf32"
        assert cudnn.deterministic is True and cudnn.benchmark is False  # still the deterministic algorithms
        training.select_numerics("cuda", "float32")
        assert conv.fp32_precision == "ieee" and matmul.fp32_precision == "ieee"
    finally:
        cudnn.deterministic, cudnn.benchmark, conv.fp32_precision, matmul.fp32_precision = saved


def test_tf32_on_a_cpu_is_refused_in_one_line_before_training():
    model = attach_masks(build_model("lenet_300_100", seed=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^precision 'tf32' needs a CUDA device .*use 'float32' or 'bf16' there$"):
        _run(dataclasses.replace(CFG, precision="tf32"))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train(model, synthetic_dataset(), torch.arange(100, 300), torch.arange(100),
              dataclasses.replace(CFG, precision="tf32"), seed=0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bf16_computes_in_bfloat16_keeps_float32_weights_and_pruned_weights_exactly_zero(monkeypatch):
    data = synthetic_dataset()
    tr, va = validation_split(len(data.train_y), 200, seed=0)
    model = attach_masks(build_model("lenet_300_100", seed=0))
    masks = {n: torch.rand(m.shape, generator=torch.Generator().manual_seed(1)) > 0.6
             for n, m in get_masks(model).items()}
    set_masks(model, masks)
    same_in_float32 = copy.deepcopy(model)
    computed = []  # the dtype each forward pass of the first layer computed in (training and evaluation)
    model.fc1.register_forward_hook(lambda module, args, out: computed.append((module.training, out.dtype)))
    states = []
    original_step = training.Adam.step

    def checked_step(opt):
        original_step(opt)
        states.append({t.dtype for t in [*opt.params, *(p.grad for p in opt.params), *opt.exp_avg, *opt.exp_avg_sq]})
    monkeypatch.setattr(training.Adam, "step", checked_step)
    cfg = dataclasses.replace(CFG, precision="bf16", weight_decay=1e-2)
    res = train(model, data, tr, va, cfg, seed=0, progress=False)
    assert {dtype for _, dtype in computed} == {torch.bfloat16}
    assert {mode for mode, _ in computed} == {True, False}  # training steps and evaluations alike
    assert states and all(s == {torch.float32} for s in states)  # master weights, gradients and Adam's state
    for state in (model.state_dict(), res.best_state):
        assert all(v.dtype == torch.float32 for k, v in state.items() if v.is_floating_point())
        for name, mask in masks.items():
            assert torch.count_nonzero(state[name][~mask]) == 0
            assert torch.count_nonzero(state[name][mask]) == int(mask.sum())  # the live weights trained
    float32 = train(same_in_float32, data, tr, va, dataclasses.replace(cfg, precision="float32"), seed=0,
                    progress=False)
    assert [h["val_loss"] for h in res.history] != [h["val_loss"] for h in float32.history]  # bf16 did round
    assert [h["val_loss"] for h in res.history] == pytest.approx([h["val_loss"] for h in float32.history], rel=0.05)


def test_learns_and_reports_the_best_validation_checkpoint():
    res, _ = _run()
    assert [h["iteration"] for h in res.history] == [10, 20, 30, 40, 50, 60]
    best = min(res.history, key=lambda h: h["val_loss"])
    assert res.es_iteration == best["iteration"] and res.val_loss == best["val_loss"]
    assert res.test_acc > 50  # synthetic classes are easy; chance is 10%


def test_accuracy_criterion_picks_max_val_acc():
    res, _ = _run(dataclasses.replace(CFG, criterion="val_acc"))
    best = max(res.history, key=lambda h: h["val_acc"])  # first maximum wins
    assert res.es_iteration == best["iteration"]


def test_test_accuracy_is_that_of_the_early_stopping_checkpoint():
    res, model = _run()
    from lth_core.training import evaluate
    model.load_state_dict(res.best_state)
    assert evaluate(model, synthetic_dataset().test_batches())[1] == res.test_acc


def test_patience_stops_once_best_is_old():
    cfg = dataclasses.replace(CFG, iterations=2000, eval_every=5, lr=5e-2, patience=2)
    res, _ = _run(cfg)
    assert res.iterations < 2000
    assert res.history[-1]["iteration"] - res.es_iteration == 2 * 5


def test_snapshot_equals_a_shorter_run():
    full, _ = _run(snapshot_at=25)
    _, short = _run(dataclasses.replace(CFG, iterations=25, eval_every=25))
    assert all(torch.equal(full.snapshot_state[k], v) for k, v in short.state_dict().items())


@pytest.mark.parametrize("sched,expected", [("constant", [1.0, 1.0, 1.0, 1.0]), ("step", [1.0, 1.0, 0.1, 0.1]),
                                            ("exponential", [1.0, 0.5, 0.25, 0.125])])
def test_lr_schedules(sched, expected):
    gamma = 0.1 if sched == "step" else 0.5
    cfg = TrainConfig(lr=1.0, lr_schedule=sched, lr_gamma=gamma, lr_step_epochs=2)
    assert [cfg.lr_at_epoch(e) for e in range(4)] == pytest.approx(expected)


@pytest.mark.parametrize("bad,match", [({"lr_schedule": "cosine"}, "constant, step, exponential"),
                                       ({"criterion": "acc"}, "val_loss, val_acc"),
                                       ({"iterations": 0}, "an integer >= 1"), ({"lr": -1}, "lr = -1 is out of range"),
                                       ({"patience": 0}, "patience"), ({"epochs": 0}, "epochs"),
                                       ({"epochs": float("nan")}, "epochs"),
                                       ({"precision": "fp16"}, "precision = 'fp16' is out of range; valid: one of float32, tf32, bf16")])
def test_bad_train_config_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_an_epoch_budget_is_that_many_epochs_of_the_rows_at_hand():
    cfg = TrainConfig(batch_size=100, epochs=20)
    assert cfg.budget_for(55_000).iterations == 11_000 and cfg.budget_for(5_500).iterations == 1_100
    assert cfg.budget_for(5_500).epochs is None  # resolved: a number of iterations again
    assert TrainConfig(iterations=123).budget_for(10) == TrainConfig(iterations=123)
    assert TrainConfig(batch_size=50, epochs=0.5).budget_for(40).iterations == 1  # never below one step
    res, _ = _run(dataclasses.replace(CFG, epochs=2))  # 700 rows at batch 50: 14 steps per epoch
    assert res.iterations == 28 and res.history[-1]["iteration"] == 28


def test_budget_bound_is_the_last_tenth_of_the_budget():
    assert not budget_bound(900, 1000) and budget_bound(901, 1000) and budget_bound(1000, 1000)


def test_a_checkpoint_best_for_long_enough_has_its_test_accuracy_probed(monkeypatch):
    # a high learning rate makes validation loss turn up early, so the best checkpoint goes stale
    cfg = dataclasses.replace(CFG, iterations=600, eval_every=5, lr=5e-2)
    res, model = _run(cfg)
    probed = [h for h in res.history if "test_acc" in h]
    assert probed, "no checkpoint stayed best long enough; the test needs one"
    for point in probed:
        i = res.history.index(point)
        later = res.history[i + 1:i + 1 + TEST_PROBE_AFTER]
        assert len(later) == TEST_PROBE_AFTER and all(h["val_loss"] >= point["val_loss"] for h in later)
    final = next(h for h in res.history if h["iteration"] == res.es_iteration)
    if "test_acc" in final:  # the final checkpoint's probe is the reported test accuracy
        assert final["test_acc"] == res.test_acc
    # probing only evaluates: the same training without it gives the same numbers
    import lth_core.training as training
    monkeypatch.setattr(training, "TEST_PROBE_AFTER", 10**9)
    again, model_again = _run(cfg)
    assert not any("test_acc" in h for h in again.history)
    assert [{k: v for k, v in h.items() if k != "test_acc"} for h in res.history] == again.history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model_again.state_dict().values()))


@pytest.mark.parametrize("network", ["lenet_300_100", "shufflenet"])
def test_adam_makes_torch_fused_adams_update_bit_for_bit(network):
    """training.Adam calls torch's fused kernel without torch's wrapper: weights and moments equal
    torch.optim.Adam(fused=True)'s exactly, learning-rate changes and masked gradients included."""
    ours, ref = build_model(network, seed=0), build_model(network, seed=0)
    masks = get_masks(attach_masks(ours))
    masks[next(iter(masks))][0] = False  # a pruned row: zero gradients and zero moments throughout
    for model in (ours, attach_masks(ref)):
        set_masks(model, masks)
    opt = training.make_optimizer(ours, TrainConfig(lr=3e-3, weight_decay=1e-3))
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3, weight_decay=1e-3, fused=True)
    shape = (8, 1, 28, 28) if network == "lenet_300_100" else (4, 3, 32, 32)
    torch.manual_seed(0)
    for step in range(6):
        if step == 3:
            opt.lr = ref_opt.param_groups[0]["lr"] = 1e-3
        x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            o.step()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
    for p, m, v, s in zip(ref.parameters(), opt.exp_avg, opt.exp_avg_sq, opt.steps):
        state = ref_opt.state[p]
        assert torch.equal(m, state["exp_avg"]) and torch.equal(v, state["exp_avg_sq"])
        assert float(s) == float(state["step"]) == 6.0


def test_a_rewind_snapshot_outside_the_resolved_budget_is_refused_before_training():
    # 2 epochs of 200 rows at batch 50 are 8 iterations: a snapshot at 10 would never be taken
    cfg = TrainConfig(epochs=2, batch_size=50, eval_every=4)
    model = attach_masks(build_model("lenet_300_100", seed=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="snapshot at iteration 10 lies outside this training's budget of 8"):
        train(model, synthetic_dataset(), torch.arange(100, 300), torch.arange(100), cfg, seed=0, snapshot_at=10,
              progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
