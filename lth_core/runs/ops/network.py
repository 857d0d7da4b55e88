"""The three networks' forward passes on stacked weights, and evaluation of K members in one pass.

`StackedForward(template, channels_last)` is called with `params` and `buffers` (the solo names
mapped to tensors with a leading member dimension K, as `runs.fused.FusedStack` holds them), a
batch x [K, N, ...] (member k's batch in row k) and `training`; it returns the logits [K, N, classes],
member k's computed exactly as the solo network computes them from its own weights, with one
operation per layer for the whole group (`conv`, `batchnorm`, `linear`). It walks the template's
modules (an `nn.Sequential` of Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear, or a
`models.ShuffleNet`); anything else is refused when the forward is built, not mid-training.
Layouts: convolutional activations are [N, K*C, H, W] (channels-last if asked), linear ones
[K, N, F]; the first Flatten (or ShuffleNet's pooled features) switches from one to the other.

`evaluate_stacked(forward, params, buffers, batches)`: per member, mean cross-entropy and accuracy
(%) over batches of ([K, N, ...], [K, N]) in evaluation mode, as `training.evaluate` gives for one.
"""
import torch
import torch.nn.functional as F
from torch import nn

from lth_core.models import ShuffleNet, ShuffleUnit
from lth_core.runs.ops.batchnorm import batch_norm
from lth_core.runs.ops.conv import channel_shuffle, concat_channels, conv2d, to_channels, to_members
from lth_core.runs.ops.linear import linear

_ELEMENTWISE = (nn.ReLU, nn.MaxPool2d, nn.Flatten)


def _check(module: nn.Module, where: str = "") -> None:
    """Refuse a network whose layers have no stacked form here (one clear line naming the layer)."""
    if isinstance(module, ShuffleNet):
        return
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            _check(child, f"{where}{name}.")
        return
    if isinstance(module, nn.BatchNorm2d) and module.momentum is None:
        raise ValueError(f"stacked layers: BatchNorm2d {where.rstrip('.')} has momentum=None (not supported)")
    if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear) + _ELEMENTWISE):
        raise ValueError(f"stacked layers have no form for {type(module).__name__} at {where.rstrip('.') or 'top'}; "
                         "train this network with layers='vmap'")


class StackedForward:
    """K members' forward pass with one operation per layer (module docstring)."""

    def __init__(self, template: nn.Module, channels_last: bool = False):
        _check(template)
        self.template, self.channels_last = template, channels_last

    def __call__(self, params: dict, buffers: dict, x: torch.Tensor, training: bool) -> torch.Tensor:
        self.p, self.b, self.training, self.k = params, buffers, training, x.shape[0]
        try:
            if isinstance(self.template, ShuffleNet):
                return self._shufflenet(self.template, to_channels(x, self.channels_last))
            return self._sequential(self.template, "", x)
        finally:
            self.p = self.b = None  # hold no reference to the step's tensors between calls

    def _sequential(self, seq: nn.Sequential, prefix: str, x: torch.Tensor) -> torch.Tensor:
        for name, m in seq.named_children():
            x = self._layer(m, f"{prefix}{name}.", x)
        return x

    def _layer(self, m: nn.Module, prefix: str, x: torch.Tensor) -> torch.Tensor:
        if isinstance(m, nn.Conv2d):
            if x.dim() == 5:  # the batch as fed, [K, N, C, H, W]: the first convolution
                x = to_channels(x, self.channels_last)
            return conv2d(x, self.p[prefix + "weight"], self.p.get(prefix + "bias"), m.stride, m.padding, m.groups)
        if isinstance(m, nn.BatchNorm2d):
            return batch_norm(x, m, self.p[prefix + "weight"], self.p[prefix + "bias"],
                              self.b[prefix + "running_mean"], self.b[prefix + "running_var"],
                              self.b[prefix + "num_batches_tracked"], self.training)
        if isinstance(m, nn.Linear):
            return linear(x, self.p[prefix + "weight"], self.p.get(prefix + "bias"))
        if isinstance(m, nn.ReLU):
            return F.relu(x)
        if isinstance(m, nn.MaxPool2d):
            return F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        if isinstance(m, nn.Flatten):
            # fed images [K, N, C, H, W] (a fully connected network) or convolutional features [N, K*C, H, W]
            return x.flatten(2) if x.dim() == 5 else to_members(x, self.k)
        return self._sequential(m, prefix, x)  # _check admitted only nn.Sequential beyond these

    def _unit(self, u: ShuffleUnit, prefix: str, x: torch.Tensor) -> torch.Tensor:
        """`models.ShuffleUnit.forward`, stacked."""
        out = F.relu(self._layer(u.bn1, prefix + "bn1.", self._layer(u.conv1, prefix + "conv1.", x)))
        out = channel_shuffle(out, self.k, u.groups)
        out = self._layer(u.bn2, prefix + "bn2.", self._layer(u.conv2, prefix + "conv2.", out))
        out = self._layer(u.bn3, prefix + "bn3.", self._layer(u.conv3, prefix + "conv3.", out))
        if u.stride == 2:
            return F.relu(concat_channels(out, F.avg_pool2d(x, 3, stride=2, padding=1), self.k))
        return F.relu(out + x)

    def _shufflenet(self, net: ShuffleNet, x: torch.Tensor) -> torch.Tensor:
        """`models.ShuffleNet.forward`, stacked."""
        x = self._sequential(net.stem, "stem.", x)
        for name, unit in net.units.named_children():
            x = self._unit(unit, f"units.{name}.", x)
        return self._layer(net.fc, "fc.", to_members(F.adaptive_avg_pool2d(x, 1), self.k))


def member_losses(logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per member, the cross-entropy of logits [K, N, classes] against y [K, N]: [K] ('mean' or 'sum')."""
    k, n, classes = logits.shape
    per_row = F.cross_entropy(logits.reshape(k * n, classes), y.reshape(k * n), reduction="none").view(k, n)
    return per_row.mean(1) if reduction == "mean" else per_row.sum(1)


@torch.no_grad()
def evaluate_stacked(forward: StackedForward, params: dict, buffers: dict, batches) -> list[tuple[float, float]]:
    """Per member (mean cross-entropy, accuracy %) over `batches` of (x [K, N, ...], y [K, N]), BN in
    evaluation mode, as `training.evaluate` computes them for one member; the buffers are not changed."""
    loss = correct = None
    n = 0
    for x, y in batches:
        logits = forward(params, buffers, x, training=False)
        batch_loss, batch_correct = member_losses(logits, y, "sum"), (logits.argmax(2) == y).sum(1)
        loss = batch_loss if loss is None else loss + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        n += y.shape[1]
    if n == 0:
        raise ValueError("cannot evaluate on an empty set of rows")
    return [(float(l) / n, 100.0 * float(c) / n) for l, c in zip(loss.tolist(), correct.tolist())]
