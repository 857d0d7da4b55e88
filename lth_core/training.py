"""Training with early stopping: Adam, learning-rate schedules, periodic validation.

`TrainConfig` holds the optimisation settings; `train(...)` runs a fixed
iteration budget on a set of training rows (indices into the dataset), evaluates
on the validation rows every `eval_every` iterations, and reports the
early-stopping iteration: the evaluation with the best validation score
(`criterion`: minimum loss, Frankle & Carbin; or maximum accuracy, the paper's
authors). The test accuracy reported is that checkpoint's on the full test set.
With `patience`, training stops once the best is that many evaluations old.

The budget is `iterations`, or with `epochs` that many epochs of the training
rows at hand (`budget_for(n_rows)` resolves it: the authors' protocol, 20 epochs,
gives a 10% subset a tenth of the full pool's iterations). An early-stopping
iteration in the last tenth of its budget is `budget_bound`: a longer budget
might have moved it.

Each curve point may carry `test_acc`: when a checkpoint has stayed the best for
`TEST_PROBE_AFTER` evaluations, train() measures its test accuracy once and
writes it on that checkpoint's point. Any patience rule of at least that many
evaluations stops at such a checkpoint, so full-budget curves tell what test
accuracy every such rule would have reported (`studies/stopping.py`); the probe
is rare, evaluates only, and leaves training's numbers unchanged.

Minibatches are drawn by index from a seeded permutation per epoch (the last
incomplete batch of an epoch is dropped, so every step sees `batch_size` rows);
the learning rate changes at epoch boundaries.

Same seed, same device, same numbers: `train()` first calls `select_numerics(device,
precision)`. On a CPU (at a fixed torch thread count) that flushes subnormal floats to zero
(`flush_cpu_denormals`); on CUDA it selects cuDNN's deterministic algorithms, no
autotuning, no TF32 (`select_deterministic_kernels`; cuBLAS's workspace is fixed when
lth_core is imported), unless the precision asks for TF32.

Precision (`TrainConfig.precision`, one of `PRECISIONS`): `float32` computes everything in
float32 (exact, the default); `tf32` lets CUDA's matrix products and convolutions round their
inputs to TF32 on tensor cores (CUDA only); `bf16` runs every forward pass (training, validation,
test) under `autocast` to bfloat16, so the products and convolutions and their backward run in
bfloat16, while the weights, gradients, Adam's state and the masks stay float32: the masks
multiply the float32 weights and gradients, so pruned weights stay exactly zero.
"""
import contextlib
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lth_core.config import TrainConfig, iterations_per_epoch
from lth_core.data import Dataset

BUDGET_BOUND_FRACTION = 0.9  # an early stop after this share of the budget is budget-bound
TEST_PROBE_AFTER = 10  # evaluations a checkpoint stays best before its test accuracy is probed


def budget_bound(es_iteration, budget):
    """Whether early stopping fell in the last tenth of the budget (works on numbers and pandas columns)."""
    return es_iteration > BUDGET_BOUND_FRACTION * budget


@dataclass
class TrainResult:
    es_iteration: int  # iteration of the best validation score
    val_loss: float  # at early stopping
    val_acc: float
    test_acc: float  # at early stopping, full test set
    test_loss: float
    iterations: int  # iterations actually run
    wall_seconds: float
    history: list[dict] = field(repr=False)  # one dict per evaluation
    best_state: dict = field(repr=False)  # model state_dict at early stopping (CPU)
    snapshot_state: dict | None = field(default=None, repr=False)  # state at `snapshot_at`, for rewinding
    # trainings that took their steps together (runs.fused); above 1, wall_seconds is the time from the
    # group's start to this one's stop, shared with the others, not what this training alone costs
    group_size: int = 1


@torch.no_grad()
def evaluate(model: nn.Module, batches, precision: str = "float32") -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) over an iterable of (x, y) batches, computed in `precision`."""
    was_training = model.training
    model.eval()
    loss = correct = n = 0
    for x, y in batches:
        with autocast(x.device, precision):
            out = model(x)
            loss = loss + F.cross_entropy(out, y, reduction="sum")
        correct = correct + (out.argmax(1) == y).sum()
        n += len(y)
    model.train(was_training)
    if n == 0:
        raise ValueError("cannot evaluate on an empty set of rows")
    return float(loss) / n, 100.0 * float(correct) / n


ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the authors used it
ADAM_EPS = 1e-8


def adam_update(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list, steps: list,
                lr: float, weight_decay: float) -> None:
    """One Adam update in place with torch.optim.Adam(fused=True)'s own kernel: one pass over each tensor.

    `steps` holds each tensor's step count after this step (scalar tensors on the weights' device).
    Solo `Adam` and the fused stack both call this, so both make exactly torch's update."""
    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr,
                       beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], weight_decay=weight_decay, eps=ADAM_EPS,
                       amsgrad=False, maximize=False)


class Adam:
    """Adam over a model's parameters: the update torch.optim.Adam(fused=True) makes, without its wrapper.

    The fused kernel makes one pass per tensor and no slowdown on the exact zeros pruned weights keep
    in Adam's state (torch.sqrt on zero entries is several times slower on a CPU). The wrapper around
    it (profiler record, per-step state checks and grouping) cost a LeNet step 0.1-0.25 ms here, about
    as much as the kernel itself. `lr` may change between steps. Tested equal, bit for bit, to
    torch.optim.Adam(fused=True)."""

    def __init__(self, params, lr: float, weight_decay: float):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay = lr, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # one count per tensor, float32 on its device, as torch.optim.Adam(fused=True) keeps them
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient (Adam skips the others, state untouched, as torch's)."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params, exp_avg, exp_avg_sq, steps = ([xs[i] for i in live]
                                              for xs in (self.params, self.exp_avg, self.exp_avg_sq, self.steps))
        torch._foreach_add_(steps, 1)
        adam_update(params, [p.grad for p in params], exp_avg, exp_avg_sq, steps, self.lr, self.weight_decay)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> Adam:
    """The optimiser `cfg.optimizer` names (TrainConfig admits Adam only), over the model's parameters."""
    return Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def flush_cpu_denormals() -> None:
    """On a CPU, compute subnormal floats (below 1.2e-38) as zero, for the rest of the process.

    LeNet's first-layer weights fed by always-black MNIST pixels get no gradient but weight decay,
    which shrinks them through the subnormal range, where x86 arithmetic takes slow microcode
    assists that slow every step (docs/decisions.md has the measurement).
    Flushing changes values below 1.2e-38 only; the run store records it (`cpu_denormals`)."""
    torch.set_flush_denormal(True)


def select_deterministic_kernels() -> None:
    """cuDNN: deterministic algorithms only, no per-shape autotuning (which may pick differently per run);
    convolutions and matrix products in full float32, not TF32.

    PyTorch lets cuDNN run float32 convolutions in TF32 by default (10-bit mantissas: the gpu-check
    profile of a fused Conv-2 step showed TF32 kernels), so a GPU run would not be the float32
    computation a CPU run is."""
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    _tf32_kernels(False)


def allow_tf32_kernels() -> None:
    """CUDA: let float32 convolutions and matrix products round their inputs to TF32 (tensor cores)."""
    _tf32_kernels(True)


def _tf32_kernels(on: bool) -> None:
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9: per-backend precision settings
        torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on


def check_precision(precision: str, device) -> None:
    """Raise ValueError unless `precision` (a valid `config.PRECISIONS` name) runs on `device`."""
    if precision == "tf32" and torch.device(device).type != "cuda":
        raise ValueError(f"precision 'tf32' needs a CUDA device (TF32 is a GPU tensor-core format), not "
                         f"{torch.device(device).type}; use 'float32' or 'bf16' there")


def select_numerics(device, precision: str = "float32") -> None:
    """What makes the same seed give the same numbers on `device` (train() and the fused trainer
    call it): deterministic kernels on CUDA, in full float32 unless `precision` is tf32; subnormal
    floats flushed on a CPU. The one switch of a training's numerics: every setting is made here."""
    check_precision(precision, device)
    if torch.device(device).type == "cuda":
        select_deterministic_kernels()
        if precision == "tf32":
            allow_tf32_kernels()
    else:
        flush_cpu_denormals()


def autocast(device, precision: str):
    """The context a forward pass (and its loss) runs in: bfloat16 autocast for `bf16`, else none.

    Autocast's cache of cast weights is off: each weight is cast once per step anyway, and a CUDA
    graph cannot record a step that keeps cast copies from one replay to the next."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)


def state_copy(model: nn.Module) -> dict:
    """A detached CPU copy of the model's state_dict (checkpoints survive further training)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class EarlyStopping:
    """The bookkeeping of one training's validations: history, best checkpoint, patience.

    `record(it, val_loss, val_acc, train_loss, lr, state_fn)` appends one evaluation to
    `history`, keeps `state_fn()` when the score is the best so far, and returns True when
    patience has run out. Solo and fused training share it, so both stop at the same iteration.
    `probe_due()` says when the best checkpoint has just stayed best `TEST_PROBE_AFTER`
    evaluations; `probe(test_acc)` writes its test accuracy on its curve point.
    `snapshot_at`: the iteration whose weights late rewinding keeps; patience never stops the
    training before it (else the run would silently rewind to nothing), and it must lie in the budget.
    Under a step schedule (`per_epoch`, the training's iterations per epoch, places its drops) patience
    never stops a training while a learning-rate drop is still ahead in its budget, and counts afresh
    after each drop: a drop often brings the validation score down again, so evaluations before it say
    little about what follows (`studies/stopping.py` replays the same rule on stored curves).
    """

    def __init__(self, cfg: TrainConfig, snapshot_at: int | None = None, per_epoch: int | None = None):
        if snapshot_at is not None and not 0 <= snapshot_at <= cfg.iterations:
            raise ValueError(f"the rewind snapshot at iteration {snapshot_at} lies outside this training's budget "
                             f"of {cfg.iterations} iterations; choose a rewind iteration within it")
        self.cfg, self.hold_until = cfg, snapshot_at or 0
        self.history: list[dict] = []
        self.best_score = None
        self.best: tuple | None = None  # (iteration, val_loss, val_acc, state)
        self.best_point: dict | None = None  # the best checkpoint's curve point
        self.stale = 0
        # the learning rate of the budget's last step (the evaluation at iteration it reports the rate its
        # step `it` ran at); below the current rate, a drop is still ahead
        self.final_lr = (cfg.lr_at_epoch((cfg.iterations - 1) // per_epoch)
                         if cfg.lr_schedule == "step" and per_epoch else None)

    def record(self, it: int, val_loss: float, val_acc: float, train_loss: float, lr: float, state_fn) -> bool:
        if self.final_lr is not None and self.history and lr < self.history[-1]["lr"]:  # a step drop
            self.stale = 0
        self.history.append({"iteration": it, "val_loss": val_loss, "val_acc": val_acc,
                             "train_loss": train_loss, "lr": lr})
        score = val_loss if self.cfg.criterion == "val_loss" else -val_acc
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best, self.stale = score, (it, val_loss, val_acc, state_fn()), 0
            self.best_point = self.history[-1]
        else:
            self.stale += 1
        drop_ahead = self.final_lr is not None and self.final_lr < lr
        return (self.cfg.patience is not None and self.stale >= self.cfg.patience and it >= self.hold_until
                and not drop_ahead)

    def probe_due(self) -> bool:
        return self.stale == TEST_PROBE_AFTER

    def probe(self, test_acc: float) -> None:
        self.best_point["test_acc"] = test_acc

    def due(self, it: int) -> bool:
        """Whether iteration `it` (1-based, just finished) is an evaluation point."""
        return it % self.cfg.eval_every == 0 or it == self.cfg.iterations


def batch_order(train_idx: torch.Tensor, gen: torch.Generator, device) -> torch.Tensor:
    """One epoch's row order: a seeded permutation of the training rows."""
    return train_idx[torch.randperm(len(train_idx), generator=gen)].to(device)


def evaluate_state(model: nn.Module, state: dict, batches, precision: str = "float32") -> tuple[float, float]:
    """`evaluate` of the weights `state`; the model keeps its own state."""
    current = state_copy(model)
    model.load_state_dict(state)
    try:
        return evaluate(model, batches, precision)
    finally:
        model.load_state_dict(current)


def finish(model: nn.Module, data: Dataset, stopping: EarlyStopping, iterations: int, t0: float,
           snapshot: dict | None, eval_batch: int, test: tuple[float, float] | None = None) -> TrainResult:
    """Evaluate the early-stopping checkpoint on the test set; the model keeps its last state.

    `test`: the checkpoint's (test loss, test accuracy) when the caller has evaluated it already
    (the fused trainer evaluates its members' checkpoints together)."""
    es_it, vl, va, best_state = stopping.best
    test_loss, test_acc = test or evaluate_state(model, best_state, data.test_batches(eval_batch),
                                                 stopping.cfg.precision)
    return TrainResult(es_iteration=es_it, val_loss=vl, val_acc=va, test_acc=test_acc, test_loss=test_loss,
                       iterations=iterations, wall_seconds=time.perf_counter() - t0, history=stopping.history,
                       best_state=best_state, snapshot_state=snapshot)


def train_step(model: nn.Module, opt: Adam, x: torch.Tensor, y: torch.Tensor, precision: str) -> torch.Tensor:
    """One step of `train()`: forward and loss under the precision's autocast, backward, Adam; the loss."""
    with autocast(x.device, precision):  # the mask hooks still multiply the float32 weights
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


@dataclass
class TrainingJob:
    """One training, with the arguments `train()` takes (the model holds its initial state): the one
    type solo training (`train_job`), worker processes (`runs/parallel.py`) and fused training
    (`runs/fused.py`) all take."""
    model: nn.Module
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    cfg: TrainConfig
    seed: int
    snapshot_at: int | None = None
    desc: str = "train"


def train_job(job: TrainingJob, data: Dataset, progress: bool = False) -> TrainResult:
    """`train()` on `job`'s model, rows and settings."""
    return train(job.model, data, job.train_idx, job.val_idx, job.cfg, seed=job.seed, snapshot_at=job.snapshot_at,
                 progress=progress, desc=job.desc)


def train(model: nn.Module, data: Dataset, train_idx: torch.Tensor, val_idx: torch.Tensor,
          cfg: TrainConfig, seed: int, snapshot_at: int | None = None,
          progress: bool = True, desc: str = "train", eval_batch: int = 1000) -> TrainResult:
    """Train `model` in place on rows `train_idx`; see the module docstring."""
    if len(train_idx) == 0:
        raise ValueError("no training rows: the training split is empty")
    cfg = cfg.budget_for(len(train_idx))
    device = data.device
    select_numerics(device, cfg.precision)
    gen = torch.Generator().manual_seed(seed)
    train_idx = train_idx.cpu()
    per_epoch = iterations_per_epoch(len(train_idx), cfg.batch_size)
    bs = min(cfg.batch_size, len(train_idx))
    opt = make_optimizer(model, cfg)
    model.train()
    stopping = EarlyStopping(cfg, snapshot_at, per_epoch)
    snapshot = state_copy(model) if snapshot_at == 0 else None
    t0, it, stop, order = time.perf_counter(), 0, False, None
    bar = tqdm(total=cfg.iterations, desc=desc, disable=not progress, leave=False, mininterval=1.0)
    while it < cfg.iterations and not stop:
        step = it % per_epoch
        if step == 0:  # a new epoch: new order, the epoch's learning rate
            order = batch_order(train_idx, gen, device)
            opt.lr = cfg.lr_at_epoch(it // per_epoch)
        x, y = data.train_batch(order[step * bs:(step + 1) * bs])
        loss = train_step(model, opt, x, y, cfg.precision)
        it += 1
        if it == snapshot_at:
            snapshot = state_copy(model)
        if stopping.due(it):
            vl, va = evaluate(model, data.train_batches(val_idx, eval_batch), cfg.precision)
            stop = stopping.record(it, vl, va, loss.item(), opt.lr, lambda: state_copy(model))
            if stopping.probe_due():
                stopping.probe(evaluate_state(model, stopping.best[3], data.test_batches(eval_batch),
                                              cfg.precision)[1])
            bar.update(it - bar.n)
            bar.set_postfix(val_acc=f"{va:.2f}", best_it=stopping.best[0], refresh=False)
    bar.close()
    return finish(model, data, stopping, it, t0, snapshot, eval_batch)
