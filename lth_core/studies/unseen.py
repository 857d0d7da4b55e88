"""Section 3 of the paper: are tickets found on one half of the data trainable on the other?

Used by `notebooks/01_trainability_unseen.ipynb` (Figure 1 and Table 1).

- `table1()`: the paper's Table 1 regenerated from the code: layers and weight
  counts from the built models, training settings from `imp.PAPER_TRAINING`,
  prune rates from `pruning.layer_rates` with `imp.PAPER_PRUNE_RATE`.
- `unseen_config(network, ...)`: the experiment's IMP configuration: tickets
  found on S1 (`half1`), each round's ticket also trained from its reset
  weights on S2 (`half2`), controls trained on S2.
- `configs_from_parameters(P)`: the notebook's runs from its parameters;
- `run_settings(configs)`: what a run actually used (budgets, split sizes), with
  a check that S1, S2 and the validation rows are disjoint.
- `label_curves(rows)`: names each row's curve (ticket on S1 / on S2, controls).
- `figure1(rows, network, tolerance)`: the figure of one network: test accuracy
  and early-stopping iteration against percent of weights remaining.
- `level_table`, `findings`: per-level means, and the numbers behind the statements;
- `claims(found)`: the claims table (the paper's claim, ours, the rule, the verdict), decided by
  `PCT_PRUNED_RULE`, `BEATS_REINIT_RULE` and their preconditions; `paper_numbers()` the paper's
  numbers those rules read;
  `findings_markdown`: the longer statements, computed from the rows.
"""
import dataclasses
from collections import Counter

import numpy as np
import pandas as pd
from torch import nn

from lth_core import imp
from lth_core.data import load_dataset
from lth_core.imp import IMPConfig, is_paper_scale, make_splits, paper_config
from lth_core.models import (DATASET_LABEL, DATASET_OF, NETWORK_LABEL, build_model, count_prunable,
                             network_title, output_layer_name, prunable_weights)
from lth_core.pruning import layer_rates
from lth_core.report import plots
from lth_core.report.claims import claim, claims_frame, learned, not_learned
from lth_core.report.paper import FIGURE_PANEL, paper_series, paper_value
from lth_core.report.rules import Precondition, Rule, paper_numbers_table
from lth_core.report.params import PARAM_PREFIX, network_overrides
from lth_core.runs.experiment import grid
from lth_core.report.tables import fmt, format_count, format_float, points
from lth_core.studies import analysis
from lth_core.training import iterations_per_epoch

NOTEBOOK = "01_trainability_unseen"

FIGURE1_NETWORKS = tuple(PARAM_PREFIX)  # the networks with per-network notebook parameters
TABLE1_NETWORKS = ("lenet_300_100", "conv2", "shufflenet")
# Section 3's claim, per network: the S2 curve stays within tolerance up to the paper's % pruned ...
PCT_PRUNED_RULE = {n: Rule(f"pct_pruned_within_tolerance >= paper['unseen.pct_pruned.{n}']")
                   for n in FIGURE1_NETWORKS}
# ... unless the run ends within tolerance before that level: then where the curve leaves it is unknown
REACHED = {n: Precondition(Rule(f"not within_tolerance_to_the_end or sparsest_pct_pruned >= "
                                f"paper['unseen.pct_pruned.{n}']"),
                           "the run stops at {sparsest_pct_pruned:.1f}% pruned, still within tolerance, short of "
                           f"the paper's {{paper[unseen.pct_pruned.{n}]:g}}%")
           for n in FIGURE1_NETWORKS}
BEATS_REINIT_RULE = Rule("ticket_S2_acc_at > reinit_acc_at")  # our control, not in the paper

S1, S2 = "half1", "half2"
CONFIG_COLUMNS = {"budget": "train.iterations"}  # beside each row of the table
CURVES = {  # (kind, trained_on) -> label, in legend order
    ("ticket", S1): "ticket, trained on S1 (seen)",
    ("ticket", S2): "ticket, trained on S2 (unseen)",
    ("reinit", S2): "control: random re-init, on S2",
    ("random_prune", S2): "control: random pruning, on S2",
}
CONTROL_LABEL = {"reinit": "the randomly re-initialised control", "random_prune": "the randomly pruned control"}


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
        rates = layer_rates(model, imp.PAPER_PRUNE_RATE[name])
        out_name = output_layer_name(model)
        hidden = {r for layer, r in rates.items() if layer != out_name}
        if len(hidden) != 1:
            raise ValueError(f"{name}: hidden layers have several prune rates {sorted(hidden)}")
        tc = imp.PAPER_TRAINING[name]
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


def configs_from_parameters(P: dict) -> list[IMPConfig]:
    """The notebook's IMP runs from its validated parameters: one per Figure 1 network and seed."""
    configs = []
    for network in check_networks(P["unseen_networks"]):
        base = unseen_config(network, controls=P["controls"], **network_overrides(P, network))
        configs += grid(base, seeds=P["seeds"])
    return configs


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
        if cfg.network in seen:
            continue
        seen.add(cfg.network)
        if cfg.dataset not in sizes:
            sizes[cfg.dataset] = _dataset_sizes(cfg.dataset)
        n_train, n_test = sizes[cfg.dataset]
        sp = make_splits(cfg, n_train)
        s1, s2, val = (set(sp[k].tolist()) for k in (S1, S2, "val"))
        if s1 & s2 or val & (s1 | s2):
            raise RuntimeError(f"{cfg.network}: S1, S2 and the validation rows overlap")
        tc = cfg.train
        rows.append({
            "network": NETWORK_LABEL[cfg.network], "seeds": sorted({c.seed for c in configs if c.network == cfg.network}),
            "rounds": cfg.rounds, "iterations": tc.iterations, "batch_size": tc.batch_size,
            "eval_every": tc.eval_every, "learning_rate": describe_lr(tc), "S1_rows": len(s1), "S2_rows": len(s2),
            "validation_rows": len(val), "test_rows": n_test if cfg.test_limit is None else min(cfg.test_limit, n_test),
            "epochs_on_S1": round(tc.iterations / iterations_per_epoch(len(s1), tc.batch_size), 2),
            "controls": ", ".join(cfg.controls) or "none",
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- results

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
    """Mean test accuracy and early-stopping iteration of the unpruned network trained on S2."""
    s2 = _select(rows, network, "ticket", S2)
    if s2.empty:
        raise ValueError(f"no rows of {network} tickets trained on S2")
    return analysis.dense_reference(s2)


def level_table(rows: pd.DataFrame, network: str, tolerance: float) -> pd.DataFrame:
    """Per pruning level (mean over seeds): accuracy and early stopping of every curve, and the checks."""
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
    out.insert(2, "pct_pruned", 100 - out["pct_remaining"])
    out["S2_within_tolerance"] = out["test_acc_S2"] >= ref["test_acc"] - tolerance
    for control in ("reinit", "random_prune"):
        if f"test_acc_{control}" in out:
            out[f"S2_minus_{control}"] = out["test_acc_S2"] - out[f"test_acc_{control}"]
    return out


def all_levels(rows: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """`level_table` of every Figure 1 network present in `rows`, stacked."""
    nets = [n for n in FIGURE1_NETWORKS if n in set(rows["network"])]
    return pd.concat([level_table(rows, n, tolerance) for n in nets], ignore_index=True)


def findings(rows: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row per network: how far the S2 curve stays within tolerance, and ticket vs controls there."""
    out = []
    for network in [n for n in FIGURE1_NETWORKS if n in set(rows["network"])]:
        ref = dense_reference_s2(rows, network)
        s2 = _select(rows, network, "ticket", S2)
        levels = level_table(rows, network, tolerance)
        sparsest = analysis.sparsest_within_tolerance(s2, ref["test_acc"], tolerance)
        pruned = levels[levels["pct_remaining"] < 100]
        # compare with the controls where the S2 curve is last within tolerance; when no pruned level is
        # within it, at the first pruned level
        if sparsest is not None and sparsest < 100:
            at, at_within = sparsest, True
        else:
            at, at_within = (float(pruned["pct_remaining"].max()) if len(pruned) else None), False
        rec = {"network": network, "seeds": rows.loc[rows["network"] == network, "seed"].nunique(),
               "tolerance": tolerance, "dense_S2_acc": ref["test_acc"], "dense_S2_es_iteration": ref["es_iteration"],
               "sparsest_level": float(levels["pct_remaining"].min()),
               "sparsest_within_tolerance": sparsest,
               "pct_pruned_within_tolerance": None if sparsest is None else 100 - sparsest,
               "paper_pct_pruned": paper_value(f"unseen.pct_pruned.{network}"),
               "within_tolerance_to_the_end": sparsest is not None and sparsest == float(levels["pct_remaining"].min()),
               "compared_at": at, "compared_within_tolerance": at_within,
               "mean_S2_minus_S1": float((pruned["test_acc_S2"] - pruned["test_acc_S1"]).mean()) if len(pruned) else None}
        if at is not None:
            lv = levels[levels["pct_remaining"] == at].iloc[0]
            rec["ticket_S2_acc_at"] = lv["test_acc_S2"]
            for control in ("reinit", "random_prune"):
                if f"test_acc_{control}" in lv and pd.notna(lv[f"test_acc_{control}"]):
                    rec[f"{control}_acc_at"] = lv[f"test_acc_{control}"]
                    rec[f"beats_{control}"] = bool(lv["test_acc_S2"] > lv[f"test_acc_{control}"])
        out.append(rec)
    return pd.DataFrame(out)


def _sentence(f: pd.Series) -> str:
    name = NETWORK_LABEL[f["network"]]
    seeds = f"{f['seeds']} seed" + ("s" if f["seeds"] != 1 else "")
    s = (f"**{name}** ({DATASET_LABEL[DATASET_OF[f['network']]]}, mean over {seeds}): the unpruned network "
         f"trained on S2 reaches {f['dense_S2_acc']:.2f}% test accuracy at early stopping "
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
        parts = []
        for control in ("reinit", "random_prune"):
            if pd.notna(f.get(f"{control}_acc_at", float("nan"))):
                diff = f["ticket_S2_acc_at"] - f[f"{control}_acc_at"]
                verdict = "beats" if f[f"beats_{control}"] else "does not beat"
                parts.append(f"{verdict} {CONTROL_LABEL[control]} ({f[f'{control}_acc_at']:.2f}%, "
                             f"{diff:+.2f} points)")
        if parts:
            s += f"{where} the ticket ({f['ticket_S2_acc_at']:.2f}% on S2) " + " and ".join(parts) + ". "
        else:
            s += "No control was run, so whether the ticket beats one is not shown. "
    if pd.notna(f.get("mean_S2_minus_S1")):
        s += (f"Averaged over the pruned levels, training on unseen data S2 instead of S1 changes the test "
              f"accuracy by {f['mean_S2_minus_S1']:+.2f} points.")
    return s


def claims(found: pd.DataFrame) -> pd.DataFrame:
    """The claims table of Figure 1, one row per network and claim (see report/claims.py)."""
    out = []
    for _, f in found.iterrows():
        net, seeds, tol = f["network"], int(f["seeds"]), f["tolerance"]
        learned_blocker = not_learned(net, f["dense_S2_acc"])  # every claim about this network's run
        paper = f["paper_pct_pruned"]
        within = f["pct_pruned_within_tolerance"]
        values = {"pct_pruned_within_tolerance": 0.0 if within is None or pd.isna(within) else float(within),
                  "within_tolerance_to_the_end": bool(f["within_tolerance_to_the_end"]),
                  "sparsest_pct_pruned": 100.0 - f["sparsest_level"]}
        out.append(claim(
            NOTEBOOK, net, f"tickets found on S1 and trained on unseen S2 stay within {points(tol)} of the "
            f"unpruned network up to {paper:g}% pruned", "Fig. 1", f"{paper:g}% pruned",
            f"{values['pct_pruned_within_tolerance']:.1f}% pruned", PCT_PRUNED_RULE[net], values,
            [learned_blocker, REACHED[net].unmet(values)], seeds))
        if pd.notna(f.get("reinit_acc_at", float("nan"))):
            out.append(claim(
                NOTEBOOK, net, "the ticket on S2 beats its random re-initialisation control (our control; "
                "not in the paper)", "-", "-",
                f"{fmt(f['ticket_S2_acc_at'])}% vs {fmt(f['reinit_acc_at'])}% at {f['compared_at']:.3g}% remaining",
                BEATS_REINIT_RULE, f, [learned_blocker], seeds))
    return claims_frame(out)


def paper_numbers() -> pd.DataFrame:
    """The paper's numbers this notebook's claims read, with where the paper states each."""
    return paper_numbers_table([*PCT_PRUNED_RULE.values(), *REACHED.values(), BEATS_REINIT_RULE,
                                *(learned(n) for n in FIGURE1_NETWORKS)])


def findings_markdown(found: pd.DataFrame) -> str:
    """The notebook's computed statements, one paragraph per network."""
    return "\n\n".join(_sentence(f) for _, f in found.iterrows())


# ---------------------------------------------------------------- Figure 1

def figure1(rows: pd.DataFrame, network: str, tolerance: float):
    """Two panels for `network`: test accuracy and early-stopping iteration vs percent remaining; the
    paper's Figure 1 points of the network on the accuracy panel (it shows no early-stopping iteration)."""
    d = label_curves(rows[rows["network"] == network])
    if d.empty:
        raise ValueError(f"no rows for network {network!r}")
    ref = dense_reference_s2(rows, network)
    fig, axes = plots.new_figure(ncols=2, width=6.0, height=4.2)
    ax_acc, ax_es = axes[0]
    plots.plot_vs_remaining(d, "test_acc", ax_acc, hue="curve", reference=ref["test_acc"],
                            reference_label="unpruned, trained on S2",
                            ylabel="test accuracy at early stopping (%)", title="test accuracy",
                            paper=paper_series("Figure 1", FIGURE_PANEL[network]) if network in FIGURE_PANEL else None)
    ax_acc.axhspan(ref["test_acc"] - tolerance, ref["test_acc"] + tolerance, color="grey", alpha=0.15, lw=0,
                   label=f"unpruned ± {points(tolerance)} (tolerance)")
    sparsest = analysis.sparsest_within_tolerance(_select(rows, network, "ticket", S2), ref["test_acc"], tolerance)
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
    fig.suptitle(f"{network_title(network)}: tickets found on S1, trained on S1 and on unseen S2")
    fig.tight_layout(rect=(0, 0.03 + 0.035 * -(-len(labels) // 3), 1, 1))  # room for the legend's rows
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    return fig


def scale_note(configs: list[IMPConfig]) -> str:
    """Whether this run has the paper's scale, per network, for the notebook's caveats."""
    small = [NETWORK_LABEL[n] for n, c in {c.network: c for c in configs}.items() if not is_paper_scale(c)]
    if not small:
        return "This run uses Table 1's budgets on the full data sets."
    return (f"This run is scaled down for {', '.join(small)} (budgets or data smaller than Table 1's; see the "
            "settings table above): its numbers show the method and the shape of the curves, not the paper's "
            "values.")
