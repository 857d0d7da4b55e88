"""Section 3 of the paper: are tickets found on one half of the data trainable on the other?

Used by `notebooks/01_trainability_unseen.ipynb` (Figure 1 and Table 1).

- `table1()`: the paper's Table 1 regenerated from the code: layers and weight
  counts from the built models, training settings from `config.PAPER_TRAINING`,
  prune rates from `pruning.layer_rates` with `config.PAPER_PRUNE_RATE`.
- `unseen_config(network, ...)`: the experiment's IMP configuration: tickets
  found on S1 (`half1`), each round's ticket also trained from its reset
  weights on S2 (`half2`), controls trained on S2.
- `configs_from_parameters(P)`: the notebook's runs from its parameters: per network, seed and (LeNet)
  named training setting (`config.TRAINING_SETTINGS`; parameter `lenet_settings`), as `StudyConfigs`: the
  configs with the setting each was built from, a parameter that changes it (`lenet_weight_decay`) named
  with it (`setting_key`, "table1, weight_decay 0.0005"; `setting_label` its words);
- `run_settings(configs)`: what a run actually used (budgets, split sizes), with
  a check that S1, S2 and the validation rows are disjoint.
- `label_settings(rows, configs)`: each row's training setting (`setting`), as its run was built;
- `label_curves(rows)`: names each row's curve (ticket on S1 / on S2, controls).
- `figure1(rows, network, tolerance)`: the figure of one network: test accuracy
  and early-stopping iteration against percent of weights remaining.
- `controls_figure(rows, network)`: test accuracy of the ticket on S2 and its controls against percent
  remaining, one panel per training setting, 95% bands over seeds.
- `groups(rows)`, `group_rows`: the (network, setting) pairs present, and the rows of one;
- `level_table`, `control_intervals`, `findings`: per-level means, the ticket's lead over each control per
  level with its 95% interval over seeds, and the numbers behind the statements, per network and setting;
- `claims(found)`: the claims table (the paper's claim, ours, the rule, the verdict), decided by
  `PCT_PRUNED_RULE`, `BEATS_CONTROL_RULE` and their preconditions; `paper_numbers()` the paper's
  numbers those rules read;
  `findings_markdown`: the longer statements, computed from the rows; `controls_markdown(found)`: what the
  ticket against its controls means for Figure 1's claim, per setting.
"""
import dataclasses
import re
from collections import Counter

import numpy as np
import pandas as pd
from torch import nn

from lth_core import config
from lth_core.data import load_dataset
from lth_core.config import (LEFT_OPEN, TABLE1, IMPConfig, TrainConfig, is_paper_scale, paper_config, setting_of,
                             setting_overrides, training_settings)
from lth_core.imp import make_splits
from lth_core.models import (DATASET_LABEL, DATASET_OF, FIGURE_STEM, NETWORK_LABEL, build_model, count_prunable,
                             network_title, output_layer_name, prunable_weights)
from lth_core.pruning import layer_rates
from lth_core.training import budget_bound
from lth_core.report import plots
from lth_core.report.claims import claim, claims_frame, learned, not_learned
from lth_core.report.intervals import mean_interval
from lth_core.report.paper import FIGURE_PANEL, has_paper_value, paper_series, paper_value
from lth_core.report.rules import Precondition, Rule, paper_numbers_table
from lth_core.params.notebook import PARAM_PREFIX, network_overrides
from lth_core.runs.experiment import grid
from lth_core.runs.store import run_name
from lth_core.report.tables import fmt, format_count, format_float, points
from lth_core.studies import analysis
from lth_core.config import iterations_per_epoch

NOTEBOOK = "01_trainability_unseen"

FIGURE1_NETWORKS = tuple(PARAM_PREFIX)  # the networks with per-network notebook parameters
TABLE1_NETWORKS = ("lenet_300_100", "conv2", "shufflenet")
def claim_pct_key(network: str) -> str:
    """The paper number Section 3's rule for `network` tests: how far its text says the S2 curve stays within
    tolerance (`unseen.pct_pruned.<network>`), unless its Figure 1 shows less: then the figure's reading
    (`unseen.figure_pct_pruned.<network>`), and the text's number is quoted beside it."""
    figure = f"unseen.figure_pct_pruned.{network}"
    return figure if has_paper_value(figure) else f"unseen.pct_pruned.{network}"


# Section 3's claim, per network: the S2 curve stays within tolerance up to the paper's % pruned ...
PCT_PRUNED_RULE = {n: Rule(f"pct_pruned_within_tolerance >= paper['{claim_pct_key(n)}']") for n in FIGURE1_NETWORKS}
# ... unless the run ends within tolerance before that level: then where the curve leaves it is unknown
REACHED = {n: Precondition(Rule(f"not within_tolerance_to_the_end or sparsest_pct_pruned >= "
                                f"paper['{claim_pct_key(n)}']"),
                           "the run stops at {sparsest_pct_pruned:.1f}% pruned, still within tolerance, short of "
                           f"the paper's {{paper[{claim_pct_key(n)}]:g}}%")
           for n in FIGURE1_NETWORKS}
# Section 3's conclusion: tickets found on S1 train on unseen S2 as well as on S1, over the pruned levels down to
# the paper's (the gap S2 minus S1, paired by seed and level; `analysis.mean_gap`, module docstring there)
AS_WELL_AS_S1_RULE = Rule("s2_minus_s1_high >= -(tolerance + s2_minus_s1_allowance)")
COMPARED = Precondition(Rule("s2_minus_s1_levels >= 1"), "no pruned level has the ticket trained on both S1 and S2")
# Our controls, not in the paper: the ticket on S2 beats a control when the 95% interval over seeds of its lead
# (ticket minus control, paired by seed: one run trains both, on the same mask or from the same init) lies above 0
# at the level compared (where the S2 curve is last within tolerance).
BEATS_CONTROL_RULE = {c: Rule(f"{c}_lead_low > 0") for c in ("reinit", "random_prune")}
# One seed gives one difference and no interval: seed-to-seed spread of a LeNet ticket's test accuracy is of the
# order of the differences at stake (tenths of a point), so a difference from one run could be noise either way.
SEVERAL_SEEDS = Precondition(Rule("seeds >= 2"), "one seed: no interval, and a difference of one run may be "
                             "seed-to-seed noise (run several seeds, e.g. the controls profile)")

S1, S2 = "half1", "half2"
CONFIG_COLUMNS = {"budget": "train.iterations"}  # beside each row of the table
SETTING_LABEL = {TABLE1: "Table 1's settings (the authors' code)",
                 "table1_no_weight_decay": "Table 1's without weight decay",
                 "frankle_carbin": "Frankle & Carbin's settings"}
CURVES = {  # (kind, trained_on) -> label, in legend order
    ("ticket", S1): "ticket, trained on S1 (seen)",
    ("ticket", S2): "ticket, trained on S2 (unseen)",
    ("reinit", S2): "control: random re-init, on S2",
    ("random_prune", S2): "control: random pruning, on S2",
}
CONTROL_LABEL = {"reinit": "the randomly re-initialised control", "random_prune": "the randomly pruned control"}
CONTROL_CHANGE = {"reinit": "with a fresh initialisation", "random_prune": "with a random mask"}  # what it changes


# ---------------------------------------------------------------- Table 1

def _conv_kind(c: nn.Conv2d) -> str:
    k = "x".join(str(s) for s in c.kernel_size)
    return f"{k} depthwise" if c.groups > 1 and c.groups == c.in_channels else k


def describe_layers(model: nn.Module) -> dict:
    """Convolutions and fully connected layers of a built model, as short strings, plus counts."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    if not convs:
        conv_text = "-"
    elif len(convs) <= 4:
        conv_text = ", ".join(f"{c.in_channels}→{c.out_channels} ({_conv_kind(c)})" for c in convs)
    else:
        kinds = Counter(_conv_kind(c) for c in convs)
        conv_text = f"{len(convs)} conv layers (" + ", ".join(f"{n} × {k}" for k, n in kinds.most_common()) + ")"
    for p in pools:
        k = p.kernel_size if isinstance(p.kernel_size, int) else p.kernel_size[0]
        conv_text += f", {'max' if isinstance(p, nn.MaxPool2d) else 'avg'}-pool {k}x{k}"
    fc_text = ", ".join(f"{m.in_features}→{m.out_features}" for m in fcs) or "-"
    return {"convolutions": conv_text, "fc_layers": fc_text, "n_conv": len(convs), "n_fc": len(fcs)}


def describe_lr(tc) -> str:
    lr = format_float(tc.lr)
    if tc.lr_schedule == "exponential":
        return f"{lr}, ×{tc.lr_gamma:g} every epoch"
    if tc.lr_schedule == "step":
        every = "epoch" if tc.lr_step_epochs == 1 else f"{tc.lr_step_epochs} epochs"
        return f"{lr}, ×{tc.lr_gamma:g} every {every}"
    return f"{lr}, constant"


def table1(networks=TABLE1_NETWORKS) -> pd.DataFrame:
    """Table 1, one row per network, every value read from the code (nothing typed by hand)."""
    rows = []
    for name in networks:
        model = build_model(name, seed=0)
        n_weights = count_prunable(model)
        rates = layer_rates(model, config.PAPER_PRUNE_RATE[name])
        out_name = output_layer_name(model)
        hidden = {r for layer, r in rates.items() if layer != out_name}
        if len(hidden) != 1:
            raise ValueError(f"{name}: hidden layers have several prune rates {sorted(hidden)}")
        tc = config.PAPER_TRAINING[name]
        rows.append({
            "network": NETWORK_LABEL.get(name, name),
            **{k: v for k, v in describe_layers(model).items() if not k.startswith("n_")},
            "prunable_layers": len(prunable_weights(model)),
            "prunable_weights": n_weights,
            "weights": format_count(n_weights),
            "parameters_with_biases_and_bn": sum(p.numel() for p in model.parameters()),
            "batch_size": tc.batch_size,
            "iterations": tc.iterations,
            "prune_pct_hidden": 100 * hidden.pop(),
            "prune_pct_output": 100 * rates[out_name],
            "optimizer": {"adam": "Adam"}[tc.optimizer],
            "learning_rate": describe_lr(tc),
            "weight_decay": format_float(tc.weight_decay),
            "dataset": DATASET_LABEL[DATASET_OF[name]],
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the experiment's configuration

def check_networks(networks) -> list[str]:
    networks = list(networks)
    bad = [n for n in networks if n not in FIGURE1_NETWORKS]
    if bad or not networks:
        raise ValueError(f"networks for Figure 1 must be a non-empty list from {list(FIGURE1_NETWORKS)}, "
                         f"got {networks}")
    return networks


def unseen_config(network: str, controls=("reinit",), **overrides) -> IMPConfig:
    """Table 1's settings for `network`, tickets found on S1, retrained on S2, controls on S2."""
    check_networks([network])
    return paper_config(network, find_on=S1, retrain_on=(S2,), controls=tuple(controls), **overrides)


# the TrainConfig fields a named setting fixes (its optimisation); the budget and LEFT_OPEN are the notebook's in
# every setting, so a parameter of one of these (`lenet_weight_decay`) changes the setting and is named with it
SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("iterations", "epochs",
                                                                                         *LEFT_OPEN))


class StudyConfigs(list):
    """`configs_from_parameters`' configs (a list of IMPConfig) and `setting`: {run name: the key of the training
    setting it was built from (`setting_key`)}, recorded there rather than guessed back from the config."""

    def __init__(self, configs: list[IMPConfig], setting: dict[str, str]):
        super().__init__(configs)
        self.setting = setting


def setting_key(name: str, changes: dict) -> str:
    """A training setting as rows name it: the named setting, then each changed field and its value."""
    return ", ".join([name, *(f"{field} {value}" for field, value in changes.items())])


def _setting_name(key: str) -> str:
    return key.partition(", ")[0]


def setting_label(key: str) -> str:
    """A setting key in words: "table1, weight_decay 0.0005" -> "Table 1's settings (...), weight_decay 0.0005"."""
    return SETTING_LABEL[_setting_name(key)] + key[len(_setting_name(key)):]


def configs_from_parameters(P: dict) -> StudyConfigs:
    """The notebook's IMP runs from its validated parameters: one per Figure 1 network, training setting
    (LeNet: `lenet_settings`; Conv-2: Table 1's) and seed. `lenet_iterations` is the budget at Table 1's
    settings; each setting gets the same share of its own full budget (`config.setting_overrides`). A parameter
    of a field the setting fixes (`SETTING_FIELDS`) wins over the setting's value and is recorded as its change."""
    configs, setting = [], {}
    for network in check_networks(P["unseen_networks"]):
        overrides = network_overrides(P, network)
        for name in P["lenet_settings"] if network == "lenet_300_100" else [TABLE1]:
            named = training_settings(network)[name]
            changes = {f: v for f, v in overrides.items() if f in SETTING_FIELDS and v != getattr(named, f)}
            over = {**overrides, **setting_overrides(network, name, overrides["iterations"]), **changes}
            key = setting_key(name, changes)
            for cfg in grid(unseen_config(network, controls=P["controls"], **over), seeds=P["seeds"]):
                if setting.setdefault(run_name(cfg), key) != key:  # two settings made equal by the parameters
                    raise ValueError(f"{network}: the settings {setting[run_name(cfg)]!r} and {key!r} train the same "
                                     "runs under these parameters; keep one of them in lenet_settings")
                configs.append(cfg)
    return StudyConfigs(configs, setting)


def _dataset_sizes(dataset: str) -> tuple[int, int]:
    d = load_dataset(dataset)
    return len(d.train_y), len(d.test_y)


def run_settings(configs: list[IMPConfig], sizes: dict | None = None) -> pd.DataFrame:
    """One row per network: the budgets and split sizes a run used; checks the splits are disjoint.

    `sizes` maps dataset -> (n_train, n_test); by default read from the datasets themselves.
    """
    sizes = dict(sizes or {})
    rows, seen = [], set()
    for cfg in configs:
        if (cfg.network, cfg.train) in seen:
            continue
        seen.add((cfg.network, cfg.train))
        if cfg.dataset not in sizes:
            sizes[cfg.dataset] = _dataset_sizes(cfg.dataset)
        n_train, n_test = sizes[cfg.dataset]
        sp = make_splits(cfg, n_train)
        s1, s2, val = (set(sp[k].tolist()) for k in (S1, S2, "val"))
        if s1 & s2 or val & (s1 | s2):
            raise RuntimeError(f"{cfg.network}: S1, S2 and the validation rows overlap")
        tc = cfg.train
        rows.append({
            "network": NETWORK_LABEL[cfg.network],
            "setting": configs.setting[run_name(cfg)] if isinstance(configs, StudyConfigs)
            else setting_of(cfg.network, cfg.train),
            "seeds": sorted({c.seed for c in configs if c.network == cfg.network and c.train == cfg.train}),
            "rounds": cfg.rounds, "iterations": tc.iterations, "batch_size": tc.batch_size,
            "eval_every": tc.eval_every, "patience": tc.patience, "precision": tc.precision,
            "learning_rate": describe_lr(tc),
            "weight_decay": format_float(tc.weight_decay), "S1_rows": len(s1), "S2_rows": len(s2),
            "validation_rows": len(val), "test_rows": n_test if cfg.test_limit is None else min(cfg.test_limit, n_test),
            "epochs_on_S1": round(tc.iterations / iterations_per_epoch(len(s1), tc.batch_size), 2),
            "controls": ", ".join(cfg.controls) or "none",
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- results

def label_settings(rows: pd.DataFrame, configs: StudyConfigs) -> pd.DataFrame:
    """Rows with a `setting` column: the key of the training setting each row's run was built from."""
    if not isinstance(configs, StudyConfigs):
        raise ValueError("these configs carry no record of their training settings; make them with "
                         "configs_from_parameters")
    unknown = sorted(set(rows["run"]) - set(configs.setting))
    if unknown:
        raise ValueError(f"rows of runs {unknown} are not among the configs given; pass the configs that made them")
    return rows.assign(setting=rows["run"].map(configs.setting))


def groups(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """The (network, setting) pairs present in `rows`, networks in Figure 1's order, settings in the library's
    (a changed setting after its named one)."""
    present = {(n, s) for n, s in zip(rows["network"], rows["setting"]) if n in FIGURE1_NETWORKS}
    order = lambda pair: (FIGURE1_NETWORKS.index(pair[0]),
                          list(training_settings(pair[0])).index(_setting_name(pair[1])), pair[1])
    return sorted(present, key=order)


def group_rows(rows: pd.DataFrame, network: str, setting: str) -> pd.DataFrame:
    """The rows of one network under one training setting."""
    return rows[(rows["network"] == network) & (rows["setting"] == setting)]


def _one_setting(rows: pd.DataFrame, network: str) -> str:
    """The setting of `network`'s rows; an error when they hold several (means must never mix settings)."""
    settings = sorted(set(rows.loc[rows["network"] == network, "setting"]))
    if len(settings) != 1:
        raise ValueError(f"rows of {network} must hold one training setting, got {settings}: select one "
                         "(`groups(rows)` lists them)")
    return settings[0]


def label_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with a `curve` column (ordered categorical); rows of any other split/kind are an error."""
    keys = list(zip(rows["kind"], rows["trained_on"]))
    unknown = sorted(set(keys) - set(CURVES))
    if unknown:
        raise ValueError(f"rows of (kind, trained_on) {unknown} are not part of this experiment; "
                         f"expected {list(CURVES)}")
    present = [label for key, label in CURVES.items() if key in set(keys)]
    out = rows.copy()
    out["curve"] = pd.Categorical([CURVES[k] for k in keys], categories=present, ordered=True)
    return out


def _select(rows: pd.DataFrame, network: str, kind: str, trained_on: str) -> pd.DataFrame:
    return rows[(rows["network"] == network) & (rows["kind"] == kind) & (rows["trained_on"] == trained_on)]


def dense_reference_s2(rows: pd.DataFrame, network: str) -> pd.Series:
    """Mean test accuracy and early-stopping iteration of the unpruned network trained on S2 (one setting's rows)."""
    _one_setting(rows, network)
    s2 = _select(rows, network, "ticket", S2)
    if s2.empty:
        raise ValueError(f"no rows of {network} tickets trained on S2")
    return analysis.dense_reference(s2)


def level_table(rows: pd.DataFrame, network: str, tolerance: float) -> pd.DataFrame:
    """Per pruning level (mean over seeds) of one setting's rows: accuracy and early stopping of every curve, and
    the checks."""
    ref = dense_reference_s2(rows, network)
    out = None
    for kind, split in CURVES:
        sel = _select(rows, network, kind, split)
        if sel.empty:
            continue
        short = {("ticket", S1): "S1", ("ticket", S2): "S2"}.get((kind, split), kind)
        m = analysis.level_means(sel).rename(columns={"test_acc": f"test_acc_{short}",
                                                      "es_iteration": f"es_iteration_{short}"})
        out = m if out is None else out.merge(m, on="pct_remaining", how="outer")
    out = out.sort_values("pct_remaining", ascending=False, ignore_index=True)
    out.insert(0, "network", NETWORK_LABEL[network])
    out.insert(1, "setting", _one_setting(rows, network))
    out.insert(3, "pct_pruned", 100 - out["pct_remaining"])
    within = analysis.level_gaps(_select(rows, network, "ticket", S2), tolerance).set_index("pct_remaining")
    out["S2_within_tolerance"] = out["pct_remaining"].map(within["within"]).astype(bool)
    for control in CONTROL_LABEL:
        if f"test_acc_{control}" in out:
            out[f"S2_minus_{control}"] = out["test_acc_S2"] - out[f"test_acc_{control}"]
    return out


def all_levels(rows: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """`level_table` of every Figure 1 network and setting present in `rows`, stacked."""
    return pd.concat([level_table(group_rows(rows, n, s), n, tolerance) for n, s in groups(rows)],
                     ignore_index=True)


def control_intervals(rows: pd.DataFrame, network: str) -> pd.DataFrame:
    """Per control and pruned level of one setting's rows: the ticket's lead on S2 (ticket minus control, paired
    by seed) as its mean over seeds and 95% t interval (`lead_low`, `lead_high`; NaN from one seed)."""
    setting = _one_setting(rows, network)
    ticket = _select(rows, network, "ticket", S2)[["seed", "pct_remaining", "test_acc"]]
    out = []
    for control in CONTROL_LABEL:
        paired = ticket.merge(_select(rows, network, control, S2)[["seed", "pct_remaining", "test_acc"]],
                              on=["seed", "pct_remaining"], suffixes=("_ticket", "_control"))
        for level, d in paired.groupby("pct_remaining"):
            lead, low, high = mean_interval(d["test_acc_ticket"] - d["test_acc_control"])
            out.append({"network": network, "setting": setting, "control": control, "pct_remaining": float(level),
                        "seeds": d["seed"].nunique(), "lead": lead, "lead_low": low, "lead_high": high})
    return pd.DataFrame(out, columns=["network", "setting", "control", "pct_remaining", "seeds", "lead",
                                      "lead_low", "lead_high"])


def all_control_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """`control_intervals` of every Figure 1 network and setting present in `rows`, stacked."""
    return pd.concat([control_intervals(group_rows(rows, n, s), n) for n, s in groups(rows)], ignore_index=True)


def _pruned_down_to(rows: pd.DataFrame, pct_pruned: float) -> pd.DataFrame:
    """The pruned levels of `rows` down to `pct_pruned` % pruned (0.1 of slack: the paper's 32.8 is 0.8**5's 32.77)."""
    return rows[(rows["round"] > 0) & (rows["pct_remaining"] >= 100 - pct_pruned - 0.1)]


def findings(rows: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row per network and setting: how far the S2 curve stays within tolerance, and the ticket against its
    controls there (their mean accuracy, the ticket's lead with its interval) and at every pruned level."""
    out = []
    for network, setting in groups(rows):
        mine = group_rows(rows, network, setting)
        ref = dense_reference_s2(mine, network)
        s2 = _select(mine, network, "ticket", S2)
        levels = level_table(mine, network, tolerance)
        leads = control_intervals(mine, network)
        sparsest = analysis.sparsest_within_tolerance(s2, tolerance)
        pruned = levels[levels["pct_remaining"] < 100]
        paper_pct = paper_value(claim_pct_key(network))
        vs_s1 = analysis.mean_gap(_pruned_down_to(s2, paper_pct),
                                  _pruned_down_to(_select(mine, network, "ticket", S1), paper_pct), on=["pct_remaining"])
        # compare with the controls where the S2 curve is last within tolerance; when no pruned level is
        # within it, at the first pruned level
        if sparsest is not None and sparsest < 100:
            at, at_within = sparsest, True
        else:
            at, at_within = (float(pruned["pct_remaining"].max()) if len(pruned) else None), False
        rec = {"network": network, "setting": setting, "seeds": mine["seed"].nunique(),
               "tolerance": tolerance, "dense_S2_acc": ref["test_acc"], "dense_S2_es_iteration": ref["es_iteration"],
               "sparsest_level": float(levels["pct_remaining"].min()),
               "sparsest_within_tolerance": sparsest,
               "pct_pruned_within_tolerance": None if sparsest is None else 100 - sparsest,
               "paper_pct_pruned": paper_pct, "paper_text_pct_pruned": paper_value(f"unseen.pct_pruned.{network}"),
               "s2_minus_s1": vs_s1["gap"], "s2_minus_s1_high": vs_s1["gap_high"],
               "s2_minus_s1_allowance": vs_s1["allowance"], "s2_minus_s1_levels": vs_s1["levels"],
               "within_tolerance_to_the_end": sparsest is not None and sparsest == float(levels["pct_remaining"].min()),
               "compared_at": at, "compared_within_tolerance": at_within,
               "mean_S2_minus_S1": float((pruned["test_acc_S2"] - pruned["test_acc_S1"]).mean()) if len(pruned) else None}
        if at is not None:
            lv = levels[levels["pct_remaining"] == at].iloc[0]
            rec["ticket_S2_acc_at"] = lv["test_acc_S2"]
            for control in CONTROL_LABEL:
                mine_leads = leads[leads["control"] == control]
                here = mine_leads[mine_leads["pct_remaining"] == at]
                if here.empty:
                    continue
                rec[f"{control}_acc_at"] = lv[f"test_acc_{control}"]
                rec |= {f"{control}_{k}": float(here[k].iloc[0]) for k in ("lead", "lead_low", "lead_high")}
                rec[f"{control}_levels_above"] = int((mine_leads["lead_low"] > 0).sum())
                rec[f"{control}_levels_below"] = int((mine_leads["lead_high"] < 0).sum())
                rec[f"{control}_levels"] = len(mine_leads)
        out.append(rec)
    return pd.DataFrame(out)


def _seeds_text(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def _lead_text(f: pd.Series, control: str) -> str:
    """The ticket against one control at the compared level, with its interval when there is one."""
    lead, low, high = f[f"{control}_lead"], f[f"{control}_lead_low"], f[f"{control}_lead_high"]
    s = f"{CONTROL_LABEL[control]} ({f[f'{control}_acc_at']:.2f}%, a lead of {lead:+.2f} points"
    if pd.isna(low):
        return s + ")"
    verdict = "above" if low > 0 else "below" if high < 0 else "not distinguishable from"
    return s + f", 95% interval {low:+.2f} to {high:+.2f}: {verdict} it)"


def _sentence(f: pd.Series) -> str:
    name = NETWORK_LABEL[f["network"]]
    under = "" if f["setting"] == TABLE1 else f", {setting_label(f['setting'])}"
    s = (f"**{name}** ({DATASET_LABEL[DATASET_OF[f['network']]]}{under}, mean over {_seeds_text(f['seeds'])}): "
         f"the unpruned network trained on S2 reaches {f['dense_S2_acc']:.2f}% test accuracy at early stopping "
         f"(iteration {f['dense_S2_es_iteration']:.0f}). ")
    sparsest, tol = f["sparsest_within_tolerance"], f["tolerance"]
    if sparsest is None or sparsest >= 100:
        s += (f"Already the first pruned ticket, trained on the unseen half S2, falls more than {points(tol)} "
              f"below it (the paper: within tolerance up to {f['paper_pct_pruned']:g}% pruned). ")
    else:
        s += (f"Tickets found on S1 and trained from their reset weights on the unseen half S2 stay within "
              f"{points(tol)} of it down to {sparsest:.3g}% of weights remaining, i.e. "
              f"{100 - sparsest:.1f}% pruned (the paper: {f['paper_pct_pruned']:g}% pruned)")
        if f["within_tolerance_to_the_end"]:
            s += (", which is the sparsest level this run reached: the limit lies beyond it, "
                  "and more rounds would be needed to find it. ")
        else:
            s += ". "
    if f.get("compared_at") is not None and pd.notna(f.get("compared_at")):
        where = ("There" if f["compared_within_tolerance"]
                 else f"At the first pruned level ({f['compared_at']:.3g}% remaining)")
        parts = [_lead_text(f, c) for c in CONTROL_LABEL if pd.notna(f.get(f"{c}_lead", float("nan")))]
        if parts:
            s += f"{where} the ticket ({f['ticket_S2_acc_at']:.2f}% on S2) is compared with " + " and ".join(parts)
            s += ". " if f["seeds"] > 1 else "; from one seed no interval tells a difference from seed noise. "
        else:
            s += "No control was run, so whether the ticket beats one is not shown. "
    if pd.notna(f.get("mean_S2_minus_S1")):
        s += (f"Averaged over the pruned levels, training on unseen data S2 instead of S1 changes the test "
              f"accuracy by {f['mean_S2_minus_S1']:+.2f} points.")
    return s


def _in_setting(text: str, setting: str) -> str:
    """A claim's text, naming the training setting unless it is Table 1's (the paper's own)."""
    return text if setting == TABLE1 else f"{text}, under {setting_label(setting)}"


def claims(found: pd.DataFrame) -> pd.DataFrame:
    """The claims table of Figure 1, one row per network, setting and claim (see report/claims.py)."""
    out = []
    for _, f in found.iterrows():
        net, setting, seeds, tol = f["network"], f["setting"], int(f["seeds"]), f["tolerance"]
        learned_blocker = not_learned(net, f["dense_S2_acc"])  # every claim about this network's run
        paper = f["paper_pct_pruned"]
        within = f["pct_pruned_within_tolerance"]
        values = {"pct_pruned_within_tolerance": 0.0 if within is None or pd.isna(within) else float(within),
                  "within_tolerance_to_the_end": bool(f["within_tolerance_to_the_end"]),
                  "sparsest_pct_pruned": 100.0 - f["sparsest_level"]}
        text_pct = f["paper_text_pct_pruned"]
        stated = (f"{paper:g}% pruned" if paper == text_pct else
                  f"{paper:g}% pruned in its Figure 1 (its text says {text_pct:g}%; the rule tests the figure)")
        out.append(claim(
            NOTEBOOK, net, _in_setting(f"tickets found on S1 and trained on unseen S2 stay within {points(tol)} of "
                                       f"the unpruned network up to {paper:g}% pruned", setting),
            "Fig. 1", stated, f"{values['pct_pruned_within_tolerance']:.1f}% pruned",
            PCT_PRUNED_RULE[net], values, [learned_blocker, REACHED[net].unmet(values)], seeds))
        gap, levels = f["s2_minus_s1"], int(f["s2_minus_s1_levels"])
        out.append(claim(
            NOTEBOOK, net, _in_setting(f"tickets found on S1 train on unseen S2 as well as on S1: the mean gap S2 "
                                       f"minus S1 over the pruned levels down to {paper:g}% pruned is within "
                                       f"{points(tol)}", setting),
            "Sec. 3", "as well (its conclusion)",
            "no level compared" if not levels else
            f"{gap:+.2f} points over {levels} levels (upper 95% bound {f['s2_minus_s1_high']:+.2f}; reading "
            f"allowance {f['s2_minus_s1_allowance']:.2f})",
            AS_WELL_AS_S1_RULE, f, [learned_blocker, COMPARED.unmet(f)], seeds))
        for control in CONTROL_LABEL:
            if pd.isna(f.get(f"{control}_lead", float("nan"))):
                continue
            lead, low, high = (f[f"{control}_{k}"] for k in ("lead", "lead_low", "lead_high"))
            ours = f"{lead:+.2f} points at {f['compared_at']:.3g}% remaining"
            ours += (" (one seed: no interval)" if pd.isna(low) else
                     f" (95% interval {low:+.2f} to {high:+.2f}; above 0 at {f[f'{control}_levels_above']} of "
                     f"{f[f'{control}_levels']} pruned levels)")
            out.append(claim(
                NOTEBOOK, net, _in_setting(f"the ticket on S2 beats {CONTROL_LABEL[control]} where the S2 curve is "
                                           "last within tolerance (our control; not in the paper)", setting),
                "-", "-", ours, BEATS_CONTROL_RULE[control], f,
                [learned_blocker, SEVERAL_SEEDS.unmet({"seeds": seeds})], seeds))
    return claims_frame(out)


def paper_numbers() -> pd.DataFrame:
    """The paper's numbers this notebook's claims read, with where the paper states each."""
    return paper_numbers_table([*PCT_PRUNED_RULE.values(), *REACHED.values(), *BEATS_CONTROL_RULE.values(),
                                *(learned(n) for n in FIGURE1_NETWORKS)],
                               [f"unseen.pct_pruned.{n}" for n in FIGURE1_NETWORKS])


def findings_markdown(found: pd.DataFrame) -> str:
    """The notebook's computed statements, one paragraph per network and setting."""
    return "\n\n".join(_sentence(f) for _, f in found.iterrows())


def _listed(names: list[str], word: str) -> str:
    """'a', 'a and b', 'a, b and c' (`word`: and / or)."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def controls_markdown(found: pd.DataFrame) -> str:
    """What the ticket against its controls means for Figure 1's claim, one paragraph per network and setting
    with controls, then which settings make the claim one about winning tickets."""
    paragraphs, beaten, not_beaten = [], [], []
    for _, f in found.iterrows():
        ran = [c for c in CONTROL_LABEL if pd.notna(f.get(f"{c}_lead", float("nan")))]
        if not ran:
            continue
        where = f"**{NETWORK_LABEL[f['network']]}, {setting_label(f['setting'])}** ({_seeds_text(f['seeds'])})"
        head = (f"{where}: at {f['compared_at']:.3g}% of weights remaining, where the ticket on S2 is "
                + ("last within tolerance" if f["compared_within_tolerance"] else "first pruned")
                + ", it is compared with " + " and ".join(_lead_text(f, c) for c in ran) + ". ")
        if f["seeds"] < 2:
            paragraphs.append(head + "One seed gives no interval, so whether Figure 1's claim is about winning "
                              "tickets at these settings stays open: run several seeds (the `controls` profile).")
            continue
        lost = [c for c in ran if not f[f"{c}_lead_low"] > 0]
        name = f"{NETWORK_LABEL[f['network']]} under {setting_label(f['setting'])}"
        if lost:
            not_beaten.append(name)
            paragraphs.append(head + f"The ticket does not beat {' or '.join(CONTROL_LABEL[c] for c in lost)}, so "
                              "here Figure 1's \"tickets train on unseen data\" says nothing about *winning* "
                              "tickets: a network of the same density "
                              + " or ".join(CONTROL_CHANGE[c] for c in lost) + " trains on S2 as well.")
        else:
            beaten.append(name)
            paragraphs.append(head + "The ticket beats every control run, so here what trains on unseen S2 is a "
                              "winning ticket: its initialisation and mask matter, as Figure 1's claim assumes.")
    if beaten and not_beaten:
        paragraphs.append(f"Across settings, the ticket beats every control run with {_listed(beaten, 'and')}, and not "
                          f"with {_listed(not_beaten, 'or')}. Figure 1's claim is a statement about winning tickets "
                          "only where it does.")
    elif beaten:
        paragraphs.append(f"The ticket beats every control run in every setting ({_listed(beaten, 'and')}): Figure "
                          "1's claim is a statement about winning tickets in each.")
    elif not_beaten:
        paragraphs.append(f"In no setting does the ticket beat every control run ({_listed(not_beaten, 'and')}): at "
                          "these settings Figure 1's claim is not evidence of *winning* tickets, only of sparse "
                          "networks that train on unseen data.")
    return "\n\n".join(paragraphs) or "No control was run: the ticket is not compared with one."


# ---------------------------------------------------------------- Figures

def figure1(rows: pd.DataFrame, network: str, tolerance: float):
    """Two panels for `network` (rows of one training setting): test accuracy and early-stopping iteration vs
    percent remaining; the paper's Figure 1 points of the network on the accuracy panel (it shows no
    early-stopping iteration)."""
    d = label_curves(rows[rows["network"] == network])
    if d.empty:
        raise ValueError(f"no rows for network {network!r}")
    ref = dense_reference_s2(rows, network)
    setting = _one_setting(rows, network)
    fig, axes = plots.new_figure(ncols=2, width=6.0, height=4.2)
    ax_acc, ax_es = axes[0]
    plots.plot_vs_remaining(d, "test_acc", ax_acc, hue="curve", reference=ref["test_acc"],
                            reference_label="unpruned, trained on S2",
                            ylabel="test accuracy at early stopping (%)", title="test accuracy",
                            paper=paper_series("Figure 1", FIGURE_PANEL[network]) if network in FIGURE_PANEL else None)
    ax_acc.axhspan(ref["test_acc"] - tolerance, ref["test_acc"] + tolerance, color="grey", alpha=0.15, lw=0,
                   label=f"unpruned ± {points(tolerance)} (tolerance)")
    sparsest = analysis.sparsest_within_tolerance(_select(rows, network, "ticket", S2), tolerance)
    if sparsest is not None and sparsest < 100:
        ax_acc.axvline(sparsest, color="grey", ls=":", lw=1.2, label="S2 last within tolerance")
    plots.plot_vs_remaining(d, "es_iteration", ax_es, hue="curve", reference=ref["es_iteration"],
                            reference_label="unpruned, trained on S2", ylabel="early-stopping iteration",
                            title="early-stopping iteration")
    plots.mark_budget_bound(ax_es, d)
    for ax in (ax_acc, ax_es):
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = ax_acc.get_legend_handles_labels()
    for h, label in zip(*ax_es.get_legend_handles_labels()):  # the budget and budget-bound marks
        if label not in labels:
            handles, labels = handles + [h], labels + [label]
    under = "" if setting == TABLE1 else f" ({setting_label(setting)})"
    fig.suptitle(f"{network_title(network)}: tickets found on S1, trained on S1 and on unseen S2{under}")
    fig.tight_layout(rect=(0, 0.03 + 0.035 * -(-len(labels) // 3), 1, 1))  # room for the legend's rows
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    return fig


def figure_stem(network: str, setting: str) -> str:
    """Figure 1's file stem for one network and setting (Table 1's keeps the plain name)."""
    stem = f"fig1_{FIGURE_STEM[network]}"
    return stem if setting == TABLE1 else f"{stem}_" + re.sub(r"[^\w.]+", "_", setting)  # no spaces, commas


def controls_figure(rows: pd.DataFrame, network: str):
    """Test accuracy of the ticket on S2, its re-init and random-pruning controls against percent remaining, one
    panel per training setting of `network` in `rows`, 95% bands over seeds, the unpruned network on S2 dashed."""
    mine = rows[(rows["network"] == network) & (rows["trained_on"] == S2)]
    if mine.empty or not set(mine["kind"]) & set(CONTROL_LABEL):
        raise ValueError(f"no control rows of {network} trained on S2: run with controls")
    d = label_curves(mine)  # one set of categories for every panel: the same colour per curve
    settings = [s for n, s in groups(mine) if n == network]
    fig, axes = plots.new_figure(ncols=len(settings), width=4.6, height=4.0)
    for ax, setting in zip(axes[0], settings):
        part = d[d["setting"] == setting]
        plots.plot_vs_remaining(part, "test_acc", ax, hue="curve",
                                reference=dense_reference_s2(part, network)["test_acc"],
                                reference_label="unpruned, trained on S2",
                                ylabel="test accuracy at early stopping (%)",
                                title=f"{setting_label(setting)}\n({_seeds_text(part['seed'].nunique())})")
    for ax in axes[0][1:]:
        ax.set_ylabel("")  # the shared scale's label once, on the left
    handles, labels = axes[0][0].get_legend_handles_labels()
    low = min(ax.get_ylim()[0] for ax in axes[0])
    high = max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:
        ax.set_ylim(low, high)  # one scale, so panels compare by eye
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(f"{network_title(network)}: the ticket on unseen S2 against its controls")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small", frameon=False)
    return fig


def _full_scale(cfg: IMPConfig) -> bool:
    setting = setting_of(cfg.network, cfg.train)
    return setting is not None and is_paper_scale(cfg, setting)


def scale_note(configs: list[IMPConfig], rows: pd.DataFrame | None = None) -> str:
    """The notebook's caveats on scale: whether this run has the full scale of its settings, per network, and
    (from `rows`, labelled with their setting) where the budget rather than early stopping ended trainings."""
    small = [NETWORK_LABEL[n] for n in dict.fromkeys(c.network for c in configs)
             if not all(_full_scale(c) for c in configs if c.network == n)]
    notes = ["This run uses Table 1's budgets (each setting's full budget) on the full data sets." if not small else
             f"This run is scaled down for {', '.join(small)} (budgets or data smaller than its settings'; see the "
             "settings table above): its numbers show the method and the shape of the curves, not the paper's "
             "values."]
    for network, setting in groups(rows) if rows is not None else []:
        mine = group_rows(rows, network, setting)
        bound = budget_bound(mine["es_iteration"], mine["budget"])
        if bound.any():
            notes.append(f"Under {setting_label(setting)}, {int(bound.sum())} of {len(mine)} trainings of "
                         f"{NETWORK_LABEL[network]} early-stopped in the last tenth of their budget "
                         f"({mine['budget'].max():,.0f} iterations): there the budget, not early stopping, ended "
                         "training (for the ticket and its controls alike), and a longer one may raise their "
                         "accuracies.")
    return " ".join(notes)
