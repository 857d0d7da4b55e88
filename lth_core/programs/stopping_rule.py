"""`make stopping-rule`: what a patience of 10..150 evaluations would change, on a profile's stored curves.

    python -m lth_core.programs.stopping_rule [--profile quick] [--network lenet_300_100]

Reads the stored full-budget versions of the profile's runs of `--network` (its runs with no
patience: train them with `<network>_patience: null`), writes `outputs/tables/stopping_rule.csv`
and prints it as markdown, with the patience `studies.stopping.choose_patience` picks.
"""
import argparse
import dataclasses

import pandas as pd

from lth_core.report.tables import save_table
from lth_core.studies.catalog import profile_configs
from lth_core.studies.stopping import (MIN_ES_REPRODUCED, MIN_ITERATIONS_SAVED, choose_patience, patience_table,
                                       stored)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lth_core.programs.stopping_rule", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--network", default="lenet_300_100")
    args = ap.parse_args(argv)
    # the full-budget versions of the profile's runs (those a profile with `*_patience: null` trains)
    configs = [dataclasses.replace(c, train=dataclasses.replace(c.train, patience=None))
               for c in profile_configs(args.profile) if c.network == args.network]
    curves, rows = stored(configs)
    rows = rows.assign(data=rows["trained_on"].where(rows["trained_on"] != "subset",
                                                     rows["subset_percent"].map(lambda s: f"subset {s:g}%")))
    overall = patience_table(curves, rows)
    table = pd.concat([overall.assign(data="all trainings"), patience_table(curves, rows, by=["data"])],
                      ignore_index=True)
    table = table[["data"] + [c for c in table.columns if c != "data"]]
    save_table(table, "stopping_rule")
    print(table.to_markdown(index=False, floatfmt=".3g"))
    chosen = choose_patience(overall)
    print(f"\n{len(rows)} trainings stored, {int(overall['trainings'].iloc[0])} of them full-budget. The smallest "
          f"patience keeping >= {MIN_ES_REPRODUCED:.0%} of early-stopping iterations and saving >= "
          f"{MIN_ITERATIONS_SAVED:.0%} of iterations: {chosen if chosen is not None else 'none (train the full budget)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
