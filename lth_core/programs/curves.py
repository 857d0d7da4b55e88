"""`make curves`: a network's stopping rule and its float32-against-bf16 agreement, from one set of trainings.

    python -m lth_core.programs.curves [--network conv2] [--iterations 5000] [--rounds 2]
        [--precisions bf16 float32] [--patience float32=10] [--minutes M] [--device cpu]

Trains `stopping.curve_configs`: Table 1's network on the full pool, the dense level and `--rounds`
pruned ones, one run per precision, without patience over `--iterations` (well past the early
stops), into the run store (cached and resumed there like any run: a second call trains only what
is missing). With `--minutes`, no round starts after that time; what finished stays stored. `--patience`
trains a precision with a patience instead (a comparison arm once the other's curves have chosen the rule:
Conv-2 in float32 on a CPU would spend half its time past the early stop).

Then, from every stored round of those runs:
- `outputs/tables/curves_<network>_stopping_rule.csv`: the stopping-rule study per precision and
  for all trainings (`stopping.patience_table`), and the patience `choose_patience` picks;
- `outputs/tables/curves_<network>_agreement.csv` / `_agreement_summary.csv`: float32 against bf16
  at every patience (up to the one a precision was trained with), each training's curve replayed (`agreement.compare_replayed`): early-stopping
  iterations and test accuracies side by side; one summary row per patience, with bf16's verdict
  (`agreement.adoption`);
- `outputs/figures/curves_<network>.png/.pdf`: validation loss against iterations, one panel per
  level, both precisions, each early stop marked.
"""
import argparse
import functools
import time

import pandas as pd

from lth_core.data import load_dataset
from lth_core.report.plots import new_figure, save_figure
from lth_core.report.tables import save_table
from lth_core.runs import lockstep
from lth_core.runs.executors import resolve_device
from lth_core.studies.agreement import adoption, compare_replayed
from lth_core.studies.stopping import PATIENCES, choose_patience, curve_configs, patience_table, replayable, stored


def train(configs, device: str, deadline: float | None) -> None:
    """Each run to its end in turn (not in lockstep), so the first precision's curves come first."""
    load = functools.cache(lambda name: load_dataset(name, device=device))
    for cfg in configs:
        failed = lockstep.run_lockstep([cfg], load, deadline=deadline)
        if failed:
            raise SystemExit("; ".join(f"{name}: {err}" for name, err in failed.items()))


def study(curves: pd.DataFrame, rows: pd.DataFrame, network: str, device: str = "cpu") -> dict:
    """The stopping-rule table (per precision and overall, from the full-budget trainings, when there are any)
    and, where both precisions have trainings of the same levels, the agreement at every patience up to the
    smallest one an arm was trained with, judged for `device` (its type); saved as tables, returned."""
    out = {}
    if not replayable(curves, rows).empty:  # every arm may have been trained with a patience
        table = pd.concat([patience_table(curves, rows).assign(precision="all"),
                           patience_table(curves, rows, by=["precision"])], ignore_index=True)
        table = table[["precision"] + [c for c in table.columns if c != "precision"]]
        save_table(table, f"curves_{network}_stopping_rule")
        out = {"stopping_rule": table, "patience": choose_patience(table[table["precision"] == "all"])}
    levels = rows.groupby("precision")["round"].apply(set)
    if {"float32", "bf16"} <= set(levels.index):
        shared = levels["float32"] & levels["bf16"]
        both = rows[rows["round"].isin(shared)]
        # every training must replay at a patience compared (a stopped one: up to its own; `replayable`)
        per_training, summary = [], []
        for p in [p for p in PATIENCES if len(replayable(curves, both, p)) == len(both)]:
            t, s = compare_replayed(curves, both, p)
            per_training.append(t.assign(patience=p))
            summary.append(s.assign(patience=p, verdict=adoption(s, network, device)))
        if not summary:  # an arm trained with a patience below every studied one
            return out
        out["agreement"] = pd.concat(per_training, ignore_index=True)
        out["agreement_summary"] = pd.concat(summary, ignore_index=True)
        save_table(out["agreement"], f"curves_{network}_agreement")
        save_table(out["agreement_summary"], f"curves_{network}_agreement_summary")
    return out


def curves_figure(curves: pd.DataFrame, rows: pd.DataFrame, network: str):
    """Validation loss against iterations, one panel per level, one line per precision, early stops marked."""
    import seaborn as sns
    rounds = sorted(rows["round"].unique())
    fig, axes = new_figure(ncols=len(rounds), width=4.2, height=3.4)
    palette = dict(zip(sorted(rows["precision"].unique()), sns.color_palette(n_colors=rows["precision"].nunique())))
    c_all = curves.merge(rows[["run", "precision"]].drop_duplicates(), on="run")
    for ax, r in zip(axes[0], rounds):
        sns.lineplot(data=c_all[c_all["round"] == r], x="iteration", y="val_loss", hue="precision", palette=palette,
                     ax=ax, legend=ax is axes[0][0])
        for _, row in rows[rows["round"] == r].iterrows():  # the early stop: the best validation loss
            ax.axvline(row["es_iteration"], ls=":", lw=1.2, color=palette[row["precision"]])
        pct = rows.loc[rows["round"] == r, "pct_remaining"].iloc[0]
        ax.set_title(f"{pct:.1f}% of weights remaining")
        ax.set_xlabel("iteration")
        ax.set_ylabel("")
    low, high = min(ax.get_ylim()[0] for ax in axes[0]), max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:
        ax.set_ylim(low, high)  # one scale, so levels compare by eye
    axes[0][0].set_ylabel("validation loss")
    fig.tight_layout()
    return save_figure(fig, f"curves_{network}")


def _patience(entries: list[str], ap: argparse.ArgumentParser) -> dict[str, int]:
    """{precision: patience} from `--patience` entries PRECISION=P (a bad entry stops with one line)."""
    out = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        if not value.isdigit() or int(value) < 1:
            ap.error(f"--patience {entry!r}: write PRECISION=P with P a whole number of evaluations, e.g. float32=10")
        out[name] = int(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lth_core.programs.curves", description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", default="conv2")
    ap.add_argument("--iterations", type=int, default=5000, help="each training's budget, well past its early stop")
    ap.add_argument("--rounds", type=int, default=2, help="pruned levels after the dense one")
    ap.add_argument("--precisions", nargs="+", default=["bf16", "float32"], help="trained in this order")
    ap.add_argument("--minutes", type=float, default=None, help="start no round after this many minutes")
    ap.add_argument("--patience", nargs="+", default=[], metavar="PRECISION=P",
                    help="train that precision with patience P (e.g. float32=10: a comparison arm once the rule "
                         "is known); the agreement is then judged at patiences up to P")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        configs = curve_configs(args.network, args.iterations, args.rounds, args.precisions,
                                _patience(args.patience, ap))
    except ValueError as e:
        ap.error(str(e))
    deadline = None if args.minutes is None else time.time() + 60 * args.minutes
    device = resolve_device(args.device)
    train(configs, device, deadline)
    curves, rows = stored(configs)
    out = study(curves, rows, args.network, device.type)
    if "stopping_rule" in out:
        print(out["stopping_rule"].to_markdown(index=False, floatfmt=".3g"))
        full = int(out["stopping_rule"].loc[out["stopping_rule"]["precision"] == "all", "trainings"].max())
        print(f"\npatience chosen from all {full} stored full-budget trainings: "
              f"{out['patience'] if out['patience'] is not None else 'none (train the full budget)'}")
    else:
        print("no stopping rule: every stored training was stopped by its patience (the rule reads whole curves)")
    if "agreement_summary" in out:
        print("\nfloat32 against bf16, each curve replayed at each patience:")
        print(out["agreement_summary"].to_markdown(index=False, floatfmt=".3g"))
    print(f"figure: {curves_figure(curves, rows, args.network)[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
