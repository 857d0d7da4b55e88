"""A stacked linear layer: K members' linear layers as one batched matrix product.

The members' features travel as one [K, N, F] tensor (member k's batch in row k). K layers
y_k = x_k W_k^T + b_k are one `torch.baddbmm(b[:, None, :], x, W^T)` with the stacked weights
[K, out, in] and biases [K, out]: one kernel for the group, the gradients landing in the
stacked tensors. Why: vmap turns `F.linear` into the same product, through its batching rules;
this calls it directly.
"""
import torch


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """K linear layers at once: x [K, N, in], weight [K, out, in], bias [K, out] or None -> [K, N, out]."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
