"""Horizontal fusion: K independent trainings of one network run as one stacked model.

Inside:
- the members are `training.TrainingJob`s, each one training as `training.train` would run it (a
  masked model holding its initial weights and mask, its rows, TrainConfig, seed, rewind iteration).
- `train_fused(members, data)`: trains them together and returns one `TrainResult` per
  member, the same in meaning as `train()` on each member alone, and leaves each member's
  model in the state solo training leaves it.
- `FusedStack`: the stacked parameters, BN buffers, masks and Adam state of the members
  still training, one step of all of them, and compaction when some stop.
- `group_size(network, device, batch_size)`: how many members to fuse at once.
- `fused_layers(network, device)`, `compiles_step(network, device)`, `uses_cuda_graph(network, device)`:
  the runner's step per network.

What each member keeps to itself: initial weights, mask, training rows, batch order (its
own generator, one permutation of its own rows per epoch: the order `train()` draws),
learning-rate schedule (its epoch length follows its own row count), Adam moments and step
count, validation curve, early-stopping checkpoint (the `EarlyStopping` of training.py,
so solo and fused stop by one definition), rewind snapshot and patience. Members may differ
in every TrainConfig field except batch_size and precision; they must be the same network. A member that
stops is written back to its model, finished with `training.finish`, and removed from the
stack, so it costs nothing afterwards; the group ends when all have stopped.

Masks as in solo training: the stacked weights are multiplied by their masks before every
forward pass and their gradients after every backward pass, so pruned weights get exactly
zero gradient, and Adam keeps them and their moments exactly zero.

Precision as in solo training (`training.autocast`): in bf16 the step's forward pass and loss, and
every validation and test pass, run under bfloat16 autocast; the stacked weights, gradients, masks,
BN statistics and Adam state stay float32.

The step's forward pass (`layers`): the stacked layers of `runs.ops` (the members' activations
as one [N, K*C, H, W] tensor, optionally channels-last; each convolution one grouped convolution,
each BatchNorm one call over K*C channels, each linear layer one `baddbmm`), or torch.func's vmap
over the solo network (kept for networks the stacked layers have no form for). `fused_layers`
gives the runner's choice per network and device, the fastest measured (docs/decisions.md).
Adam is torch's own fused kernel (`training.adam_update`), called once on the whole stack when
the slots share learning rate and weight decay (their step counts are always equal), else once
per slot on its views: one pass over the weights, and exactly the update solo train()'s Adam
makes (a vectorised Adam with [K]-shaped learning rates made ten passes and was slower).

Evaluation is stacked too: at an evaluation point, the members due are validated in one pass per
batch (each on its own validation rows, in `train()`'s batches; members with the same rows read
each batch once), and the checkpoints that end a training or are probed there are evaluated on
the test set together, with the weights and BN statistics the member's own model would hold.

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

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from lth_core.data import Dataset
from lth_core.pruning import MASK_BUFFER, _apply_mask
from lth_core.runs.ops.network import StackedForward, evaluate_stacked, member_losses
from lth_core.config import iterations_per_epoch
from lth_core.training import (EarlyStopping, TrainingJob, TrainResult, adam_update, autocast, batch_order, finish,
                               select_numerics, state_copy)

CPU_GROUP_SIZE = 8  # on a CPU the stacked step costs about K solo steps, so more members buy nothing
# where replaying the fused step as a CUDA graph measured faster (docs/decisions.md): a small network's GPU
# step is launch-bound; Conv-2's is bound by its convolution kernels, and the graph gained nothing there
CUDA_GRAPH_NETWORKS = ("lenet_300_100", "shufflenet")
LAYERS = ("stacked", "vmap")  # the step's forward pass: runs.ops' stacked layers, or torch.func's vmap
# the fused step's forward pass (layers, channels_last) the runner uses, per device type and network: the
# fastest measured (docs/decisions.md). On the CPU the stacked layers beat vmap for all three networks, and
# channels-last pays for Conv-2 only. On CUDA not yet measured: the stacked layers, channels-last for the
# convolutional networks (cuDNN's grouped and depthwise kernels work in that layout), until gpu-check says.
FUSED_LAYERS = {
    "cpu": {"lenet_300_100": ("stacked", False), "conv2": ("stacked", True), "shufflenet": ("stacked", False)},
    "cuda": {"lenet_300_100": ("stacked", False), "conv2": ("stacked", True), "shufflenet": ("stacked", True)},
}
# (device type, network) whose stacked forward and loss the runner compiles with torch.compile: none until
# `make benchmark` / gpu-check measure it faster than eager (their "stacked compiled" column)
COMPILED_STEP: set[tuple[str, str]] = set()
GRAPH_WARMUP_STEPS = 3  # eager steps before a capture (lazy cuBLAS/cuDNN set-up must not happen inside it)


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
    `layers`: how the step computes the forward pass, "stacked" (`runs.ops`: one grouped
    convolution, batch norm or batched matrix product per layer, channels-last when
    `channels_last`) or "vmap" (torch.func over the solo network). Evaluation (`evaluate`,
    `evaluate_states`) always runs the stacked layers, all given members in one pass per batch.
    `precision`: the members' `TrainConfig.precision`, whose autocast the step and evaluation run under.
    `compile_step`: the stacked layers' forward pass and loss compiled by `torch.compile` (Adam is one
    fused kernel already); it recompiles when members stop and the stack shrinks.
    """

    def __init__(self, models: list[nn.Module], lrs: list[float], weight_decays: list[float],
                 cuda_graph: bool = False, layers: str = "stacked", channels_last: bool = False,
                 precision: str = "float32", compile_step: bool = False):
        if layers not in LAYERS:
            raise ValueError(f"layers must be one of {LAYERS}, got {layers!r}")
        if compile_step and layers != "stacked":
            raise ValueError("compile_step compiles the stacked layers' step: it needs layers='stacked'")
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

        self.layers, self.precision = layers, precision
        self.forward = StackedForward(self.template, channels_last)
        if layers == "vmap":
            def loss(params, buffers, x, y):
                return F.cross_entropy(functional_call(self.template, (params, buffers), (x,)), y)
            self._losses = vmap(loss)
        else:
            self._losses = torch.compile(self._stacked_losses) if compile_step else self._stacked_losses
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

    def _stacked_losses(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return member_losses(self.forward(params, buffers, x, training=True), y, "mean")

    @torch.no_grad()
    def _apply_masks(self) -> None:
        """As the solo pre-hook: nothing written to a pruned weight reaches an output."""
        for name, mask in self.masks.items():
            self.params[name].mul_(mask)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The step itself, eager (or being recorded)."""
        self._apply_masks()
        with autocast(x.device, self.precision):
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

    def evaluate(self, slots: list[int], batches) -> list[tuple[float, float]]:
        """(mean loss, accuracy %) of each of `slots` over `batches` of (x [len(slots), N, ...],
        y [len(slots), N]), BN in evaluation mode: `training.evaluate` for all of them in one pass per batch."""
        self._apply_masks()
        params, buffers = self.params, self.buffers
        if slots != list(range(len(self))):
            idx = torch.tensor(slots, device=self.steps.device)
            params = {n: p.detach().index_select(0, idx) for n, p in params.items()}
            buffers = {n: b.index_select(0, idx) for n, b in buffers.items()}
        with autocast(self.steps.device, self.precision):
            return evaluate_stacked(self.forward, params, buffers, batches)

    def evaluate_states(self, states: list[dict], batches) -> list[tuple[float, float]]:
        """`evaluate` of state_dicts (checkpoints, e.g. on the CPU) of this network, masks applied."""
        device = self.steps.device
        with torch.no_grad():
            params = {n: torch.stack([s[n] for s in states]).to(device) for n in self.params}
            for n in self.masks:
                mask = f"{n.rsplit('.', 1)[0]}.{MASK_BUFFER}"
                params[n].mul_(torch.stack([s[mask] for s in states]).to(device))
            buffers = {n: torch.stack([s[n] for s in states]).to(device) for n in self.buffers}
        with autocast(device, self.precision):
            return evaluate_stacked(self.forward, params, buffers, batches)

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

    def __init__(self, member: TrainingJob):
        self.train_idx = member.train_idx.cpu()
        self.member, self.cfg = member, member.cfg.budget_for(len(self.train_idx))  # as train() resolves it
        self.gen = torch.Generator().manual_seed(member.seed)
        self.per_epoch = iterations_per_epoch(len(self.train_idx), self.cfg.batch_size)
        self.batch = min(self.cfg.batch_size, len(self.train_idx))
        self.stopping = EarlyStopping(self.cfg, member.snapshot_at, self.per_epoch)
        self.snapshot = state_copy(member.model) if member.snapshot_at == 0 else None
        self.order, self.lr = None, self.cfg.lr

    def rows(self, it: int, device) -> torch.Tensor:
        """Training rows of iteration it + 1, as train() draws them (a new order each epoch)."""
        step = it % self.per_epoch
        if step == 0:
            self.order = batch_order(self.train_idx, self.gen, device)
            self.lr = self.cfg.lr_at_epoch(it // self.per_epoch)
        return self.order[step * self.batch:(step + 1) * self.batch]


def check_members(members: list[TrainingJob]) -> None:
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
    precisions = {m.cfg.precision for m in members}
    if len(precisions) > 1:
        raise ValueError(f"fused members must share one precision, got {sorted(precisions)}; "
                         "group them by TrainConfig.precision")
    reference = _structure(members[0].model)
    for i, m in enumerate(members[1:], start=1):
        if _structure(m.model) != reference:
            raise ValueError(f"fused members must be the same network (module types, parameter names, shapes "
                             f"and dtypes): member {i} ({m.desc}) differs from member 0 ({members[0].desc})")
    devices = {p.device for m in members for p in m.model.parameters()}
    if len(devices) > 1:
        raise ValueError(f"fused members' models are on different devices: {sorted(map(str, devices))}")


def fused_layers(network: str, device) -> tuple[str, bool]:
    """(layers, channels_last) of `network`'s fused step on `device`: `FUSED_LAYERS`, vmap where it has
    no entry (vmap runs any network; the stacked layers know the three of `models`)."""
    return FUSED_LAYERS.get(torch.device(device).type, {}).get(network, ("vmap", False))


def compiles_step(network: str, device) -> bool:
    """Whether the runner compiles `network`'s stacked step on `device` (`COMPILED_STEP`: where it measured faster)."""
    return (torch.device(device).type, network) in COMPILED_STEP


def uses_cuda_graph(network: str, device) -> bool:
    """Whether the runner replays `network`'s fused step as a CUDA graph on `device` (where it measured faster)."""
    return torch.device(device).type == "cuda" and network in CUDA_GRAPH_NETWORKS


def train_fused(members: list[TrainingJob], data: Dataset, progress: bool = True,
                eval_batch: int = 1000, cuda_graph: bool = False, layers: str = "stacked",
                channels_last: bool = False, compile_step: bool = False) -> list[TrainResult]:
    """Train every member as `train()` would alone, all at once; see the module docstring.

    `cuda_graph`: replay the step as a CUDA graph (CUDA only; `uses_cuda_graph` says where it pays).
    `layers`, `channels_last`, `compile_step`: the step's forward pass (`FusedStack`; `fused_layers` and
    `compiles_step` say which measured faster)."""
    check_members(members)
    device = data.device
    precision = members[0].cfg.precision
    select_numerics(device, precision)
    for m in members:
        m.model.train()
    runs = [_Run(m) for m in members]
    stack = FusedStack([m.model for m in members], [r.lr for r in runs], [m.cfg.weight_decay for m in members],
                       cuda_graph=cuda_graph, layers=layers, channels_last=channels_last, precision=precision,
                       compile_step=compile_step)
    results: list[TrainResult | None] = [None] * len(members)
    active = list(range(len(members)))  # member index of each stack slot
    t0, it = time.perf_counter(), 0
    bar = tqdm(total=max(r.cfg.iterations for r in runs), desc=f"fused x{len(members)}",
               disable=not progress, leave=False, mininterval=1.0)
    while active:
        rows = torch.cat([runs[k].rows(it, device) for k in active])
        x, y = data.train_batch(rows)
        stack.lr = [runs[k].lr for k in active]
        losses = stack.step(x.view(len(active), -1, *x.shape[1:]), y.view(len(active), -1)).tolist()
        it += 1
        for slot, k in enumerate(active):
            if it == members[k].snapshot_at:
                stack.write_back(slot, members[k].model)
                runs[k].snapshot = state_copy(members[k].model)
        due = [slot for slot, k in enumerate(active) if runs[k].stopping.due(it)]
        stopped, tested = [], []  # slots that end here; slots whose checkpoint needs a test pass
        for slot, (vl, va) in zip(due, _validate(stack, due, [members[active[s]] for s in due], data, eval_batch)):
            run, member = runs[active[slot]], members[active[slot]]

            def checkpoint(slot=slot, model=member.model) -> dict:
                stack.write_back(slot, model)
                return state_copy(model)
            patience_out = run.stopping.record(it, vl, va, losses[slot], run.lr, checkpoint)
            if patience_out or it == run.cfg.iterations:  # an evaluation always ends a budget
                stopped.append(slot)
            if run.stopping.probe_due() or slot in stopped:
                tested.append(slot)
        if tested:  # every checkpoint probed or final at this iteration, in one test pass
            checks = stack.evaluate_states([runs[active[s]].stopping.best[3] for s in tested],
                                           _shared_batches(data.test_batches(eval_batch), len(tested)))
            for slot, test in zip(tested, checks):
                k = active[slot]
                run, member = runs[k], members[k]
                if run.stopping.probe_due():
                    run.stopping.probe(test[1])
                if slot in stopped:
                    stack.write_back(slot, member.model)  # the last weights, as solo training leaves them
                    results[k] = finish(member.model, data, run.stopping, it, t0, run.snapshot, eval_batch, test=test)
                    results[k].group_size = len(members)
        if stopped:
            keep = [s for s in range(len(active)) if s not in stopped]
            active = [active[s] for s in keep]
            if active:
                stack.keep(keep)
        bar.update(1)
    bar.close()
    return results


def _shared_batches(batches, k: int):
    """Batches (x, y) that all K members evaluate on, as [K, N, ...] views (no copy)."""
    for x, y in batches:
        yield x.expand(k, *x.shape), y.expand(k, *y.shape)


def _validate(stack: FusedStack, slots: list[int], members: list[TrainingJob], data: Dataset,
              eval_batch: int) -> list[tuple[float, float]]:
    """(validation loss, accuracy) of each of `slots` on its member's validation rows, in batches of
    `eval_batch` rows as `train()` takes them: one stacked pass per batch for members with as many rows
    (members sharing their rows read each batch once)."""
    out: dict[int, tuple[float, float]] = {}
    by_count: dict[int, list[int]] = {}
    for i, m in enumerate(members):
        by_count.setdefault(len(m.val_idx), []).append(i)
    for group in by_count.values():
        idx = [members[i].val_idx for i in group]
        if all(torch.equal(idx[0], other) for other in idx[1:]):
            batches = _shared_batches(data.train_batches(idx[0], eval_batch), len(group))
        else:
            batches = _member_batches(data, idx, eval_batch)
        out.update(zip(group, stack.evaluate([slots[i] for i in group], batches)))
    return [out[i] for i in range(len(members))]


def _member_batches(data: Dataset, idx: list[torch.Tensor], eval_batch: int):
    """Batch j of every member's own rows (as many rows each), stacked to [K, N, ...]."""
    for chunks in zip(*(rows.split(eval_batch) for rows in idx)):
        xs, ys = zip(*(data.train_batch(c) for c in chunks))
        yield torch.stack(xs), torch.stack(ys)


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
