"""Training speed: lth_core's training path against a bare loop, and fused training against solo.

Inside:
- `run_benchmark(networks, iterations, device, warmup)`: one row per network with its Table 1
  batch size, the device and CPU thread count, the two timings and their ratio.
- `run_fusion_benchmark(networks, ks, ...)`: per network and group size K, ms per model-step
  of K trainings run one after another with `train()` (solo) and together with
  `runs.fused.train_fused` under each forward pass of its step, side by side: vmap over the
  solo network, the stacked layers of `runs.ops`, and those channels-last (convolutional
  networks); `fused` is the pass the runner uses (`fused.fused_layers`), `speedup` = solo / fused.
- `run_schedule_benchmark(networks, ...)`: what a user waits for: whole `train()` calls at the
  paper's evaluation schedule (validation every 100 iterations on 5,000 rows, checkpoints copied at
  every improvement, epoch boundaries; the 10,000-row test set at the end), in ms per iteration
  (the difference of a call of n and one of 2n iterations), beside the per-step figure, the share
  of the time outside the steps (`overhead`) and the seconds of one 30,000-iteration training.
- `run_precision_benchmark(networks, ...)`: per network, `train()`'s step (the lth_core timing) in
  each precision the device runs (`PRECISIONS`: float32 and bf16 on a CPU, also tf32 on
  CUDA), side by side, and each one's ratio to float32.
- `main()`: `python -m lth_core.programs.benchmark [--networks ...] [--iterations N] [--device auto|cpu|cuda]
  [--warmup N] [--repeats N] [--threads N] [--ks K ...] [--fusion-repeats N] [--no-fusion] [--no-compile] [--no-schedule]
  [--no-precision]` prints the tables, writes the fusion table to `outputs/tables/benchmark.csv` (what
  `reproduce --estimate` projects from), the schedule table to `outputs/tables/benchmark_schedule.csv` and
  the precision table to `outputs/tables/benchmark_precision.csv`.

Fused: K members of the masked network (seeds 0..K-1), Table 1 settings, validation beyond the
budget, timed by the same stopwatch as the lth_core figure below (train_fused fetches one batch
for the whole group per iteration), so its warm-up steps hold what happens once per call (a CUDA
graph's recording, torch.compile's tracing) and the final validation, test and state copies
fall outside; the fused figure is the timed interval divided by K * iterations.

Each network is timed twice in the same process, at its Table 1 optimiser settings
(`PAPER_TRAINING`), on synthetic uint8 data with the real dataset's image shape and
training-set size (the time of a step does not depend on pixel values, and nothing needs
downloading):

- lth_core: the library's real path, `training.train()` on a masked model (`attach_masks`, then
  one round of layer-wise magnitude pruning at the paper's rate installed with `set_masks`),
  progress bar off, `eval_every` beyond the budget. train() always validates after its last
  iteration, then evaluates its best checkpoint on the test set and copies states; those
  once-per-call costs are left out by reading the clock inside train(): the dataset handed to
  it is a stand-in (`_StopwatchData`) that reads the clock when train() fetches its first
  batch after the warm-up and when it starts the final validation. The time between holds
  exactly the timed iterations, with everything train() does per iteration: indexing and
  normalising the batch, the mask hooks in forward and backward, Adam. (The
  per-epoch permutation and learning-rate setting fall inside only when an epoch boundary
  does; spread over an epoch they cost about 1 microsecond per iteration.)
- bare: the same math as a plain loop: the same network built without masks (plain
  nn.Linear/nn.Conv2d), batches normalised once before the loop, Adam with the same learning
  rate and weight decay, then forward, cross-entropy, zero_grad, backward, step.

Every measurement runs `warmup` untimed iterations, then `iterations` timed ones. Each network
is measured `repeats` times, alternating between the two so that a burst of load from other
processes hits both alike, and the table reports the fastest repeat of each. CUDA is
synchronised before every clock reading.
"""
import argparse
import copy
import dataclasses
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lth_core.data import TEST_SIZE, TRAIN_SIZE, Dataset
from lth_core.data_sources import IMAGE_SHAPE, NUM_CLASSES
from lth_core.config import PAPER_PRUNE_RATE, PAPER_TRAINING, PRECISIONS
from lth_core.models import DATASET_OF, MODELS, build_model, check_model_name, prunable_weights
from lth_core.pruning import attach_masks, get_masks, layer_rates, prune_layerwise, set_masks
from lth_core.report.tables import save_table
from lth_core.runs.executors import resolve_device
from lth_core.runs.fused import compiles_step, fused_layers, train_fused, uses_cuda_graph

from lth_core.training import TrainingJob, make_optimizer, select_numerics, train, train_step

# timed iterations per network: about a second per measurement on a 2-core CPU (a Conv-2 step
# alone takes seconds there), enough steps on a GPU for launch overheads to average out
DEFAULT_ITERATIONS = {
    "cpu": {"lenet_300_100": 200, "conv2": 2, "shufflenet": 5},
    "cuda": {"lenet_300_100": 1000, "conv2": 200, "shufflenet": 100},
}
# the fastest of this many alternating measurements; on a shared machine, with fewer, one burst of
# load from other processes moves LeNet's ratio by several hundredths
DEFAULT_REPEATS = 5
BARE_BATCHES = 16  # distinct preloaded batches the bare loop cycles through
SEED = 0
COLUMNS = ["network", "batch", "device", "threads", "iterations",
           "lth_core ms/iter", "bare ms/iter", "ratio"]
FUSION_KS = {  # a CPU fuses at most fused.CPU_GROUP_SIZE members
    "cpu": {"lenet_300_100": (1, 2, 4, 8), "conv2": (1, 2, 4, 8), "shufflenet": (1, 2, 4, 8)},
    "cuda": {"lenet_300_100": (1, 2, 4, 8, 16, 32), "conv2": (1, 2, 4, 8, 16), "shufflenet": (1, 2, 4, 8, 16)},
}
# the fused step's forward passes timed side by side: (column, layers, channels_last, compiled); the compiled
# one takes the runner's layout (channels_last None)
FUSED_PATHS = [("vmap", "vmap", False, False), ("stacked", "stacked", False, False),
               ("stacked channels-last", "stacked", True, False), ("stacked compiled", "stacked", None, True)]
# timed iterations of each fused measurement: K of these steps run per iteration
FUSION_ITERATIONS = {
    "cpu": {"lenet_300_100": 50, "conv2": 2, "shufflenet": 3},
    "cuda": {"lenet_300_100": 300, "conv2": 100, "shufflenet": 50},
}
# whole train() calls at the paper's schedule: ten validations for LeNet, one for the networks whose
# CPU steps take a large fraction of a second
SCHEDULE_ITERATIONS = {
    "cpu": {"lenet_300_100": 1000, "conv2": 100, "shufflenet": 100},
    "cuda": {"lenet_300_100": 2000, "conv2": 1000, "shufflenet": 1000},
}
PAPER_EVAL_EVERY, PAPER_VAL_ROWS = 100, 5000
SCHEDULE_COLUMNS = ["network", "device", "threads", "iterations", "eval_every", "val_rows", "train() ms/iter",
                    "step ms/iter", "overhead", "s per 30K training"]
# precisions timed per device type (tf32 is a CUDA tensor-core format)
BENCHMARK_PRECISIONS = {"cpu": ("float32", "bf16"), "cuda": PRECISIONS}
PRECISION_COLUMNS = ["network", "batch", "device", "threads", "iterations",
                     *(f"{p} ms/iter" for p in PRECISIONS), *(f"{p} / float32" for p in PRECISIONS[1:])]
FUSION_COLUMNS = ["network", "device", "threads", "K", "iterations", "solo ms/model-step", "fused ms/model-step",
                  "speedup", "fused path", *(f"{name} ms/model-step" for name, *_ in FUSED_PATHS),
                  "graphed ms/model-step", "graphed speedup", "solo graphs on streams ms/model-step"]


def synthetic_dataset(name: str, device: torch.device, batch_size: int, test_rows: int | None = None) -> Dataset:
    """Random pixels and labels, `TRAIN_SIZE` training rows and `test_rows` (default one batch) test rows."""
    gen = torch.Generator().manual_seed(SEED)

    def images(n):
        return torch.randint(0, 256, (n, *IMAGE_SHAPE[name]), dtype=torch.uint8, generator=gen)

    def labels(n):
        return torch.randint(0, NUM_CLASSES, (n,), generator=gen)

    n = TRAIN_SIZE[name]
    return Dataset(name=name, train_x=images(n), train_y=labels(n),
                   test_x=images(test_rows or batch_size), test_y=labels(test_rows or batch_size)).to(device)


def masked_model(network: str, device: torch.device, seed: int = SEED) -> nn.Module:
    """The network with masks attached, holding one round of pruning at the paper's rate."""
    model = attach_masks(build_model(network, seed=seed).to(device))
    masks = prune_layerwise(prunable_weights(model), get_masks(model),
                            layer_rates(model, PAPER_PRUNE_RATE[network]))
    set_masks(model, masks)
    return model


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # GPU work is asynchronous: wait for what was queued
    return time.perf_counter()


class _StopwatchData:
    """Stands in for the Dataset inside `train()` and reads the clock from within its loop.

    Everything is delegated to the real dataset; the clock is read when train() fetches
    training batch `start` and when it begins its final validation (its first call of
    `train_batches`), so the interval holds iterations `start`..budget and nothing else.
    """

    def __init__(self, data: Dataset, start: int):
        self._data, self._start, self._fetches = data, start, 0
        self.started = self.stopped = None

    def __getattr__(self, name):
        return getattr(self._data, name)

    def train_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._fetches += 1
        if self._fetches == self._start:
            self.started = _now(self._data.device)
        return self._data.train_batch(idx)

    def train_batches(self, idx: torch.Tensor, batch_size: int = 1000):
        if self.stopped is None:
            self.stopped = _now(self._data.device)
        return self._data.train_batches(idx, batch_size)

    def ms_per(self, steps: int) -> float:
        """ms per step over the timed interval, which held `steps` steps."""
        if self.started is None or self.stopped is None:
            raise RuntimeError("training no longer fetches batches with Dataset.train_batch and validates "
                               "with Dataset.train_batches; update the benchmark's stopwatch")
        return 1000.0 * (self.stopped - self.started) / steps


class LthCoreTimer:
    """ms/iteration of `train()` on the masked network in `precision`, its warm-up iterations left untimed."""

    def __init__(self, network: str, data: Dataset, device: torch.device, precision: str = "float32"):
        self.cfg = dataclasses.replace(PAPER_TRAINING[network], precision=precision)
        self.model, self.data = masked_model(network, device), data
        # the validation rows are one batch, so the untimed evaluations after the loop are short
        n_val = self.cfg.batch_size
        self.val_idx = torch.arange(n_val)
        self.train_idx = torch.arange(n_val, len(data.train_y))

    def ms_per_iteration(self, iterations: int, warmup: int) -> float:
        budget = warmup + iterations
        cfg = dataclasses.replace(self.cfg, iterations=budget, eval_every=budget + 1)
        clocked = _StopwatchData(self.data, start=warmup + 1)
        train(self.model, clocked, self.train_idx, self.val_idx, cfg, seed=SEED, progress=False,
              eval_batch=self.cfg.batch_size)
        return clocked.ms_per(iterations)


class BareTimer:
    """ms/iteration of a plain Adam loop over preloaded, already normalised batches."""

    def __init__(self, network: str, data: Dataset, device: torch.device):
        cfg = PAPER_TRAINING[network]
        self.model = build_model(network, seed=SEED).to(device)
        self.model.train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        rows = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(SEED))
        self.batches = [data.train_batch(rows[i * cfg.batch_size:(i + 1) * cfg.batch_size])
                        for i in range(BARE_BATCHES)]
        self.device = device

    def _steps(self, n: int) -> None:
        model, opt = self.model, self.opt
        for i in range(n):
            x, y = self.batches[i % BARE_BATCHES]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def ms_per_iteration(self, iterations: int, warmup: int) -> float:
        self._steps(warmup)
        started = _now(self.device)
        self._steps(iterations)
        return 1000.0 * (_now(self.device) - started) / iterations


def _measurement(network: str, dev: torch.device, iterations, warmup, defaults: dict, warm_share: int):
    """(timed iterations, warm-up iterations, batch size, synthetic data) of one network's measurements."""
    n = defaults[dev.type][network] if iterations is None else iterations
    n_warm = max(1, n // warm_share) if warmup is None else warmup
    batch = PAPER_TRAINING[network].batch_size
    select_numerics(dev)  # train() would select them anyway; the other loops run under the same
    return n, n_warm, batch, synthetic_dataset(DATASET_OF[network], dev, batch)


def _check_counts(iterations: int | None, warmup: int | None, repeats: int) -> None:
    if (iterations is not None and iterations < 1) or (warmup is not None and warmup < 0) or repeats < 1:
        raise ValueError(f"iterations and repeats must be positive and warmup not negative, "
                         f"got {iterations}, {repeats}, {warmup}")


def run_benchmark(networks=tuple(MODELS), iterations: int | None = None, device: str = "auto",
                  warmup: int | None = None, repeats: int = DEFAULT_REPEATS) -> pd.DataFrame:
    """One row per network (see the module docstring); `iterations`/`warmup` None: per-network defaults."""
    dev = resolve_device(device)
    _check_counts(iterations, warmup, repeats)
    rows = []
    for network in map(check_model_name, networks):
        n, n_warm, batch, data = _measurement(network, dev, iterations, warmup, DEFAULT_ITERATIONS, 10)
        timers = {"lth_core": LthCoreTimer(network, data, dev), "bare": BareTimer(network, data, dev)}
        times = {kind: [] for kind in timers}
        for _ in range(repeats):
            for kind, timer in timers.items():
                times[kind].append(timer.ms_per_iteration(n, n_warm))
        # other processes can only slow a run down, so the fastest repeat is the least disturbed
        lth, bare = min(times["lth_core"]), min(times["bare"])
        rows.append({"network": network, "batch": batch, "device": str(dev),
                     "threads": torch.get_num_threads(), "iterations": n,
                     "lth_core ms/iter": lth, "bare ms/iter": bare, "ratio": lth / bare})
    return pd.DataFrame(rows, columns=COLUMNS)


def run_precision_benchmark(networks=tuple(MODELS), iterations: int | None = None, device: str = "auto",
                            warmup: int | None = None, repeats: int = DEFAULT_REPEATS,
                            deadline: float | None = None) -> pd.DataFrame:
    """One row per network: `train()`'s step in each of `BENCHMARK_PRECISIONS` (NaN for a precision the
    device does not run) and its ratio to float32. The precisions are measured in turn, `repeats` rounds,
    so that a burst of load from other processes hits all alike; the fastest of each is kept. Past
    `deadline` (a `time.time()` value) no further network is started."""
    dev = resolve_device(device)
    _check_counts(iterations, warmup, repeats)
    rows = []
    for network in map(check_model_name, networks):
        if deadline is not None and time.time() > deadline:
            break
        n, n_warm, batch, data = _measurement(network, dev, iterations, warmup, DEFAULT_ITERATIONS, 10)
        timers = {p: LthCoreTimer(network, data, dev, p) for p in BENCHMARK_PRECISIONS[dev.type]}
        times = {p: float("inf") for p in timers}
        for _ in range(repeats):
            for precision, timer in timers.items():
                times[precision] = min(times[precision], timer.ms_per_iteration(n, n_warm))
        ms = {p: times.get(p, float("nan")) for p in PRECISIONS}
        rows.append({"network": network, "batch": batch, "device": str(dev), "threads": torch.get_num_threads(),
                     "iterations": n, **{f"{p} ms/iter": ms[p] for p in PRECISIONS},
                     **{f"{p} / float32": ms[p] / ms["float32"] for p in PRECISIONS[1:]}})
    return pd.DataFrame(rows, columns=PRECISION_COLUMNS)


def run_schedule_benchmark(networks=tuple(MODELS), iterations: int | None = None, device: str = "auto",
                           step_ms: dict | None = None) -> pd.DataFrame:
    """One row per network: a whole train() call at the paper's evaluation schedule, ms per iteration.

    `step_ms` ({network: ms}, e.g. run_benchmark's "lth_core ms/iter") is the per-step figure to compare
    with; without it the step is timed here. `overhead` = 1 - step / train(): the share of a user's wait
    spent outside training steps (validation, checkpoint copies, test evaluations)."""
    dev = resolve_device(device)
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    rows = []
    for network in map(check_model_name, networks):
        n = SCHEDULE_ITERATIONS[dev.type][network] if iterations is None else iterations
        base = PAPER_TRAINING[network]
        data = synthetic_dataset(DATASET_OF[network], dev, base.batch_size, TEST_SIZE[DATASET_OF[network]])
        select_numerics(dev)
        step = (step_ms or {}).get(network)
        if step is None:
            step = LthCoreTimer(network, data, dev).ms_per_iteration(min(n, 50), 5)
        def seconds(budget: int) -> float:
            cfg = dataclasses.replace(base, iterations=budget, eval_every=PAPER_EVAL_EVERY)
            model = masked_model(network, dev)
            start = _now(dev)
            train(model, data, torch.arange(PAPER_VAL_ROWS, len(data.train_y)), torch.arange(PAPER_VAL_ROWS), cfg,
                  seed=SEED, progress=False)
            return _now(dev) - start

        # two calls: their difference holds n iterations of the schedule without the once-per-call costs
        # (the final test evaluation, the first steps), which the shorter call measures
        seconds(2)  # untimed: a process's first train() call pays one-time initialisations
        short, long = seconds(n), seconds(2 * n)
        ms = 1000.0 * (long - short) / n
        once = max(0.0, short - ms * n / 1000.0)
        rows.append({"network": network, "device": str(dev), "threads": torch.get_num_threads(), "iterations": n,
                     "eval_every": PAPER_EVAL_EVERY, "val_rows": PAPER_VAL_ROWS, "train() ms/iter": ms,
                     "step ms/iter": step, "overhead": 1 - step / ms, "s per 30K training": ms * 30.0 + once})
    return pd.DataFrame(rows, columns=SCHEDULE_COLUMNS)


def schedule_sentence(table: pd.DataFrame) -> str:
    """What separates a whole training from the per-step figure, per network."""
    return "\n".join(
        f"{r.network}: a whole train() call at the paper's schedule costs {r._7:.2f} ms per iteration against "
        f"{r._8:.2f} ms per training step: {100 * r.overhead:.0f}% of a user's wait is outside the steps (a "
        f"validation pass over {r.val_rows:,} rows every {r.eval_every} iterations, a checkpoint copy at each "
        f"improvement), and with the test set at the end a 30,000-iteration training takes about {r._10:.0f} s."
        for r in table.itertuples())


def fused_ms_per_model_step(network: str, data: Dataset, k: int, iterations: int,
                            warmup: int, prototypes: list[nn.Module], cuda_graph: bool = False,
                            layers: str = "stacked", channels_last: bool = False, compile_step: bool = False) -> float:
    """ms per model-step of K members trained together (see the module docstring); members are
    copies of `prototypes` (masked models, built once: pruning a 4.3M-weight network takes a second).
    `cuda_graph`: the step replayed as a CUDA graph; `layers`, `channels_last`, `compile_step`: the
    step's forward pass. At least one warm-up step: the graph's recording and the compiler's tracing
    happen at the first."""
    base = PAPER_TRAINING[network]
    val_idx = torch.arange(base.batch_size)  # one batch: the untimed end-of-call evaluations stay short
    warmup = max(1, warmup)
    cfg = dataclasses.replace(base, iterations=warmup + iterations, eval_every=warmup + iterations + 1)
    train_idx = torch.arange(base.batch_size, len(data.train_y))
    members = [TrainingJob(copy.deepcopy(prototypes[i % len(prototypes)]), train_idx, val_idx, cfg, seed=i)
               for i in range(k)]
    clocked = _StopwatchData(data, start=warmup + 1)
    train_fused(members, clocked, progress=False, eval_batch=base.batch_size, cuda_graph=cuda_graph,
                layers=layers, channels_last=channels_last, compile_step=compile_step)
    return clocked.ms_per(k * iterations)


def streams_ms_per_model_step(network: str, data: Dataset, device: torch.device, k: int, iterations: int,
                              warmup: int, prototypes: list[nn.Module]) -> float:
    """ms per model-step of K solo trainings on CUDA, each one's step (`training.train_step`, the step
    `train()` takes) recorded as its own CUDA graph and the K graphs replayed on K streams at every
    iteration: solo training by construction, its kernels overlapping across members."""
    base = PAPER_TRAINING[network]
    x, y = data.train_batch(torch.arange(base.batch_size))
    members = []
    for i in range(k):
        model = copy.deepcopy(prototypes[i % len(prototypes)]).train()
        opt, stream = make_optimizer(model, base), torch.cuda.Stream(device)
        static_x, static_y = x.clone(), y.clone()
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # lazy cuBLAS/cuDNN set-up must happen before the recording
            for _ in range(3):
                train_step(model, opt, static_x, static_y, base.precision)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            train_step(model, opt, static_x, static_y, base.precision)
        members.append((graph, stream, static_x, static_y))

    def seconds(steps: int) -> float:
        start = _now(device)
        for _ in range(steps):
            for graph, stream, static_x, static_y in members:
                with torch.cuda.stream(stream):  # each step reads its batch, as train() fetches one
                    static_x.copy_(x)
                    static_y.copy_(y)
                    graph.replay()
        return _now(device) - start  # synchronises every stream

    seconds(warmup)
    return 1000.0 * seconds(iterations) / (k * iterations)


def run_fusion_benchmark(networks=tuple(MODELS), ks: dict | list | None = None, iterations: int | None = None,
                         device: str = "auto", warmup: int | None = None, repeats: int = 1,
                         on_row=None, deadline: float | None = None, compile_paths: bool = True) -> pd.DataFrame:
    """One row per (network, K): solo and each fused forward pass (`FUSED_PATHS`; channels-last only for
    the convolutional networks, NaN for LeNet) in ms per model-step, `fused` the runner's pass and
    speedup = solo / fused; the stacked step compiled by torch.compile in the runner's layout (`stacked
    compiled`; `compile_paths=False` skips it: compiling costs tens of seconds per network and K); on CUDA
    also the runner's pass replayed as a CUDA graph (`graphed`) and K solo steps each recorded as its own
    CUDA graph and replayed on K streams (`solo graphs on streams`), NaN on a CPU, where there are no graphs. Per K, solo and every pass are measured in turn, `repeats` rounds
    of them, so that a burst of load from other processes hits all alike; the fastest of each is kept.

    `on_row(table so far)` is called after every row, so a caller can save partial results. Past
    `deadline` (a `time.time()` value) no further row is started: the rows measured so far are returned."""
    dev = resolve_device(device)
    if repeats < 1 or (iterations is not None and iterations < 1):
        raise ValueError(f"iterations and repeats must be positive, got {iterations}, {repeats}")
    rows = []
    for network in map(check_model_name, networks):
        n, n_warm, batch, data = _measurement(network, dev, iterations, warmup, FUSION_ITERATIONS, 5)
        solo_timer = LthCoreTimer(network, data, dev)
        group_sizes = ks if isinstance(ks, (list, tuple)) else (ks or FUSION_KS[dev.type])[network]
        prototypes = [masked_model(network, dev, seed=i) for i in range(min(4, max(group_sizes)))]
        chosen = (*fused_layers(network, dev), compiles_step(network, dev))
        paths = [(name, layers, chosen[1] if channels_last is None else channels_last, compiled)
                 for name, layers, channels_last, compiled in FUSED_PATHS
                 if not (channels_last and network == "lenet_300_100")  # no channels in LeNet
                 and (compile_paths or not compiled)]
        graph = dev.type == "cuda"
        for k in group_sizes:
            if deadline is not None and time.time() > deadline:
                return pd.DataFrame(rows, columns=FUSION_COLUMNS)
            extra = ["graphed", "solo graphs on streams"] if graph else []
            times = {name: float("inf") for name in ["solo", *(p[0] for p in paths), *extra]}
            for _ in range(repeats):
                times["solo"] = min(times["solo"], solo_timer.ms_per_iteration(n, n_warm))
                for name, layers, channels_last, compiled in paths:
                    times[name] = min(times[name], fused_ms_per_model_step(
                        network, data, k, n, n_warm, prototypes, layers=layers, channels_last=channels_last,
                        compile_step=compiled))
                if graph:
                    times["graphed"] = min(times["graphed"], fused_ms_per_model_step(
                        network, data, k, n, n_warm, prototypes, cuda_graph=True, layers=chosen[0],
                        channels_last=chosen[1], compile_step=chosen[2]))
                    times["solo graphs on streams"] = min(times["solo graphs on streams"], streams_ms_per_model_step(
                        network, data, dev, k, n, n_warm, prototypes))
            fused_name = next(name for name, *path in paths if tuple(path) == chosen)
            solo, fused, graphed = times["solo"], times[fused_name], times.get("graphed", float("nan"))
            rows.append({"network": network, "device": str(dev), "threads": torch.get_num_threads(), "K": k,
                         "iterations": n, "solo ms/model-step": solo, "fused ms/model-step": fused,
                         "speedup": solo / fused, "fused path": fused_name,
                         **{f"{name} ms/model-step": times.get(name, float("nan")) for name, *_ in FUSED_PATHS},
                         "graphed ms/model-step": graphed, "graphed speedup": solo / graphed,
                         "solo graphs on streams ms/model-step": times.get("solo graphs on streams", float("nan"))})
            if on_row is not None:
                on_row(pd.DataFrame(rows, columns=FUSION_COLUMNS))
    return pd.DataFrame(rows, columns=FUSION_COLUMNS)


def ms_per_model_step(bench: pd.DataFrame, network: str, device: str, k: int, fuse: bool = True) -> tuple[float, int]:
    """(ms per model-step, K it was measured at) for `network` on `device`: fused at the largest
    measured K not above `k` (graphed where the trainer replays CUDA graphs and the table has them),
    or solo; NaN when the benchmark has no row for them."""
    rows = bench[(bench["network"] == network) & (bench["device"].str.split(":").str[0] == device)]
    if rows.empty:
        return float("nan"), 0
    if not fuse:
        return float(rows["solo ms/model-step"].min()), 1
    fit = rows[rows["K"] <= k]
    best = (fit if len(fit) else rows).sort_values("K").iloc[-1]
    graphed = best.get("graphed ms/model-step", float("nan"))
    if uses_cuda_graph(network, device) and pd.notna(graphed):
        return float(graphed), int(best["K"])
    return float(best["fused ms/model-step"]), int(best["K"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lth_core.programs.benchmark",
        description="ms per training iteration: lth_core's train() on a masked network "
                    "versus a bare PyTorch loop, at each network's Table 1 batch size.")
    parser.add_argument("--networks", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed iterations per network (default: per network and device, "
                             f"CPU {DEFAULT_ITERATIONS['cpu']}, CUDA {DEFAULT_ITERATIONS['cuda']})")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations before each measurement "
                             "(default: a tenth of --iterations, at least 1)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="measurements per network; the fastest is reported")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the run (default: PyTorch's choice)")
    parser.add_argument("--ks", type=int, nargs="+", default=None,
                        help=f"group sizes for the fusion table (default: per device and network, {FUSION_KS})")
    parser.add_argument("--fusion-iterations", type=int, default=None,
                        help=f"timed iterations per fused measurement (default: per network and device, "
                             f"CPU {FUSION_ITERATIONS['cpu']}, CUDA {FUSION_ITERATIONS['cuda']})")
    parser.add_argument("--fusion-repeats", type=int, default=1,
                        help="rounds of side-by-side fusion measurements; the fastest of each is reported")
    parser.add_argument("--no-fusion", action="store_true", help="no fusion table")
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile column in the fusion table")
    parser.add_argument("--no-schedule", action="store_true", help="no whole-train() table")
    parser.add_argument("--no-precision", action="store_true", help="no table of the step in each precision")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    table = run_benchmark(args.networks, args.iterations, args.device, args.warmup, args.repeats)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not args.no_schedule:
        schedule = run_schedule_benchmark(args.networks, None, args.device,
                                          dict(zip(table["network"], table["lth_core ms/iter"])))
        print()
        print(schedule.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(schedule_sentence(schedule))
        print(f"written to {save_table(schedule, 'benchmark_schedule')[0]}")
    if not args.no_precision:
        precision = run_precision_benchmark(args.networks, args.iterations, args.device, args.warmup, args.repeats)
        print()
        print(precision.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"written to {save_table(precision, 'benchmark_precision')[0]}")
    if not args.no_fusion:
        fusion = run_fusion_benchmark(args.networks, args.ks, args.fusion_iterations, args.device,
                                      repeats=args.fusion_repeats, on_row=lambda partial: save_table(partial, "benchmark"),
                                      compile_paths=not args.no_compile)
        print()
        print(fusion.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"written to {save_table(fusion, 'benchmark')[0]}")


if __name__ == "__main__":
    main()
