"""A stacked convolution: K members' convolutions as one grouped convolution.

The K members' activations travel as one [N, K*C, H, W] tensor, member k owning channels
k*C .. (k+1)*C - 1. A member's convolution with `groups` g maps its C_in channels to C_out in
g independent groups; K members side by side are therefore K*g independent groups over K*C_in
channels, which is exactly `F.conv2d` with `groups=K*g` and the stacked [K, C_out, C_in/g, kh, kw]
weights viewed as [K*C_out, C_in/g, kh, kw] (a view: gradients land in the stacked tensor).
A depthwise convolution (g = C) becomes one depthwise convolution over K*C channels.
Why: one kernel launch per layer for the whole group, and no layout conversions between
layers (vmap over a convolution inserts transposes around a grouped convolution it builds).

Also here: moving a batch between the member-major layout [K, N, ...] the stack is fed and
the channel-stacked layout the convolutions use, and back for the linear layers.
"""
import torch
import torch.nn.functional as F


def to_channels(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """[K, N, C, H, W] -> [N, K*C, H, W] (member k in channels k*C..), channels-last if asked."""
    k, n, c, h, w = x.shape
    out = x.transpose(0, 1).reshape(n, k * c, h, w)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def to_members(x: torch.Tensor, k: int) -> torch.Tensor:
    """[N, K*C, H, W] -> [K, N, C*H*W]: each member's features flattened in its own C, H, W order,
    as `torch.flatten(x, 1)` flattens one member's [N, C, H, W]."""
    n = x.shape[0]
    return x.reshape(n, k, -1).transpose(0, 1)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding,
           groups: int) -> torch.Tensor:
    """K convolutions at once: x [N, K*C_in, H, W], weight [K, C_out, C_in/groups, kh, kw],
    bias [K, C_out] or None; `groups` is one member's. Returns [N, K*C_out, H', W']."""
    k = weight.shape[0]
    flat_weight = weight.reshape(k * weight.shape[1], *weight.shape[2:])
    flat_bias = None if bias is None else bias.reshape(-1)
    return F.conv2d(x, flat_weight, flat_bias, stride, padding, 1, k * groups)


def channel_shuffle(x: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """Each member's ShuffleNet channel shuffle (its C channels as [groups, C/groups], transposed)."""
    if groups == 1:
        return x  # a permutation with no effect
    n, kc, h, w = x.shape
    c = kc // k
    return x.reshape(n, k, groups, c // groups, h, w).transpose(2, 3).reshape(n, kc, h, w)


def concat_channels(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Per member, a's channels then b's: what `torch.cat([a, b], dim=1)` is for one member."""
    n, _, h, w = a.shape
    out = torch.cat([a.reshape(n, k, -1, h, w), b.reshape(n, k, -1, h, w)], dim=2)
    return out.reshape(n, -1, h, w)
