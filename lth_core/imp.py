"""Iterative magnitude pruning (IMP): rounds of train -> prune -> reset.

`IMPConfig` (`config.py`) describes one IMP trajectory completely; it is the
unit the run store caches. `IMPRunner(cfg, data)` defines its rounds: a round is
`round_jobs(state)` (each training of the round a `RoundTraining`: kind, split, mask
and its `training.TrainingJob` with the reset model), the trainings, then
`finish_round(state, jobs, results)`, the next state. The trainings themselves are
the round driver's (`runs/lockstep.py`): one at a time, in worker processes, or the
jobs of many runs fused together, each run's round finished alike.

Round r (r = 0 is the dense network):
1. reset: every parameter (biases and BN included) back to its initial value,
   or to its value at iteration `rewind_iteration` of round 0 (late rewinding),
   then the round's mask applied;
2. train on the ticket-finding data (`find_on`): the early-stopping checkpoint;
3. train the same reset ticket on each of `retrain_on` (e.g. unseen data S2);
4. controls, on the same data as 3 (or `find_on` when 3 is empty):
   `reinit` (same mask, fresh random init) and `random_prune` (random mask of
   the same per-layer density, same init);
5. prune the early-stopping weights of 2 by `cfg.pruning`'s criterion -> the mask of round r+1
   (`next_masks`: layer-wise, or global over the hidden layers, `pooled_layers`, with the output layer
   at its own rate).
Every training yields one tidy row (see `ROW_COLUMNS`) and its validation curve:
one record per evaluation (`CURVE_KEYS` name the training, then iteration,
validation loss and accuracy, training loss and learning rate). `round_trainings(cfg, r)`
lists the trainings of round r in the order round_jobs gives them, and
`iterations_per_run(cfg)` their budgets summed, and
`planned_remaining_pct(cfg)` the percent of weights left at each level, so
callers count and label without re-deriving either.
"""
import dataclasses
import hashlib
from dataclasses import dataclass, field

import torch

from lth_core import data as data_mod
from lth_core.data import Dataset
from lth_core.config import IMPConfig
from lth_core.models import build_model, output_layer_name, prunable_weights
from lth_core.pruning import (Masks, attach_masks, fraction_remaining, get_masks, layer_rates, planned_remaining,
                              prune_global, prune_layerwise, random_masks_like, set_masks)
from lth_core.training import TrainingJob, TrainResult, state_copy

CURVE_KEYS = ["round", "kind", "trained_on"]  # with the row's run name, what a curve point belongs to
ROW_COLUMNS = ["network", "seed", "round", "pct_remaining", "kind", "found_on", "trained_on", "subset_percent",
               "es_iteration", "budget", "test_acc", "test_loss", "val_acc", "val_loss", "iterations",
               "wall_seconds", "group_size", "device"]


def round_trainings(cfg: IMPConfig, r: int) -> list[tuple[str, str]]:
    """(kind, split) of every training of round r, in round_jobs' order: the finding run, the reset
    ticket on each other `retrain_on` split, then (pruned rounds only) each control on every split
    tickets are evaluated on."""
    out = [("ticket", cfg.find_on)]
    out += [("ticket", split) for split in cfg.retrain_on if split != cfg.find_on]
    if r > 0:  # the dense network has nothing to control for
        out += [(control, split) for control in cfg.controls for split in (cfg.retrain_on or (cfg.find_on,))]
    return out


def trainings_per_run(cfg: IMPConfig) -> int:
    """Trainings of a whole IMP run (rounds 0..cfg.rounds)."""
    return sum(len(round_trainings(cfg, r)) for r in range(cfg.rounds + 1))


def iterations_per_run(cfg: IMPConfig) -> int:
    """Iterations of a whole IMP run when every training runs its budget (an epoch budget resolved on its
    split's rows), without loading data."""
    sizes = {name: len(rows) for name, rows in make_splits(cfg, data_mod.TRAIN_SIZE[cfg.dataset]).items()}
    return sum(cfg.train.budget_for(sizes[split]).iterations
               for r in range(cfg.rounds + 1) for _, split in round_trainings(cfg, r))


def planned_remaining_pct(cfg: IMPConfig) -> list[float]:
    """Percent of prunable weights (BN gammas included when pruned) left at each level, without training."""
    model = build_model(cfg.network)
    rates = layer_rates(model, cfg.prune_rate, cfg.output_rate, prune_bn=cfg.prune_bn)
    sizes = {n: p.numel() for n, p in prunable_weights(model, include_bn=cfg.prune_bn).items()}
    pooled = pooled_layers(cfg, model)
    if pooled:  # one threshold: the pool's total is known before training, not how it splits over its layers
        sizes = {"pool": sum(sizes.pop(n) for n in pooled), **sizes}
        rates = {"pool": cfg.prune_rate, **{n: r for n, r in rates.items() if n not in pooled}}
    return planned_remaining(sizes, rates, cfg.rounds)


def pooled_layers(cfg: IMPConfig, model: torch.nn.Module) -> list[str]:
    """The layers `cfg.pruning` prunes under one threshold: none layer-wise; under global pruning the hidden
    convolution and linear weights. The output layer keeps its own rate (the paper's p/2), and BN scales theirs:
    their magnitudes (about 1) are on another scale than the weights' and one threshold would never reach them."""
    if cfg.pruning == "layerwise":
        return []
    return [n for n in prunable_weights(model) if n != output_layer_name(model)]


def next_masks(cfg: IMPConfig, model: torch.nn.Module, weights: dict[str, torch.Tensor], masks: Masks) -> Masks:
    """The mask of the next round: `masks` pruned by `cfg.pruning`'s criterion on `weights` (of `model`'s layers)."""
    rates = layer_rates(model, cfg.prune_rate, cfg.output_rate, prune_bn=cfg.prune_bn)
    pooled = pooled_layers(cfg, model)
    if not pooled:
        return prune_layerwise(weights, masks, rates)
    return prune_global(weights, masks, cfg.prune_rate, {n: r for n, r in rates.items() if n not in pooled})


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of values: independent streams per (seed, round, purpose)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def make_splits(cfg: IMPConfig, n_train: int) -> dict[str, torch.Tensor]:
    pool, val = data_mod.validation_split(n_train, cfg.val_size, cfg.split_seed)
    if cfg.train_limit is not None:
        pool = data_mod.random_subset(pool, 100.0 * min(cfg.train_limit, len(pool)) / len(pool), cfg.split_seed)
    s1, s2 = data_mod.split_halves(pool, cfg.split_seed)
    subset = data_mod.random_subset(pool, cfg.subset_percent, cfg.split_seed)
    return {"val": val, "all": pool, "half1": s1, "half2": s2, "subset": subset}


def limit_test_set(data: Dataset, test_limit: int | None, seed: int) -> Dataset:
    if test_limit is None or test_limit >= len(data.test_y):
        return data
    keep = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(seed))[:test_limit]
    keep = keep.to(data.test_y.device)
    return dataclasses.replace(data, test_x=data.test_x[keep], test_y=data.test_y[keep])


@dataclass
class IMPState:
    """Everything needed to run round `round` (and all later rounds)."""
    round: int
    masks: Masks
    init_state: dict  # model state at initialisation (masks all ones)
    rewind_state: dict | None = None  # reset target from round 1 on when rewinding
    rows: list[dict] = field(default_factory=list)
    checkpoint: dict | None = None  # early-stopping state of the last finished round's ticket
    # every training's validation curve: one dict per evaluation, keyed like its row (see CURVE_KEYS)
    curves: list[dict] = field(default_factory=list)


@dataclass
class RoundTraining:
    """One training of a round: its kind, split and mask, and the training itself."""
    kind: str  # ticket | reinit | random_prune
    split: str
    masks: Masks
    job: TrainingJob  # its model reset and masked, on the data's device


class IMPRunner:
    """Runs the rounds of one IMPConfig on a loaded dataset."""

    def __init__(self, cfg: IMPConfig, data: Dataset, progress: bool = True):
        if data.name != cfg.dataset:
            raise ValueError(f"{cfg.network} is trained on {cfg.dataset}, but the dataset given is {data.name}")
        self.cfg, self.progress = cfg, progress
        self.data = limit_test_set(data, cfg.test_limit, cfg.split_seed)
        self.splits = make_splits(cfg, len(data.train_y))
        self.device = data.device
        for split in (cfg.find_on, *cfg.retrain_on):
            if len(self.splits[split]) == 0:
                raise ValueError(f"the {split!r} split has no rows (train_limit={cfg.train_limit}); "
                                 "raise train_limit or choose another split")
        budget = cfg.train.budget_for(len(self.splits[cfg.find_on])).iterations
        if cfg.rewind_iteration is not None and cfg.rewind_iteration > budget:
            raise ValueError(f"rewind_iteration {cfg.rewind_iteration} is past the finding run's budget of {budget} "
                             f"iterations on {cfg.find_on!r}; choose a rewind iteration within it")

    def new_model(self, init_seed: int) -> torch.nn.Module:
        model = build_model(self.cfg.network, seed=init_seed)
        return attach_masks(model, include_bn=self.cfg.prune_bn).to(self.device)

    def initial_state(self) -> IMPState:
        model = self.new_model(derive_seed(self.cfg.seed, "init"))
        return IMPState(round=0, masks=get_masks(model), init_state=state_copy(model))

    def reset(self, model: torch.nn.Module, state: dict, masks: Masks) -> torch.nn.Module:
        model.load_state_dict(state)
        set_masks(model, masks)
        return model

    def job(self, model, split: str, r: int, purpose: str, kind: str, masks: Masks,
            snapshot_at=None) -> RoundTraining:
        return RoundTraining(kind=kind, split=split, masks=masks, job=TrainingJob(
            model=model, train_idx=self.splits[split], val_idx=self.splits["val"],
            cfg=self.cfg.train.budget_for(len(self.splits[split])), seed=derive_seed(self.cfg.seed, r, purpose, split),
            snapshot_at=snapshot_at, desc=f"{self.cfg.network} r{r} {purpose} on {split}"))

    def _row(self, r: int, masks: Masks, kind: str, trained_on: str, budget: int, res) -> dict:
        row = {"network": self.cfg.network, "seed": self.cfg.seed, "round": r,
               "pct_remaining": 100.0 * fraction_remaining(masks), "kind": kind, "found_on": self.cfg.find_on,
               "trained_on": trained_on, "subset_percent": self.cfg.subset_percent,
               "es_iteration": res.es_iteration, "budget": budget, "test_acc": res.test_acc, "test_loss": res.test_loss,
               "val_acc": res.val_acc, "val_loss": res.val_loss, "iterations": res.iterations,
               "wall_seconds": res.wall_seconds, "group_size": res.group_size, "device": str(self.device)}
        for name, m in masks.items():
            row[f"pct_remaining[{name}]"] = 100.0 * float(m.sum()) / m.numel()
        return row

    def round_jobs(self, state: IMPState) -> list[RoundTraining]:
        """The trainings of round `state.round` (see `round_trainings`), each with its reset model."""
        cfg, r = self.cfg, state.round
        if r > cfg.rounds:
            raise ValueError(f"round {r} is past the last round {cfg.rounds}")
        reset_target = self.reset_target(state)
        jobs = []
        for i, (kind, split) in enumerate(round_trainings(cfg, r)):
            if kind == "ticket":
                model = self.reset(self.new_model(0), reset_target, state.masks)
                snap = cfg.rewind_iteration if (i == 0 and r == 0) else None  # the finding run of round 0
                jobs.append(self.job(model, split, r, "ticket" if i == 0 else "retrain", kind, state.masks, snap))
            else:
                model, masks = self.control_model(kind, r, state, reset_target)
                jobs.append(self.job(model, split, r, kind, kind, masks))
        return jobs

    def finish_round(self, state: IMPState, jobs: list[RoundTraining], results: list[TrainResult]) -> IMPState:
        """The next state from the round's trained jobs: rows, and the mask pruned from the finding run."""
        cfg, r = self.cfg, state.round
        rows = [self._row(r, rt.masks, rt.kind, rt.split, rt.job.cfg.iterations, res) for rt, res in zip(jobs, results)]
        curves = [{"round": r, "kind": rt.kind, "trained_on": rt.split, **point}
                  for rt, res in zip(jobs, results) for point in res.history]
        found = results[0]
        if r < cfg.rounds:
            weights = {name: found.best_state[name] for name in state.masks}
            masks = next_masks(cfg, jobs[0].job.model, weights, state.masks)
        else:
            masks = state.masks
        rewind = found.snapshot_state if jobs[0].job.snapshot_at is not None else state.rewind_state
        return IMPState(round=r + 1, masks=masks, init_state=state.init_state, rewind_state=rewind,
                        rows=state.rows + rows, checkpoint=found.best_state, curves=state.curves + curves)

    def reset_target(self, state: IMPState) -> dict:
        """Initial weights, or from round 1 on with late rewinding, the weights at the rewind iteration."""
        return state.rewind_state if (state.round > 0 and state.rewind_state is not None) else state.init_state

    def control_model(self, control: str, r: int, state: IMPState, reset_target: dict):
        """(model, masks) of a control at round r: the ticket's mask on a fresh init, or a random mask."""
        if control == "reinit":
            model = self.new_model(derive_seed(self.cfg.seed, r, "reinit"))
            set_masks(model, state.masks)
            return model, state.masks
        masks = random_masks_like(state.masks, torch.Generator().manual_seed(derive_seed(self.cfg.seed, r, control)))
        return self.reset(self.new_model(0), reset_target, masks), masks
