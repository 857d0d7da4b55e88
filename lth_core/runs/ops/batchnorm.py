"""A stacked BatchNorm2d: K members' batch norms as one call over K*C channels.

Batch normalisation is per channel: its batch statistics, affine parameters and running
statistics of one channel depend on that channel alone. With the members' activations as one
[N, K*C, H, W] tensor (see `conv`), K BatchNorm2d layers of C channels are therefore one
`F.batch_norm` over K*C channels, fed the stacked [K, C] parameters and running statistics as
flat [K*C] views: the running statistics are updated in place inside the stacked buffers, and
the gradients land in the stacked parameters. Why: vmap's batch-norm rule makes several extra
passes over the activations per layer; this makes the same passes one member's layer makes.
"""
import torch
import torch.nn.functional as F
from torch import nn


def batch_norm(x: torch.Tensor, module: nn.BatchNorm2d, weight: torch.Tensor, bias: torch.Tensor,
               running_mean: torch.Tensor, running_var: torch.Tensor, num_batches_tracked: torch.Tensor,
               training: bool) -> torch.Tensor:
    """K batch norms at once: x [N, K*C, H, W]; weight, bias, running statistics [K, C]; num_batches_tracked
    [K]. `module` (one member's layer) gives momentum and eps. In training, batch statistics are used and
    the running ones updated (and the batch count advanced) as `nn.BatchNorm2d.forward` does; else the
    running statistics normalise."""
    if module.momentum is None:
        raise ValueError("stacked batch norm needs a fixed momentum (a cumulative average is not supported)")
    if training:
        num_batches_tracked.add_(1)
    return F.batch_norm(x, running_mean.view(-1), running_var.view(-1), weight.reshape(-1), bias.reshape(-1),
                        training, module.momentum, module.eps)
