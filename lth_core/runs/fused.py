"""Horizontal fusion: K independent trainings of one network run as one stacked model.

Inside:
- `FusedMember`: one training as `lth_core.training.train` would run it (a masked model
  holding its initial weights and mask, its rows, TrainConfig, seed, rewind iteration).
- `train_fused(members, data)`: trains them together and returns one `TrainResult` per
  member, the same in meaning as `train()` on each member alone, and leaves each member's
  model in the state solo training leaves it.
- `FusedStack`: the stacked parameters, BN buffers, masks and Adam state of the members
  still training, one step of all of them, and compaction when some stop.
- `group_size(network, device, batch_size)`: how many members to fuse at once.

What each member keeps to itself: initial weights, mask, training rows, batch order (its
own generator, one permutation of its own rows per epoch: the order `train()` draws),
learning-rate schedule (its epoch length follows its own row count), Adam moments and step
count, validation curve, early-stopping checkpoint (the `EarlyStopping` of training.py,
so solo and fused stop by one definition), rewind snapshot and patience. Members may differ
in every TrainConfig field except batch_size; they must be the same network. A member that
stops is written back to its model, finished with `training.finish`, and removed from the
stack, so it costs nothing afterwards; the group ends when all have stopped.

Masks as in solo training: the stacked weights are multiplied by their masks before every
forward pass and their gradients after every backward pass, so pruned weights get exactly
zero gradient, and Adam keeps them and their moments exactly zero.

Route, measured before choosing (LeNet-300-100, batch 100, one thread of this shared 2-core
Xeon, forward + backward + a first vectorised Adam, ms per step of the whole group; solo
train() step 2.2 ms in that session):
  torch.func (stacked tensors, vmap over functional_call): K=1 7.95, 2 16.9, 4 36.7, 8 72.0
  explicit fused layers (baddbmm over [K, out, in]):       K=1 7.04, 2 14.0, 4 31.3, 8 72.9
Both cost the same at K=8, and only torch.func runs all three networks unchanged (vmap turns
convolutions, depthwise included, into grouped ones and updates batched BN running
statistics in place), so this module uses torch.func.
The excess over solo was Adam. Vectorised over the stacked tensors with [K]-shaped learning
rates and bias corrections, it takes about ten passes over the weights, allocates
weight-sized temporaries (page faults on every step) and hits torch.sqrt on exact zeros,
4.5 ms per 940K floats here against 0.36 ms on non-zeros (pruned weights' second moments
are exact zeros): 10-20 ms per step at K=4 even with kept buffers and in-place operations,
against 1.2-3.6 ms for torch's own fused Adam kernel called once per slot on the slot's
views. So `FusedStack` calls that kernel: once on the whole stack when the slots share
learning rate and weight decay (their step counts are always equal), else once per slot:
one pass, and exactly the update solo train()'s Adam(fused=True) makes.
With it (same set-up, solo and fused alternating in one process, best of 3; the machine was
loaded by other jobs, so solo itself read 6.8-9.0 ms instead of 2.2), ms per model-step:
  solo 6.9-9.0;  fused K=1 10.3-10.6, K=2 9.5-9.7, K=4 8.8-9.2, K=8 6.8-8.9
On a CPU fusion therefore buys little: one thread is already busy with one LeNet's matrix
products. The gain expected from it is on a GPU, where a solo LeNet step is launch-bound.
Validation runs per member on the member's own model (weights written back from the
stack), as `train()` evaluates, so solo and fused share every evaluation and checkpoint.

CUDA graphs (`cuda_graph=True`, CUDA only): the whole stacked step (masking, forward, backward,
gradient masking, Adam) is recorded once with `torch.cuda.graph` and replayed at every
iteration, so a step costs one launch instead of hundreds (a small network's GPU step is
launch-bound). The graph bakes in the stack's size, learning rates and weight decays, so it is
recorded again when a member stops (`keep`) or a learning rate changes, after a few untimed
warm-up steps whose effect on the weights, BN statistics and Adam state is undone. A replay runs
the recorded kernels on the same tensors, so graphed and eager steps are the same computation
(tested on a GPU: test_fused_cuda.py).
"""
import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from lth_core.data import Dataset
from lth_core.pruning import MASK_BUFFER, _apply_mask
from lth_core.training import (EarlyStopping, TrainConfig, TrainResult, adam_update, batch_order, evaluate,
                               evaluate_state, finish, iterations_per_epoch, select_numerics, state_copy)

CPU_GROUP_SIZE = 8  # on a CPU the stacked step costs about K solo steps, so more members buy nothing
# where replaying the fused step as a CUDA graph measured faster (H100, gpu-check; README): LeNet at every
# K (one graphed member 13x faster per model-step than a solo step), ShuffleNet at K <= 4 and even beyond;
# Conv-2's step is bound by its convolution kernels from K = 4 on, and the graph gained nothing there
CUDA_GRAPH_NETWORKS = ("lenet_300_100", "shufflenet")
GRAPH_WARMUP_STEPS = 3  # eager steps before a capture (lazy cuBLAS/cuDNN set-up must not happen inside it)


@dataclass
class FusedMember:
    """One training, with the arguments `train()` takes (the model holds its initial state)."""
    model: nn.Module
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    cfg: TrainConfig
    seed: int
    snapshot_at: int | None = None
    desc: str = "train"


def _structure(model: nn.Module) -> list:
    """What two models must share to be stacked: module types and every tensor's name, shape, dtype."""
    return ([(n, type(m).__name__) for n, m in model.named_modules()]
            + [(n, tuple(t.shape), t.dtype) for n, t in model.state_dict().items()])


def _template(model: nn.Module) -> nn.Module:
    """A weightless copy of the network to call functionally: no mask hooks (the stack applies
    masks to stacked tensors; the hooks would write to member-sized tensors), on the meta device."""
    template = copy.deepcopy(model)
    for module in template.modules():
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is _apply_mask:
                del module._forward_pre_hooks[key]
    return template.to("meta")


class FusedStack:
    """Stacked state of K same-network models, slot s holding member s; `step` trains all of them.

    `params`, `buffers` (BN running statistics; masks excluded), `masks` map the solo names to
    tensors with a leading member dimension; `exp_avg`, `exp_avg_sq` are Adam's moments per
    parameter; `lr` and `weight_decay` are per-slot lists, `steps` a [K] tensor of Adam step counts.
    """

    def __init__(self, models: list[nn.Module], lrs: list[float], weight_decays: list[float],
                 cuda_graph: bool = False):
        first = models[0]
        self.template = _template(first).train()  # BN uses batch statistics and updates its buffers
        masked = {f"{n}.weight" for n, m in first.named_modules() if MASK_BUFFER in m._buffers}
        with torch.no_grad():
            self.params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
                           for n, _ in first.named_parameters()}
            self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models])
                            for n, _ in first.named_buffers() if not n.endswith(MASK_BUFFER)}
            self.masks = {n: torch.stack([m.get_submodule(n.rsplit(".", 1)[0]).get_buffer(MASK_BUFFER)
                                          for m in models]) for n in masked}
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.lr, self.weight_decay = list(lrs), list(weight_decays)
        # Adam's step counts, float32 on the weights' device as torch.optim.Adam(fused=True) keeps them
        self.steps = torch.zeros(len(models), dtype=torch.float32, device=next(iter(self.params.values())).device)

        def loss(params, buffers, x, y):
            return F.cross_entropy(functional_call(self.template, (params, buffers), (x,)), y)
        self._losses = vmap(loss)
        if cuda_graph and self.steps.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs the members on a CUDA device, not {self.steps.device}")
        self.cuda_graph = cuda_graph
        self._graph = None  # (what it was recorded for, the graph, its input and output tensors)

    def __len__(self) -> int:
        return len(self.steps)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step of every slot on its batch x[s], y[s]; returns the [K] losses."""
        if not self.cuda_graph:
            return self._step(x, y)
        recorded_for = (len(self), tuple(self.lr), tuple(self.weight_decay), x.shape, y.shape, x.dtype)
        if self._graph is None or self._graph[0] != recorded_for:
            self._record(recorded_for, x, y)
        _, graph, static_x, static_y, static_losses = self._graph
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        return static_losses.clone()  # the next replay overwrites the graph's own output

    def _state(self) -> list[torch.Tensor]:
        """Every tensor a step changes (weights, BN buffers, Adam moments and step counts)."""
        return [*self.params.values(), *self.buffers.values(), *self.exp_avg.values(), *self.exp_avg_sq.values(),
                self.steps]

    def _record(self, recorded_for: tuple, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record `_step` as a CUDA graph on static copies of x and y, leaving the state as it was."""
        self._graph = None  # release the previous graph's memory before recording the next
        with torch.no_grad():
            saved = [t.clone() for t in self._state()]
        static_x, static_y = x.clone(), y.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self._step(static_x, static_y)
        torch.cuda.current_stream(x.device).wait_stream(side)
        with torch.no_grad():  # undo the warm-up in place: the graph will address these very tensors
            for t, s in zip(self._state(), saved):
                t.copy_(s)
        for p in self.params.values():
            p.grad = None  # the graph allocates the gradients from its own memory pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # recording runs nothing: the state is unchanged until a replay
            static_losses = self._step(static_x, static_y)
        self._graph = (recorded_for, graph, static_x, static_y, static_losses)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The step itself, eager (or being recorded)."""
        with torch.no_grad():  # as the solo pre-hook: nothing written to a pruned weight reaches the output
            for name, mask in self.masks.items():
                self.params[name].mul_(mask)
        losses = self._losses(self.params, self.buffers, x, y)
        for p in self.params.values():
            p.grad = None
        # the slots share no parameter, so the gradient of the sum is each slot's own gradient
        losses.sum().backward()
        with torch.no_grad():
            for name, mask in self.masks.items():
                self.params[name].grad.mul_(mask)
            self._adam()
        return losses.detach()

    def _adam(self) -> None:
        """torch.optim.Adam(fused=True)'s update: its own kernel, on all slots at once when they share
        learning rate and weight decay (their step counts are always equal: every slot steps at every
        iteration), else slot by slot on each slot's views.

        Chosen by measurement over a vectorised Adam on the stacked tensors with [K]-shaped
        learning rates and bias corrections (module docstring): that one makes ten passes
        over the weights, the fused kernel one, and solo and fused then run the same update.
        One call for the whole stack matters on a GPU, where K calls are K kernel launches.
        """
        self.steps += 1
        names = list(self.params)
        if len(set(self.lr)) == 1 and len(set(self.weight_decay)) == 1:
            groups = [(slice(None), self.lr[0], self.weight_decay[0])]
        else:
            groups = [(slot, self.lr[slot], self.weight_decay[slot]) for slot in range(len(self))]
        for where, lr, wd in groups:
            # one step tensor per parameter as the kernel expects; every slot and parameter shares the count
            adam_update([self.params[n][where] for n in names], [self.params[n].grad[where] for n in names],
                        [self.exp_avg[n][where] for n in names], [self.exp_avg_sq[n][where] for n in names],
                        [self.steps[0]] * len(names), lr, wd)

    @torch.no_grad()
    def write_back(self, slot: int, model: nn.Module) -> None:
        """Copy slot `slot`'s parameters and BN buffers into `model` (masks never change)."""
        for name, p in model.named_parameters():
            p.copy_(self.params[name][slot])
        for name, b in model.named_buffers():
            if name in self.buffers:
                b.copy_(self.buffers[name][slot])

    def keep(self, slots: list[int]) -> None:
        """Drop every slot not in `slots` (in that order), so stopped members cost nothing."""
        self._graph = None  # it addresses the old tensors
        idx = torch.tensor(slots, device=self.steps.device)
        with torch.no_grad():
            self.params = {n: p.detach().index_select(0, idx).requires_grad_() for n, p in self.params.items()}
            for table in (self.buffers, self.masks, self.exp_avg, self.exp_avg_sq):
                for n, t in table.items():
                    table[n] = t.index_select(0, idx)
        self.lr, self.weight_decay = [self.lr[s] for s in slots], [self.weight_decay[s] for s in slots]
        self.steps = self.steps.index_select(0, idx)


class _Run:
    """One member's bookkeeping: its rows, generator, epoch order, schedule, validations, snapshot."""

    def __init__(self, member: FusedMember):
        self.train_idx = member.train_idx.cpu()
        self.member, self.cfg = member, member.cfg.budget_for(len(self.train_idx))  # as train() resolves it
        self.gen = torch.Generator().manual_seed(member.seed)
        self.per_epoch = iterations_per_epoch(len(self.train_idx), self.cfg.batch_size)
        self.batch = min(self.cfg.batch_size, len(self.train_idx))
        self.stopping = EarlyStopping(self.cfg, member.snapshot_at)
        self.snapshot = state_copy(member.model) if member.snapshot_at == 0 else None
        self.order, self.lr = None, self.cfg.lr

    def rows(self, it: int, device) -> torch.Tensor:
        """Training rows of iteration it + 1, as train() draws them (a new order each epoch)."""
        step = it % self.per_epoch
        if step == 0:
            self.order = batch_order(self.train_idx, self.gen, device)
            self.lr = self.cfg.lr_at_epoch(it // self.per_epoch)
        return self.order[step * self.batch:(step + 1) * self.batch]


def check_members(members: list[FusedMember]) -> None:
    """Raise ValueError unless the members can train as one stack."""
    if not members:
        raise ValueError("train_fused needs at least one member")
    for i, m in enumerate(members):
        if len(m.train_idx) == 0:
            raise ValueError(f"member {i} ({m.desc}): no training rows: the training split is empty")
    batches = {min(m.cfg.batch_size, len(m.train_idx)) for m in members}
    if len(batches) > 1:
        raise ValueError(f"fused members must share one batch size, got {sorted(batches)} "
                         "(batch_size, or fewer training rows than it); group them by batch size")
    reference = _structure(members[0].model)
    for i, m in enumerate(members[1:], start=1):
        if _structure(m.model) != reference:
            raise ValueError(f"fused members must be the same network (module types, parameter names, shapes "
                             f"and dtypes): member {i} ({m.desc}) differs from member 0 ({members[0].desc})")
    devices = {p.device for m in members for p in m.model.parameters()}
    if len(devices) > 1:
        raise ValueError(f"fused members' models are on different devices: {sorted(map(str, devices))}")


def uses_cuda_graph(network: str, device) -> bool:
    """Whether the runner replays `network`'s fused step as a CUDA graph on `device` (where it measured faster)."""
    return torch.device(device).type == "cuda" and network in CUDA_GRAPH_NETWORKS


def train_fused(members: list[FusedMember], data: Dataset, progress: bool = True,
                eval_batch: int = 1000, cuda_graph: bool = False) -> list[TrainResult]:
    """Train every member as `train()` would alone, all at once; see the module docstring.

    `cuda_graph`: replay the step as a CUDA graph (CUDA only; `uses_cuda_graph` says where it pays)."""
    check_members(members)
    device = data.device
    select_numerics(device)
    for m in members:
        m.model.train()
    runs = [_Run(m) for m in members]
    stack = FusedStack([m.model for m in members], [r.lr for r in runs], [m.cfg.weight_decay for m in members],
                       cuda_graph=cuda_graph)
    results: list[TrainResult | None] = [None] * len(members)
    active = list(range(len(members)))  # member index of each stack slot
    t0, it = time.perf_counter(), 0
    bar = tqdm(total=max(r.cfg.iterations for r in runs), desc=f"fused x{len(members)}",
               disable=not progress, leave=False, mininterval=1.0)
    while active:
        rows = torch.cat([runs[k].rows(it, device) for k in active])
        x, y = data.train_batch(rows)
        stack.lr = [runs[k].lr for k in active]
        losses = stack.step(x.view(len(active), -1, *x.shape[1:]), y.view(len(active), -1))
        it += 1
        stopped = []
        for slot, k in enumerate(active):
            run, member = runs[k], members[k]
            due = run.stopping.due(it)
            if it == member.snapshot_at or due:
                stack.write_back(slot, member.model)
            if it == member.snapshot_at:
                run.snapshot = state_copy(member.model)
            if due:
                vl, va = evaluate(member.model, data.train_batches(member.val_idx, eval_batch))
                patience_out = run.stopping.record(it, vl, va, losses[slot].item(), run.lr,
                                                   lambda: state_copy(member.model))
                if run.stopping.probe_due():
                    run.stopping.probe(evaluate_state(member.model, run.stopping.best[3],
                                                      data.test_batches(eval_batch))[1])
                if patience_out or it == run.cfg.iterations:  # an evaluation always ends a budget
                    results[k] = finish(member.model, data, run.stopping, it, t0, run.snapshot, eval_batch)
                    results[k].group_size = len(members)
                    stopped.append(slot)
        if stopped:
            keep = [s for s in range(len(active)) if s not in stopped]
            active = [active[s] for s in keep]
            if active:
                stack.keep(keep)
        bar.update(1)
    bar.close()
    return results


def group_size(network: str, device, batch_size: int) -> int:
    """How many members of `network` to fuse at once on `device`.

    CPU: `CPU_GROUP_SIZE` (a fused step costs about K solo steps there, so larger groups only
    delay the first results). CUDA: half the free memory over a per-member estimate: five
    copies of the weights (weights, gradient, two Adam moments, mask) plus three floats per
    activation of a batch (output, saved input, gradient), counted on one forward pass.
    """
    from lth_core.models import build_model
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_GROUP_SIZE
    model = build_model(network)
    shape = (1, 28, 28) if network == "lenet_300_100" else (3, 32, 32)
    activations = 0

    def count(module, args, out):
        nonlocal activations
        activations += out.numel()
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    with torch.no_grad():
        model(torch.zeros(2, *shape))
    for h in handles:
        h.remove()
    weights = sum(p.numel() for p in model.parameters())
    per_member = 4 * (5 * weights + 3 * activations // 2 * batch_size)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(64, free // 2 // per_member))
