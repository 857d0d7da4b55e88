"""One progress bar over every training of many runs, read from the run store.

`StoreProgress(configs, desc)` counts the trainings of `configs` (`imp.trainings_per_run`)
and, in a background thread every `poll_s` seconds, those already stored: a round file
holds all of its round's trainings, so the count needs only the run folders' listings,
never the files themselves. It shows done / total, elapsed and remaining time, and the
run and round in progress (the unfinished run whose folder changed last), whatever
process, executor or Slurm job trains them. `make reproduce` shows one over a whole
profile, with the notebook running; `run_experiment` shows one in a notebook's cell.
"""
import threading

from tqdm.auto import tqdm

from lth_core.config import IMPConfig
from lth_core.imp import round_trainings
from lth_core.runs import store


def stored_rounds(cfg: IMPConfig) -> int:
    """Rounds of `cfg`'s run stored so far (a run's rounds are stored in order)."""
    d = store.run_dir(cfg)
    return len(store.round_numbers(d)) if d.is_dir() else 0


def _mtime(path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # a temporary file renamed into place between the listing and this call
        return 0.0


def _last_change(cfg: IMPConfig) -> float:
    d = store.run_dir(cfg)
    return max((_mtime(p) for p in d.iterdir()), default=0.0) if d.is_dir() else 0.0


class StoreProgress:
    """A tqdm bar over the trainings of `configs`, updated from the run store (use as a context manager)."""

    def __init__(self, configs: list[IMPConfig], desc: str = "trainings", poll_s: float = 5.0,
                 disable: bool = False):
        self.configs = list(dict.fromkeys(configs))
        self.per_round = [[len(round_trainings(c, r)) for r in range(c.rounds + 1)] for c in self.configs]
        self.poll_s, self.label = poll_s, ""
        # `initial`: the rate, hence the remaining time, counts only the trainings done from now on; no
        # smoothing: rounds land several trainings at once, and the average rate since the start is the
        # honest one for a remaining time
        self.bar = tqdm(total=sum(map(sum, self.per_round)), initial=self.done()[0], desc=desc, unit="training",
                        disable=disable, dynamic_ncols=True, smoothing=0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def done(self) -> tuple[int, str]:
        """(trainings stored, "run round r/R" of the run in progress or "")."""
        count, latest, where = 0, 0.0, ""  # a run without a folder has not started
        for cfg, per_round in zip(self.configs, self.per_round):
            n = min(stored_rounds(cfg), len(per_round))
            count += sum(per_round[:n])
            if n < len(per_round):
                changed = _last_change(cfg)
                if changed > latest:
                    latest, where = changed, f"{store.run_name(cfg)} round {n}/{cfg.rounds}"
        return count, where

    def set_label(self, label: str) -> None:
        """What is running, shown before the run and round (e.g. the notebook)."""
        self.label = label
        self.refresh()

    def refresh(self) -> None:
        count, where = self.done()
        self.bar.update(count - self.bar.n)
        self.bar.set_postfix_str(" · ".join(p for p in (self.label, where) if p), refresh=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def start(self) -> "StoreProgress":
        if not self.bar.disable:
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.refresh()
        self.bar.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
