"""Masks and layer-wise magnitude pruning.

A mask set is a dict `{parameter name: bool tensor}` over the prunable weights
(conv and linear weights, BN gammas only when asked; biases never).

- `prune_layerwise(weights, masks, rates)` is a pure function returning new
  masks: in each layer it removes exactly `n_to_prune(alive, rate)` of the
  still-unmasked weights with the smallest magnitude (ties: lower flat index first).
- `layer_rates(model, rate, ...)` gives the paper's rates: hidden layers at p,
  the output layer at p/2, optional BN rate, per-layer overrides.
- `attach_masks(model)` installs the masks with PyTorch's own mechanism,
  `torch.nn.utils.parametrize`: the layer's weight is computed as
  `original * mask` on every forward pass (training and evaluation), so a pruned
  weight's gradient is exactly zero. `set_masks` also zeroes the stored
  `original` values, so Adam (whose update is 0 for a zero gradient and zero
  moment) and L2 weight decay (0 * wd = 0) keep them exactly zero.
- `random_masks_like` builds the random-pruning control: same per-layer count.
- `density_table` reports the fraction remaining per layer and overall.
"""
import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize

from .models import output_layer_name, prunable_weights

Masks = dict[str, torch.Tensor]


class WeightMask(nn.Module):
    """Parametrization `w -> w * mask`; the mask is a float buffer saved in state_dict."""

    def __init__(self, shape, dtype, device):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=dtype, device=device))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def check_rate(name: str, rate: float) -> float:
    if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"prune rate for {name!r} is {rate!r}; a rate must be a fraction in [0, 1) "
                         "(0.2 prunes 20% of the remaining weights each round)")
    return float(rate)


def n_to_prune(n_alive: int, rate: float) -> int:
    """round(rate * n_alive), halves rounded up (Python's round() would round half to even)."""
    return int(rate * n_alive + 0.5)


def prune_layerwise(weights: dict[str, torch.Tensor], masks: Masks, rates: dict[str, float]) -> Masks:
    """New masks that drop, per layer, the `rate` fraction of surviving weights of least magnitude."""
    unknown = set(rates) - set(masks)
    if unknown:
        raise ValueError(f"rates given for unknown layers {sorted(unknown)}; prunable layers: {list(masks)}")
    new = {}
    for name, mask in masks.items():
        rate = check_rate(name, rates.get(name, 0.0))
        k = n_to_prune(int(mask.sum()), rate)
        flat = mask.flatten().clone()
        if k:
            score = weights[name].detach().abs().flatten().to(torch.float64)
            score = torch.where(flat, score, torch.full_like(score, float("inf")))
            order = torch.argsort(score, stable=True)  # stable: ties go to the lower index
            flat[order[:k]] = False
        new[name] = flat.view_as(mask)
    return new


def layer_rates(model: nn.Module, rate: float, output_rate: float | None = None,
                prune_bn: bool = False, bn_rate: float | None = None,
                overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Per-layer rates: hidden conv/linear at `rate`, output layer at `output_rate` (default rate/2)."""
    check_rate("hidden layers", rate)
    out_name = output_layer_name(model)
    bn = {n for n in prunable_weights(model, include_bn=True)} - set(prunable_weights(model))
    rates = {}
    for name in prunable_weights(model, include_bn=prune_bn):
        if name == out_name:
            rates[name] = rate / 2 if output_rate is None else output_rate
        elif name in bn:
            rates[name] = rate if bn_rate is None else bn_rate
        else:
            rates[name] = rate
    for name, r in (overrides or {}).items():
        if name not in rates:
            raise ValueError(f"override for unknown layer {name!r}; prunable layers: {list(rates)}")
        rates[name] = r
    return {n: check_rate(n, r) for n, r in rates.items()}


def attach_masks(model: nn.Module, include_bn: bool = False) -> nn.Module:
    """Register an all-ones mask parametrization on every prunable weight (idempotent)."""
    for name, p in prunable_weights(model, include_bn=include_bn).items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", WeightMask(p.shape, p.dtype, p.device))
    return model


def _mask_modules(model: nn.Module) -> dict[str, WeightMask]:
    out = {}
    for mod_name, m in model.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            out[f"{mod_name}.weight"] = m.parametrizations.weight[0]
    return out


def get_masks(model: nn.Module) -> Masks:
    return {n: wm.mask.detach().bool().cpu() for n, wm in _mask_modules(model).items()}


@torch.no_grad()
def set_masks(model: nn.Module, masks: Masks) -> None:
    """Install `masks` and zero the stored values of pruned weights."""
    modules = _mask_modules(model)
    if set(masks) != set(modules):
        raise ValueError(f"mask layers {sorted(masks)} do not match the model's masked layers {sorted(modules)}")
    raw = prunable_weights(model, include_bn=True)
    for name, wm in modules.items():
        m = masks[name].to(wm.mask.device)
        if m.shape != wm.mask.shape:
            raise ValueError(f"mask for {name} has shape {tuple(m.shape)}, weight has {tuple(wm.mask.shape)}")
        wm.mask.copy_(m)
        raw[name].mul_(wm.mask)


def ones_masks(model: nn.Module, include_bn: bool = False) -> Masks:
    return {n: torch.ones(p.shape, dtype=torch.bool) for n, p in prunable_weights(model, include_bn).items()}


def random_masks_like(masks: Masks, generator: torch.Generator) -> Masks:
    """Masks keeping the same number of weights per layer at uniformly random positions."""
    out = {}
    for name, mask in masks.items():
        keep = int(mask.sum())
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=generator)[:keep]] = True
        out[name] = flat.view_as(mask)
    return out


def fraction_remaining(masks: Masks) -> float:
    alive = sum(int(m.sum()) for m in masks.values())
    return alive / sum(m.numel() for m in masks.values())


def density_table(masks: Masks) -> pd.DataFrame:
    """One row per layer plus an 'overall' row: weights, remaining, percent remaining."""
    rows = [{"layer": n, "weights": m.numel(), "remaining": int(m.sum())} for n, m in masks.items()]
    rows.append({"layer": "overall", "weights": sum(r["weights"] for r in rows),
                 "remaining": sum(r["remaining"] for r in rows)})
    df = pd.DataFrame(rows)
    df["pct_remaining"] = 100.0 * df["remaining"] / df["weights"]
    return df
