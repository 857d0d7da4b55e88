"""The agreement study on Figure 1's runs: fused against solo, or float32 against bf16, on real data.

    python -m lth_core.programs.agreement [--compare fusion|precision] [--network lenet_300_100|conv2]
        [--seeds 0 1 2] [--rounds 3] [--iterations 3000] [--device auto]
    python -m lth_core.programs.agreement --verdicts

Trains Figure 1's runs of `--network` at Table 1's settings (the full pool less 5,000 validation
images, evaluation every 100 iterations) with `--iterations` and `--rounds` made affordable on a CPU,
in both arms of the comparison (`studies.agreement`), prints the summary (for `precision`, bf16's
verdict, `agreement.adoption`) and writes
`outputs/tables/<comparison>_agreement.csv` (per training) and `<comparison>_agreement_summary.csv`.
`--verdicts` trains nothing: it prints every measured agreement stored in the repository
(`studies/precision_agreement.csv`) beside its yardstick, with its verdict (docs/results.md, "Precision").
"""
import argparse

from lth_core import paths
from lth_core.data import load_dataset
from lth_core.report.tables import save_table
from lth_core.runs.executors import resolve_device
from lth_core.runs.experiment import grid
from lth_core.studies.agreement import COMPARISONS, adoption, compare, measured_verdicts, sentence, train_both
from lth_core.studies.unseen import unseen_config


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lth_core.programs.agreement", description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", choices=list(COMPARISONS), default="fusion",
                    help="fused against solo (float32), or float32 against bf16 (both fused)")
    ap.add_argument("--network", default="lenet_300_100", help="the Figure 1 network to train")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3, help="pruning rounds after the dense one")
    ap.add_argument("--iterations", type=int, default=3000, help="training budget (Table 1: 30,000)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--verdicts", action="store_true", help="train nothing: print the stored agreements' verdicts")
    args = ap.parse_args(argv)
    if args.verdicts:
        print(measured_verdicts().to_markdown(index=False))
        return
    device = resolve_device(args.device)
    configs = grid(unseen_config(args.network, rounds=args.rounds, iterations=args.iterations), seeds=args.seeds)
    arms = COMPARISONS[args.compare]
    rows = train_both(configs, lambda name: load_dataset(name, device=device), paths.outputs_dir() / "agreement",
                      arms=arms)
    per_training, summary = compare(*rows.values(), names=tuple(arms))
    print(per_training.to_string(index=False))
    print(sentence(summary))
    if args.compare == "precision":
        print(f"bf16: {adoption(summary, args.network, device.type)}")
    print(f"written to {save_table(per_training, f'{args.compare}_agreement')[0]} and "
          f"{save_table(summary, f'{args.compare}_agreement_summary')[0]}")


if __name__ == "__main__":
    main()
