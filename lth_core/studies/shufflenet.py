"""Figure 4 of the paper (section 5): IMP on ShuffleNet, and the variants around it.

The study has up to four arms, each a full IMP run per seed on CIFAR-10:

- `reset`: the paper's setting: lr 1e-2 with x0.1 steps every 10 epochs, BN not
  pruned, surviving weights reset to their initial values (Figure 4 top), with
  the random re-initialisation control;
- `bn_pruned`: the same with BN gamma masked too, at the convolution rate
  (Figure 4 bottom);
- `constant_lr`: the same as `reset` with a constant learning rate (the paper's
  2e-4), the comparison the paper reports in prose;
- `rewind`: the same as `reset` with late rewinding to iteration k instead of
  the reset to initialisation (the paper's future work).

`study_configs` builds the arms (`arms_from_parameters` from the notebook's parameters), `run_arms` runs them through the run store and
labels the rows, `arm_summary` computes per arm the dense reference and the
winning tickets (a pruned level whose mean test accuracy is within `tolerance`
of the arm's own unpruned network and whose early stopping is not later), the
`claims` judges the paper's Figure 4 claims from it (the claims table; the rules
below, and `paper_numbers()` the paper's numbers they read), the
`*_sentence` functions turn it into the prose the notebook prints, and
`arm_figure` draws accuracy and early-stopping iteration against percent of
weights pruned on a linear axis (0 on the left, as the paper's Figure 4).
"""
import dataclasses

import numpy as np
import pandas as pd

from lth_core.config import IMPConfig, is_paper_scale, paper_config
from lth_core.imp import planned_remaining_pct, trainings_per_run
from lth_core.report.claims import LEARNED_FRACTION, budget_bound_reference, claim, claims_frame, learned, not_learned
from lth_core.report.paper import paper_series, paper_value
from lth_core.report.rules import Precondition, Rule, paper_numbers_table
from lth_core.report.plots import draw_paper, line_with_band, mark_budget_bound, new_figure, place_legend
from lth_core.report.tables import fmt, is_missing, points, save_table
from lth_core.runs.experiment import grid, run_experiment
from lth_core.runs.store import run_name
from lth_core.studies.analysis import dense_reference, sparsest_within_tolerance, winning_levels

NOTEBOOK = "03_shufflenet"
# The claims' rules (report/rules.py), each over the named values `claims` computes from the arm summary.
# "around 40% pruned" (the text): the sparsest winning ticket at least as sparse as the one its Figure 4 marks with
# a black line (34.4% pruned, the level one 10% round short of 40%), so the paper's own marked ticket passes
WINNING_RULE = Rule("winning_levels > 0 and sparsest_winning_pct_pruned >= paper['shufflenet.marked_winning_pct_pruned']")
FLOOR_RULE = Rule("min_test_acc_until_paper_pct_pruned >= paper['shufflenet.acc_floor']")
# "validation accuracy decreased linearly": a falling straight line through the validation accuracies of the
# levels before the network collapses (`arm_summary`) explains at least LINEAR_R2 of their variance
LINEAR_RULE = Rule("slope_val_per_10pct_pruned < 0 and linear_r2_val >= LINEAR_R2", {"LINEAR_R2": 0.8})
LR_RULE = Rule("winning_levels_constant_lr == 0 and winning_levels_reset > 0")
# Whether IMP finds winning tickets (with one schedule or another) is open until the run has pruned as far as
# the paper's marked winning ticket: a shorter run's "none" or "only small ones" settles nothing.
REACHED_WINNING = Precondition(Rule("sparsest_pct_pruned >= paper['shufflenet.marked_winning_pct_pruned']"),
                               "the run reaches only {sparsest_pct_pruned:.1f}% pruned, short of the paper's "
                               "marked winning ticket at {paper[shufflenet.marked_winning_pct_pruned]:g}%")
REACHED_FLOOR = Precondition(Rule("sparsest_pct_pruned >= paper['shufflenet.acc_floor_until_pct_pruned']"),
                             "the run reaches only {sparsest_pct_pruned:.1f}% pruned")
PAPER_SCALE = Precondition(Rule("paper_scale"), "a scaled-down run (budget or data below Table 1's)")
# a line through three or four points fits almost any falling curve (R^2 near 1 whatever its shape)
FITTED = Precondition(Rule("fit_levels_val >= 5"), "{fit_levels_val} levels before collapse: too few to tell a "
                      "line from another curve")

ARMS = ("reset", "bn_pruned", "constant_lr", "rewind")
ARM_COLORS = {"reset": "tab:blue", "bn_pruned": "tab:purple", "constant_lr": "tab:orange", "rewind": "tab:green"}
CONTROL_COLOR = "tab:gray"
# what the arms vary, as columns of the rows table
CONFIG_COLUMNS = {"lr": "train.lr", "lr_schedule": "train.lr_schedule", "prune_bn": "prune_bn",
                  "rewind_iteration": "rewind_iteration", "budget": "train.iterations"}


def study_configs(*, iterations: int, rounds: int, eval_every: int, train_limit: int | None, val_size: int,
                  test_limit: int | None, batch_size: int, seeds, prune_rate: float = 0.1,
                  reinit_control: bool = True, bn_pruned: bool = True, constant_lr: float | None = 2e-4,
                  rewind_iteration: int | None = None, precision: str = "float32") -> dict[str, list[IMPConfig]]:
    """{arm: one IMPConfig per seed}; `reset` always, the others when switched on.

    `constant_lr=None` skips the constant-lr arm, `rewind_iteration=None` the rewinding arm.
    `precision`: every arm's `TrainConfig.precision`.
    The output layer is pruned at half of `prune_rate` (IMPConfig's default).
    """
    if not list(seeds):
        raise ValueError("seeds is empty: give at least one seed, e.g. [0]")
    base = paper_config("shufflenet", iterations=iterations, eval_every=eval_every, batch_size=batch_size,
                        rounds=rounds, train_limit=train_limit, val_size=val_size, test_limit=test_limit,
                        precision=precision)
    base = dataclasses.replace(base, prune_rate=prune_rate)
    arms = {"reset": dataclasses.replace(base, controls=("reinit",) if reinit_control else ())}
    if bn_pruned:
        arms["bn_pruned"] = dataclasses.replace(base, prune_bn=True)
    if constant_lr is not None:
        train = dataclasses.replace(base.train, lr=constant_lr, lr_schedule="constant")
        arms["constant_lr"] = dataclasses.replace(base, train=train)
    if rewind_iteration is not None:  # IMPConfig checks it against the budget
        arms["rewind"] = dataclasses.replace(base, rewind_iteration=rewind_iteration)
    return {arm: grid(cfg, seeds=list(seeds)) for arm, cfg in arms.items()}


def arms_from_parameters(P: dict) -> dict[str, list[IMPConfig]]:
    """The notebook's arms from its validated parameters (see `study_configs`)."""
    return study_configs(
        iterations=P["shufflenet_iterations"], rounds=P["shufflenet_rounds"], eval_every=P["shufflenet_eval_every"],
        train_limit=P["shufflenet_train_limit"], val_size=P["shufflenet_val_size"],
        test_limit=P["shufflenet_test_limit"], batch_size=P["shufflenet_batch_size"], seeds=P["seeds"],
        prune_rate=P["shufflenet_prune_rate"], reinit_control=P["shufflenet_reinit_control"],
        bn_pruned=P["shufflenet_bn_pruned_arm"],
        constant_lr=P["shufflenet_constant_lr"] if P["shufflenet_compare_lr"] else None,
        rewind_iteration=P["shufflenet_rewind_iteration"], precision=P["shufflenet_precision"])


def configs_from_parameters(P: dict) -> list[IMPConfig]:
    """Every run of every arm, as one list."""
    return [cfg for configs in arms_from_parameters(P).values() for cfg in configs]


def arm_label(arm: str, cfg: IMPConfig) -> str:
    """Legend text of an arm, from its config."""
    tc = cfg.train
    lr = {"step": f"lr {tc.lr:g} with x{tc.lr_gamma:g} every {tc.lr_step_epochs} epochs",
          "exponential": f"lr {tc.lr:g} with x{tc.lr_gamma:g} every epoch"}.get(tc.lr_schedule, f"constant lr {tc.lr:g}")
    reset = "reset to init" if cfg.rewind_iteration is None else f"rewind to iteration {cfg.rewind_iteration}"
    bn = "BN pruned" if cfg.prune_bn else "BN kept"
    return {"reset": f"{lr}; {bn}; {reset}", "bn_pruned": f"{bn}; {lr}", "constant_lr": lr,
            "rewind": reset}.get(arm, arm)


def scale_sentence(arms: dict[str, list[IMPConfig]], n_weights: int) -> str:
    """What this run is: the network's size, the arms, the budget per training, the pruning levels."""
    cfg = arms["reset"][0]
    tc = cfg.train
    pool = "the full training pool" if cfg.train_limit is None else f"{cfg.train_limit:,} training images"
    test = "the full test set" if cfg.test_limit is None else f"{cfg.test_limit:,} test images"
    levels = ", ".join(f"{100 - p:.1f}" for p in planned_remaining_pct(cfg))
    n_train = sum(trainings_per_run(c) for configs in arms.values() for c in configs)
    return (f"ShuffleNet has {n_weights:,} prunable weights (Table 1: 946K). Arms: {', '.join(arms)}; "
            f"{len(arms['reset'])} seed(s) each, {n_train} trainings in all. Each training runs {tc.iterations:,} "
            f"iterations at batch {tc.batch_size} on {pool} (the paper: 30,000 at batch 100 on the full set), "
            f"validating every {tc.eval_every} iterations on {cfg.val_size:,} held-out images and testing on "
            f"{test}. Pruning levels (percent of weights pruned, BN kept): {levels}.")


def add_pct_pruned(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with `pct_pruned` = 100 - `pct_remaining` (the paper's Figure 4 x axis, in percent)."""
    return df.assign(pct_pruned=100.0 - df["pct_remaining"])


def run_arms(arms: dict[str, list[IMPConfig]], device: str = "auto", progress: bool = True,
             executor: str = "local", executor_options: dict | None = None) -> pd.DataFrame:
    """Run (or read) every arm's runs as one experiment; all rows with `arm`, `arm_label` and `pct_pruned`.

    All arms go to the executor together, so `processes` or `slurm` can run them side by side.
    The rows are saved (once, here) as outputs/tables/fig4_shufflenet.csv.
    """
    configs = [cfg for configs in arms.values() for cfg in configs]
    df = run_experiment("fig4_shufflenet", configs, device=device, progress=progress, executor=executor,
                        executor_options=executor_options, columns=CONFIG_COLUMNS)
    arm_of = {run_name(cfg): arm for arm, configs in arms.items() for cfg in configs}
    label_of = {arm: arm_label(arm, configs[0]) for arm, configs in arms.items()}
    df["arm"] = df["run"].map(arm_of)
    df["arm_label"] = df["arm"].map(label_of)
    df = add_pct_pruned(df)
    save_table(df, "fig4_shufflenet")
    return df


def tickets(df: pd.DataFrame, arm: str) -> pd.DataFrame:
    """The IMP ticket rows of one arm (controls excluded)."""
    out = df[(df["arm"] == arm) & (df["kind"] == "ticket")]
    if out.empty:
        raise ValueError(f"no ticket rows for arm {arm!r}; arms present: {sorted(df['arm'].unique())}")
    return out


def arm_levels(df: pd.DataFrame, arm: str, tolerance: float) -> pd.DataFrame:
    """Per level of one arm: mean test acc, val acc, early stopping, and whether it is a winning ticket.

    The unpruned level (round 0) is the reference and never counts as a winning ticket.
    """
    t = tickets(df, arm)
    m = winning_levels(t, tolerance)
    extra = t.groupby("pct_remaining", as_index=False)[["val_acc", "round"]].mean()
    m = m.merge(extra, on="pct_remaining")
    m["winning"] &= m["round"] > 0
    return add_pct_pruned(m)


def linear_fit(levels: pd.DataFrame, y: str = "val_acc") -> tuple[float, float] | None:
    """(slope in points per 10 percentage points pruned, R^2) of a straight line through the levels."""
    if len(levels) < 2:
        return None
    x, v = levels["pct_pruned"].to_numpy(float), levels[y].to_numpy(float)
    slope, icpt = np.polyfit(x, v, 1)
    ss_tot = float(((v - v.mean()) ** 2).sum())
    r2 = 1.0 - float(((v - (slope * x + icpt)) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return 10.0 * float(slope), r2


def arm_summary(df: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row per arm: dense reference, winning tickets, sparsest level within tolerance, linear fit."""
    rows = []
    for arm in [a for a in ARMS if a in set(df["arm"])] + sorted(set(df["arm"]) - set(ARMS)):
        t = tickets(df, arm)
        ref = dense_reference(t)
        lv = arm_levels(df, arm, tolerance)
        win = lv[lv["winning"]]
        within = sparsest_within_tolerance(t, tolerance)
        dense_val = float(lv.loc[lv["round"] == 0, "val_acc"].mean())
        before_collapse = lv[lv["val_acc"] >= LEARNED_FRACTION * dense_val]
        fit_val = linear_fit(before_collapse)
        rows.append({
            "arm": arm, "label": t["arm_label"].iloc[0], "seeds": t["seed"].nunique(), "levels": len(lv),
            "dense_test_acc": ref["test_acc"], "dense_es_iteration": ref["es_iteration"],
            "dense_budget": ref["budget"],
            "winning_levels": len(win),
            "winning_pct_pruned": ", ".join(f"{p:.1f}" for p in sorted(win["pct_pruned"])),
            "sparsest_winning_pct_pruned": float(win["pct_pruned"].max()) if len(win) else None,
            "within_tolerance_until_pct_pruned": None if within is None else 100.0 - within,
            "sparsest_pct_pruned": float(lv["pct_pruned"].max()),
            "sparsest_test_acc": float(lv.loc[lv["pct_pruned"].idxmax(), "test_acc"]),
            "dense_val_acc": dense_val, "fit_levels_val": len(before_collapse),
            "slope_val_per_10pct_pruned": None if fit_val is None else fit_val[0],
            "linear_r2_val": None if fit_val is None else fit_val[1],
        })
    return pd.DataFrame(rows)


def _row(summary: pd.DataFrame, arm: str) -> pd.Series:
    hit = summary[summary["arm"] == arm]
    if hit.empty:
        raise ValueError(f"arm {arm!r} was not run; arms in the summary: {list(summary['arm'])}")
    # a DataFrame stores a missing value as NaN; the sentences test for None
    return pd.Series({k: None if is_missing(v) else v for k, v in hit.iloc[0].items()}, dtype=object)


def _winning_phrase(s: pd.Series) -> str:
    if s["winning_levels"] == 0:
        return "finds no winning ticket"
    if s["winning_levels"] == 1:
        return f"finds a winning ticket at {s['winning_pct_pruned']}% pruned"
    return (f"finds winning tickets at {s['winning_pct_pruned']}% pruned, the sparsest at "
            f"{s['sparsest_winning_pct_pruned']:.1f}% pruned")


def _definition(tolerance: float) -> str:
    return (f"A winning ticket: a pruned level whose mean test accuracy is within "
            f"{points(tolerance).replace('point', 'accuracy point')} "
            "of its own unpruned network's and whose early stopping is not later.")


def top_sentence(df: pd.DataFrame, summary: pd.DataFrame, tolerance: float) -> str:
    """Figure 4 (top): the dense reference, the winning tickets, and the ticket against its re-init control."""
    s = _row(summary, "reset")
    within = s["within_tolerance_until_pct_pruned"]
    text = (f"Unpruned ShuffleNet: {s['dense_test_acc']:.2f}% test accuracy at early stopping "
            f"(iteration {s['dense_es_iteration']:.0f}, mean over {s['seeds']} seed(s)). "
            f"With BN not pruned, IMP {_winning_phrase(s)}. {_definition(tolerance)} "
            f"Accuracy stays within tolerance of the unpruned network "
            + ("at no pruned level" if within is None or within == 0 else f"up to {within:.1f}% pruned")
            + f"; at the sparsest level ({s['sparsest_pct_pruned']:.1f}% pruned) the ticket reaches "
            f"{s['sparsest_test_acc']:.2f}%.")
    ctrl = df[(df["arm"] == "reset") & (df["kind"] == "reinit")]
    if not ctrl.empty:
        tk = tickets(df, "reset")
        last = ctrl["round"].max()
        a_t, a_c = tk[tk["round"] == last]["test_acc"].mean(), ctrl[ctrl["round"] == last]["test_acc"].mean()
        pruned = float(ctrl[ctrl["round"] == last]["pct_pruned"].iloc[0])
        verdict = "beats" if a_t > a_c else "does not beat"
        text += (f" There the ticket {verdict} its random re-initialisation control "
                 f"({a_t:.2f}% vs {a_c:.2f}% at {pruned:.1f}% pruned).")
    return text + (f" The paper: a winning ticket at about {paper_value('shufflenet.winning_pct_pruned'):g}% pruned, "
                   f"accuracy above {paper_value('shufflenet.acc_floor'):g}% until about "
                   f"{paper_value('shufflenet.acc_floor_until_pct_pruned'):g}% pruned.")


def bn_sentence(summary: pd.DataFrame, tolerance: float) -> str:
    """Figure 4 (bottom): how accuracy declines with BN gamma pruned, against BN kept."""
    b, k = _row(summary, "bn_pruned"), _row(summary, "reset")
    if b["slope_val_per_10pct_pruned"] is None:
        return "With BN gamma pruned there is only the unpruned level: run at least one round to see a trend."
    direction = "falls" if b["slope_val_per_10pct_pruned"] < 0 else "rises"
    return (f"With BN gamma pruned too, validation accuracy {direction} by "
            f"{abs(b['slope_val_per_10pct_pruned']):.2f} points per 10% of weights pruned (straight-line fit over "
            f"the {b['fit_levels_val']} levels before collapse, R\u00b2 = {fmt(b['linear_r2_val'])}); with BN kept "
            f"the fitted slope is {fmt(k['slope_val_per_10pct_pruned'], '+.2f')} points per 10% "
            f"(R\u00b2 = {fmt(k['linear_r2_val'])}). With BN pruned, IMP {_winning_phrase(b)}. The paper: validation "
            f"accuracy decreases linearly with the fraction pruned.")


def lr_sentence(summary: pd.DataFrame, tolerance: float) -> str:
    """The learning-rate comparison: does each schedule find a winning ticket?"""
    step, const = _row(summary, "reset"), _row(summary, "constant_lr")
    return (f"With {step['label'].split(';')[0]}, IMP {_winning_phrase(step)}; with {const['label']}, IMP "
            f"{_winning_phrase(const)}. Each schedule is judged against its own unpruned network "
            f"({step['dense_test_acc']:.2f}% and {const['dense_test_acc']:.2f}% test accuracy). "
            f"{_definition(tolerance)} "
            "The paper: no winning ticket with constant 2e-4, better results with 1e-2 and step decay.")


def sparser_verdict(reset_sparsest: float | None, rewind_sparsest: float | None) -> str:
    """Which of reset and rewinding finds the sparser winning ticket, from their sparsest winning pct pruned."""
    reset_sparsest = None if is_missing(reset_sparsest) else reset_sparsest
    rewind_sparsest = None if is_missing(rewind_sparsest) else rewind_sparsest
    if reset_sparsest is None and rewind_sparsest is None:
        return "neither finds a winning ticket"
    if rewind_sparsest is None:
        return "only reset to init finds a winning ticket"
    if reset_sparsest is None:
        return "only late rewinding finds a winning ticket"
    if np.isclose(reset_sparsest, rewind_sparsest):
        return "both find their sparsest winning ticket at the same sparsity"
    return ("late rewinding finds sparser winning tickets" if rewind_sparsest > reset_sparsest
            else "reset to init finds sparser winning tickets")


def rewind_sentence(summary: pd.DataFrame, tolerance: float) -> str:
    """Late rewinding against reset to init: which finds sparser winning tickets."""
    reset, rew = _row(summary, "reset"), _row(summary, "rewind")
    verdict = sparser_verdict(reset["sparsest_winning_pct_pruned"], rew["sparsest_winning_pct_pruned"])
    return (f"Reset to init {_winning_phrase(reset)}; {rew['label']} {_winning_phrase(rew)}: {verdict}. "
            f"At the sparsest level ({rew['sparsest_pct_pruned']:.1f}% pruned) rewinding reaches "
            f"{rew['sparsest_test_acc']:.2f}% against {reset['sparsest_test_acc']:.2f}% for reset.")


def claims(df: pd.DataFrame, summary: pd.DataFrame, arms: dict[str, list[IMPConfig]],
           tolerance: float) -> pd.DataFrame:
    """The claims table of Figure 4 (see report/claims.py): winning ticket, accuracy floor, BN, lr."""
    reset = _row(summary, "reset")
    seeds = int(reset["seeds"])
    # every claim rests on the paper's setting (the reset arm): its network must have learned
    run = [not_learned("shufflenet", reset["dense_test_acc"])]
    values = {**reset, "paper_scale": is_paper_scale(arms["reset"][0])}
    reached = reset["sparsest_pct_pruned"]
    short = REACHED_WINNING.unmet(values)
    # a winning ticket stops no later than its unpruned network: empty when that one is budget-bound
    es_bound = budget_bound_reference(reset["dense_es_iteration"], reset["dense_budget"])
    winning_pct, floor_pct = paper_value("shufflenet.winning_pct_pruned"), paper_value("shufflenet.acc_floor")
    until = paper_value("shufflenet.acc_floor_until_pct_pruned")
    marked = paper_value("shufflenet.marked_winning_pct_pruned")
    out = [claim(NOTEBOOK, "shufflenet", f"IMP finds a winning ticket at about {winning_pct:g}% pruned "
                 f"(within {points(tolerance)}, early stopping not later)", "Fig. 4 top",
                 f"{winning_pct:g}% pruned (its text); the ticket its figure marks: {marked:g}%",
                 f"sparsest winning: {fmt(reset['sparsest_winning_pct_pruned'], '.1f', 'none')}"
                 f" (run reaches {reached:.1f}% pruned)", WINNING_RULE, values, run + [es_bound, short], seeds)]
    lv = arm_levels(df, "reset", tolerance)
    upto = lv[lv["pct_pruned"] <= until]
    values["min_test_acc_until_paper_pct_pruned"] = float(upto["test_acc"].min())
    out.append(claim(NOTEBOOK, "shufflenet", f"test accuracy stays above {floor_pct:g}% until about "
                     f"{until:g}% pruned", "Fig. 4 top", f"> {floor_pct:g}%",
                     f"lowest {values['min_test_acc_until_paper_pct_pruned']:.2f}% up to "
                     f"{float(upto['pct_pruned'].max()):.1f}% pruned", FLOOR_RULE, values,
                     run + [PAPER_SCALE.unmet(values), REACHED_FLOOR.unmet(values)], seeds))
    if "bn_pruned" in set(summary["arm"]):
        b = _row(summary, "bn_pruned")
        rate, paper_rate = 100 * arms["bn_pruned"][0].prune_rate, paper_value("shufflenet.bn_prune_pct_per_round")
        paper_dense = paper_series("Figure 4", "bottom")
        paper_dense = float(paper_dense.loc[paper_dense["x"] == 100, "value"].iloc[0])
        differs = "" if np.isclose(rate, paper_rate) else f"; pruned {rate:g}% per round, the paper's panel {paper_rate:g}%"
        out.append(claim(NOTEBOOK, "shufflenet", "with BN gamma pruned, validation accuracy decreases roughly linearly "
                         "with the fraction pruned", "Fig. 4 bottom",
                         f"linear decrease ({paper_rate:g}% per round from {paper_dense:g}% validation accuracy)",
                         f"slope {fmt(b['slope_val_per_10pct_pruned'], '+.2f')} points per 10%, "
                         f"R\u00b2 {fmt(b['linear_r2_val'])} over {b['fit_levels_val']} levels before collapse, from "
                         f"{b['dense_val_acc']:.1f}% validation accuracy{differs}", LINEAR_RULE, b,
                         run + [learned("shufflenet", "the BN arm's unpruned network", "val_acc").unmet(b),
                                FITTED.unmet(b)], seeds))
    if "constant_lr" in set(summary["arm"]):
        c = _row(summary, "constant_lr")
        out.append(claim(NOTEBOOK, "shufflenet", "a constant lr of 2e-4 finds no winning ticket; lr 1e-2 with "
                         "x0.1 steps does", "Sec. 5 (prose)", "none vs some",
                         f"{int(c['winning_levels'])} vs {int(reset['winning_levels'])} winning levels", LR_RULE,
                         {"winning_levels_constant_lr": c["winning_levels"],
                          "winning_levels_reset": reset["winning_levels"]},
                         run + [not_learned("shufflenet", c["dense_test_acc"], "the constant-lr arm's unpruned network"),
                                es_bound, budget_bound_reference(c["dense_es_iteration"], c["dense_budget"],
                                                                 "the constant-lr unpruned network"), short], seeds))
    return claims_frame(out)


def paper_numbers() -> pd.DataFrame:
    """The paper's numbers this notebook's claims read, with where the paper states each."""
    return paper_numbers_table([WINNING_RULE, FLOOR_RULE, LINEAR_RULE, LR_RULE, REACHED_WINNING, REACHED_FLOOR,
                                learned("shufflenet"), learned("shufflenet", quantity="val_acc")],
                               ["shufflenet.winning_pct_pruned", "shufflenet.bn_prune_pct_per_round",
                                "shufflenet.constant_lr", "shufflenet.step_lr"])


def _line(ax, df: pd.DataFrame, y: str, label: str, color: str, ls: str = "-", marker: str = "o"):
    line_with_band(ax, df, "pct_pruned", y, color=color, linestyle=ls, marker=marker, label=label)


def arm_figure(df: pd.DataFrame, arms, tolerance: float, title: str, control: bool = False,
               val_acc: bool = False, mark_arms=None, paper_panel: str | None = None):
    """Two panels against percent of weights pruned (linear, 0 on the left): test accuracy, early stopping.

    Per arm: the ticket's mean over seeds (95% CI band with several seeds), its unpruned
    reference as a dashed line of the same colour, its winning tickets as stars, and a
    vertical black line at the sparsest winning ticket of the first arm of `mark_arms`
    (default: the first arm). `control` adds the re-init control of each arm,
    `val_acc` the first arm's validation accuracy at early stopping (dotted). Early stops in the last
    tenth of their budget are crossed under the budget line (`plots.mark_budget_bound`).
    `paper_panel` ("top", "bottom"): the paper's Figure 4 panel whose accuracies go on the accuracy
    panel (`plots.draw_paper`; its unitless "iteration" series has no place on ours).
    """
    fig, axes = new_figure(ncols=2)
    ax_acc, ax_es = axes[0]
    mark_arms = list(arms) if mark_arms is None else list(mark_arms)
    star_label = "winning ticket"  # in the legend once
    for arm in arms:
        rows = df[df["arm"] == arm]
        t = tickets(df, arm)
        color, label = ARM_COLORS.get(arm, "black"), t["arm_label"].iloc[0]
        ref = dense_reference(t)
        first = arm == list(arms)[0]
        for ax, y in ((ax_acc, "test_acc"), (ax_es, "es_iteration")):
            _line(ax, t, y, f"ticket: {label}" if len(arms) > 1 else "ticket (test)", color)
            ax.axhline(ref[y], color=color, ls="--", lw=1, alpha=0.8,
                       label=None if not first else "unpruned" if len(arms) == 1 else "unpruned (dashed, per arm)")
        if val_acc and first:
            _line(ax_acc, t, "val_acc", "ticket (validation)" if len(arms) == 1 else f"validation: {label}",
                  color, ls=":", marker=".")
        ctrl = rows[rows["kind"] == "reinit"]
        if control and not ctrl.empty:
            c = CONTROL_COLOR if len(arms) == 1 else color
            for ax, y in ((ax_acc, "test_acc"), (ax_es, "es_iteration")):
                _line(ax, ctrl, y, "random re-init", c, ls="-.", marker="x")
        lv = arm_levels(df, arm, tolerance)
        win = lv[lv["winning"]]
        if arm in mark_arms and len(win):
            for ax, y in ((ax_acc, "test_acc"), (ax_es, "es_iteration")):
                ax.scatter(win["pct_pruned"], win[y], marker="*", s=160, color=color, edgecolor="black",
                           zorder=5, label=star_label)
            star_label = None
            if arm == mark_arms[0]:
                for ax in (ax_acc, ax_es):
                    ax.axvline(win["pct_pruned"].max(), color="black", lw=1.5)
    mark_budget_bound(ax_es, df[df["arm"].isin(list(arms))], x="pct_pruned")
    if paper_panel is not None:
        draw_paper(ax_acc, paper_series("Figure 4", paper_panel), ("test_acc", "val_acc"), x="pct_pruned")
    ax_acc.set_ylabel("test accuracy at early stopping (%)")
    ax_es.set_ylabel("early-stopping iteration")
    for ax in (ax_acc, ax_es):
        ax.set_xlabel("percent of weights pruned")
        ax.set_xlim(left=-2)
        place_legend(ax, fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
