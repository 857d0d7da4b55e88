"""Masks and magnitude pruning, layer-wise or global.

A mask set is a dict `{parameter name: bool tensor}` over the prunable weights
(conv and linear weights, BN gammas only when asked; biases never).

- `prune_layerwise(weights, masks, rates)` is a pure function returning new
  masks: in each layer it removes exactly `n_to_prune(alive, rate)` of the
  still-unmasked weights with the smallest magnitude (ties: lower flat index first).
- `prune_global(weights, masks, rate, own_rates)`, the same over the pooled layers at once: one
  magnitude threshold removes `n_to_prune(alive in the pool, rate)` of their surviving weights, so
  a layer loses more or less than `rate` of its own; the layers of `own_rates` (the output layer,
  which the paper prunes at its own rate) are pruned layer-wise at theirs.
- `layer_rates(model, rate, ...)` gives the paper's rates: hidden layers at p,
  the output layer at p/2, optional BN rate, per-layer overrides.
- `attach_masks(model)` installs a mask on each prunable weight with PyTorch's
  hooks, as `torch.nn.utils.prune` does, but in place: a float buffer
  `<layer>.weight_mask`; a forward pre-hook that multiplies the stored weight by
  its mask (a Hadamard product) before every forward pass, training and
  evaluation, so a pruned weight can never reach the output even if something
  wrote to it; and a post-accumulate-grad hook that multiplies the gradient by
  the mask, so a pruned weight's gradient is exactly zero. `set_masks` zeroes
  the pruned weights; Adam (zero gradient and zero moments give a zero update)
  and L2 weight decay (0 * wd = 0) then keep them exactly zero.
  Why not `torch.nn.utils.parametrize` (the first version used it): computing
  `weight = original * mask` out of place allocates a masked copy of every
  weight and a second product in backward at each step, which measured slower
  (docs/decisions.md). A plain state_dict (`weight`, `weight_mask`, `bias`) is a
  side benefit.
- `planned_remaining(sizes, rates, rounds)`: percent of weights remaining at each
  level of an IMP run, from the layer sizes alone (what `prune_layerwise` will do).
- `random_masks_like` builds the random-pruning control: same per-layer count.
- `density_table` reports the fraction remaining per layer and overall.
"""
import weakref

import pandas as pd
import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from lth_core import checks
from lth_core.models import output_layer_name, prunable_weights

Masks = dict[str, torch.Tensor]
MASK_BUFFER = "weight_mask"  # the buffer holding a layer's mask, beside its weight


class _MaskGradient:
    """Post-accumulate-grad hook of a masked weight: grad <- grad * mask, in place."""

    def __init__(self, module: nn.Module):
        self.module = weakref.ref(module)  # the hook lives on the parameter; no reference cycle

    def __call__(self, param: torch.Tensor) -> None:
        module = self.module()
        if module is not None and param.grad is not None:
            param.grad.mul_(getattr(module, MASK_BUFFER))


# parameter -> weakref of the module whose mask its gradient hook applies (kept off the parameter
# itself so that pickling a model still works)
_GRADIENT_HOOKED = WeakIdKeyDictionary()


def _ensure_gradient_hook(module: nn.Module) -> None:
    # a Parameter made by deepcopy, unpickling or load_state_dict(assign=True) carries no hooks: add one
    w = module.weight
    owner = _GRADIENT_HOOKED.get(w)
    if owner is None or owner() is not module:
        w.register_post_accumulate_grad_hook(_MaskGradient(module))
        _GRADIENT_HOOKED[w] = weakref.ref(module)


def _apply_mask(module: nn.Module, args) -> None:
    """Forward pre-hook of a masked layer: weight <- weight * mask before the layer runs."""
    _ensure_gradient_hook(module)
    # through .data, untracked by autograd: once pruned weights are zero the product changes
    # nothing, and it must not bump the version counter that graphs still holding this weight check
    module.weight.data.mul_(getattr(module, MASK_BUFFER))


# a per-layer rate, where the rate is not a config's (overrides, the BN rate): 0 leaves a layer unpruned
LAYER_RATE = checks.explained(checks.number(0, 1, hi_open=True),
                              "the share of a layer's remaining weights pruned each round")


def check_rate(name: str, rate: float) -> float:
    """`rate` of layer `name` as a float when it is a valid per-layer rate; else its ConfigError."""
    return float(checks.check("layer_rates", name, checks.plain(rate), LAYER_RATE))


def n_to_prune(n_alive: int, rate: float) -> int:
    """round(rate * n_alive), halves rounded up (Python's round() would round half to even)."""
    return int(rate * n_alive + 0.5)


def planned_remaining(sizes: dict[str, int], rates: dict[str, float], rounds: int) -> list[float]:
    """Percent of the weights in `sizes` remaining at levels 0..rounds, pruning each layer at its rate."""
    alive, total, out = dict(sizes), sum(sizes.values()), []
    for _ in range(rounds + 1):
        out.append(100.0 * sum(alive.values()) / total)
        alive = {n: a - n_to_prune(a, rates.get(n, 0.0)) for n, a in alive.items()}
    return out


def _drop_smallest(scores: list[torch.Tensor], masks: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """`masks` (flat) with the `k` surviving entries of least score over all of them cleared (ties: earlier
    tensor, then lower index first)."""
    alive = torch.cat(masks)  # a new tensor: the masks given stay as they are
    score = torch.cat([s.detach().abs().flatten().to(alive.device, torch.float64) for s in scores])  # masks: CPU
    score = torch.where(alive, score, torch.full_like(score, float("inf")))
    alive[torch.argsort(score, stable=True)[:k]] = False  # stable: ties go to the lower index
    return [m.clone() for m in alive.split([m.numel() for m in masks])]  # each mask its own storage, as stored


def prune_layerwise(weights: dict[str, torch.Tensor], masks: Masks, rates: dict[str, float]) -> Masks:
    """New masks that drop, per layer, the `rate` fraction of surviving weights of least magnitude."""
    unknown = set(rates) - set(masks)
    if unknown:
        raise ValueError(f"rates given for unknown layers {sorted(unknown)}; prunable layers: {list(masks)}")
    new = {}
    for name, mask in masks.items():
        k = n_to_prune(int(mask.sum()), rates.get(name, 0.0))
        new[name] = _drop_smallest([weights[name]], [mask.flatten()], k)[0].view_as(mask)
    return new


def prune_global(weights: dict[str, torch.Tensor], masks: Masks, rate: float, own_rates: dict[str, float]) -> Masks:
    """New masks that drop the `rate` fraction of the surviving weights of least magnitude over every layer but
    those of `own_rates` together (one threshold); each layer of `own_rates` is pruned alone at its rate."""
    unknown = set(own_rates) - set(masks)
    if unknown:
        raise ValueError(f"rates given for unknown layers {sorted(unknown)}; prunable layers: {list(masks)}")
    pooled = [name for name in masks if name not in own_rates]
    flat = [masks[name].flatten() for name in pooled]
    kept = _drop_smallest([weights[name] for name in pooled], flat, n_to_prune(int(sum(m.sum() for m in flat)), rate))
    new = {name: m.view_as(masks[name]) for name, m in zip(pooled, kept)}
    new.update(prune_layerwise(weights, {name: masks[name] for name in own_rates}, own_rates))
    return {name: new[name] for name in masks}  # the layers in the model's order


def layer_rates(model: nn.Module, rate: float, output_rate: float | None = None,
                prune_bn: bool = False, bn_rate: float | None = None,
                overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Per-layer rates: hidden conv/linear at `rate`, output layer at `output_rate` (default rate/2).

    `rate` and `output_rate` are a config's (IMPConfig checked them); `bn_rate` and `overrides` are checked
    here, so every rate `prune_layerwise` and `planned_remaining` get is valid."""
    out_name = output_layer_name(model)
    bn = {n for n in prunable_weights(model, include_bn=True)} - set(prunable_weights(model))
    rates = {}
    for name in prunable_weights(model, include_bn=prune_bn):
        if name == out_name:
            rates[name] = rate / 2 if output_rate is None else output_rate
        elif name in bn:
            rates[name] = rate if bn_rate is None else check_rate(name, bn_rate)
        else:
            rates[name] = rate
    for name, r in (overrides or {}).items():
        if name not in rates:
            raise ValueError(f"override for unknown layer {name!r}; prunable layers: {list(rates)}")
        rates[name] = check_rate(name, r)
    return rates


def attach_masks(model: nn.Module, include_bn: bool = False) -> nn.Module:
    """Install an all-ones mask on every prunable weight (idempotent); see the module docstring."""
    for name, p in prunable_weights(model, include_bn=include_bn).items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if MASK_BUFFER not in module._buffers:
            module.register_buffer(MASK_BUFFER, torch.ones_like(p))
            module.register_forward_pre_hook(_apply_mask)
            _ensure_gradient_hook(module)
    return model


def _masked_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {f"{n}.weight": m for n, m in model.named_modules() if MASK_BUFFER in m._buffers}


def get_masks(model: nn.Module) -> Masks:
    return {n: getattr(m, MASK_BUFFER).detach().bool().cpu() for n, m in _masked_modules(model).items()}


@torch.no_grad()
def set_masks(model: nn.Module, masks: Masks) -> None:
    """Install `masks` and zero the stored values of pruned weights."""
    modules = _masked_modules(model)
    if set(masks) != set(modules):
        raise ValueError(f"mask layers {sorted(masks)} do not match the model's masked layers {sorted(modules)}")
    for name, module in modules.items():
        buf = getattr(module, MASK_BUFFER)
        m = masks[name].to(buf.device)
        if m.shape != buf.shape:
            raise ValueError(f"mask for {name} has shape {tuple(m.shape)}, weight has {tuple(buf.shape)}")
        buf.copy_(m)
        module.weight.mul_(buf)


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
