"""What a run is: the configuration types, their valid values, and the paper's settings.

- `TrainConfig`: one training's optimisation settings (Adam, learning-rate schedule, budget,
  evaluation and early stopping, precision). The budget is `iterations`, or with `epochs` that
  many epochs of the training rows at hand (`budget_for(n_rows)` resolves it: the authors'
  protocol, 20 epochs, gives a 10% subset a tenth of the full pool's iterations).
- `IMPConfig`: one IMP trajectory completely (network, seed, data splits, training settings,
  pruning rates, controls); the unit the run store names, caches and resumes.
  Data splits: a seeded validation holdout (`val_size`) comes out of the training set first; the
  rest is the pool. `all` is the pool, `half1`/`half2` its seeded disjoint halves S1/S2, `subset` a
  seeded `subset_percent`% of the pool. `train_limit`/`test_limit` shrink the pool / test set for
  CPU-sized runs.
- Training settings: `PAPER_TRAINING` is Table 1's per network, `PAPER_PRUNE_RATE` its pruning
  rates; `TRAINING_SETTINGS` names other settings a network can also run under (overrides of Table
  1's), `training_settings(network)` resolves them, `setting_overrides` makes a setting's
  `paper_config` overrides and `setting_of` names the setting of a TrainConfig;
  `paper_config(network, **overrides)` is Table 1's IMPConfig.

Each value is checked here, once, when a config is made (`checks.py` holds the checks and the
words of their messages); the notebook parameter check calls the same checks.
"""
import dataclasses
import math
import numbers
from dataclasses import dataclass

from lth_core import data as data_mod
from lth_core.models import DATASET_OF, check_model_name

OPTIMIZERS = ("adam",)  # the paper's and the authors' optimiser for every network
SCHEDULES = ("constant", "step", "exponential")
CRITERIA = ("val_loss", "val_acc")
BUDGET_PROTOCOLS = ("iterations", "epochs")  # a budget of `iterations`, or of `epochs` of the training rows
PRECISIONS = ("float32", "tf32", "bf16")  # the compute precision of training and evaluation (module docstring)
SPLITS = ("all", "half1", "half2", "subset")
CONTROLS = ("reinit", "random_prune")


def iterations_per_epoch(n_rows: int, batch_size: int) -> int:
    """Steps per epoch as train() takes them: full batches only, at least one."""
    return max(1, n_rows // batch_size)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"  # Adam (betas 0.9/0.999, eps 1e-8), as the authors' torch.optim.Adam
    iterations: int = 30_000
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0  # Adam's L2 penalty, as the authors' torch.optim.Adam
    lr_schedule: str = "constant"  # constant | step (x lr_gamma every lr_step_epochs) | exponential (x lr_gamma every epoch)
    lr_gamma: float = 1.0
    lr_step_epochs: int = 1
    eval_every: int = 100
    criterion: str = "val_loss"
    patience: int | None = None  # evaluations without improvement before stopping; None runs the full budget
    epochs: float | None = None  # budget in epochs of the run's own training rows (the authors: 20); None: `iterations`
    precision: str = "float32"  # float32 | tf32 (CUDA only) | bf16 (autocast, float32 master weights)

    def __post_init__(self):
        def bad(what):
            raise ValueError(f"TrainConfig: {what}")
        if self.iterations < 1 or self.batch_size < 1 or self.eval_every < 1:
            bad(f"iterations ({self.iterations}), batch_size ({self.batch_size}) and eval_every "
                f"({self.eval_every}) must be positive integers")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):  # written this way so that NaN fails too
            bad(f"lr must be > 0 and weight_decay >= 0, got lr={self.lr}, weight_decay={self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            bad(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            bad(f"unknown lr_schedule {self.lr_schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.criterion not in CRITERIA:
            bad(f"unknown criterion {self.criterion!r}; valid: {', '.join(CRITERIA)}")
        if self.lr_step_epochs < 1 or not (math.isfinite(self.lr_gamma) and self.lr_gamma > 0):
            bad(f"lr_step_epochs must be >= 1 and lr_gamma > 0, got lr_step_epochs={self.lr_step_epochs}, "
                f"lr_gamma={self.lr_gamma}")
        if self.patience is not None and self.patience < 1:
            bad(f"patience must be None or >= 1, got {self.patience}")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            bad(f"epochs must be None or > 0, got {self.epochs}")
        if self.precision not in PRECISIONS:
            bad(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")

    def budget_for(self, n_rows: int) -> "TrainConfig":
        """This config with its budget in iterations for `n_rows` training rows (`epochs` resolved)."""
        if self.epochs is None:
            return self
        per_epoch = iterations_per_epoch(n_rows, self.batch_size)
        return dataclasses.replace(self, iterations=max(1, round(self.epochs * per_epoch)), epochs=None)

    def lr_at_epoch(self, epoch: int) -> float:
        if self.lr_schedule == "step":
            return self.lr * self.lr_gamma ** (epoch // self.lr_step_epochs)
        if self.lr_schedule == "exponential":
            return self.lr * self.lr_gamma ** epoch
        return self.lr


# Table 1 with the authors' optimiser settings (reproduction-spec.md).
PAPER_TRAINING = {
    "lenet_300_100": TrainConfig(batch_size=100, lr=1e-3, weight_decay=1e-3, lr_schedule="exponential", lr_gamma=0.95),
    "conv2": TrainConfig(batch_size=200, lr=2e-4, weight_decay=1e-3),
    "shufflenet": TrainConfig(batch_size=100, lr=1e-2, lr_schedule="step", lr_gamma=0.1, lr_step_epochs=10),
}
PAPER_PRUNE_RATE = {"lenet_300_100": 0.2, "conv2": 0.2, "shufflenet": 0.1}
# Named training settings a network can also be run under, as overrides of its PAPER_TRAINING (`TABLE1`, no
# overrides, is every network's). For LeNet, the settings that may decide whether its tickets beat their controls:
# Frankle & Carbin's (their Figure 2 and appendix: Adam at a constant 1.2e-3, batch 60, 50,000 iterations, no
# weight decay; they validate every 100 iterations, as TrainConfig does by default), and Table 1's without its
# weight decay, the one change that separates the two at Table 1's batch and schedule.
TABLE1 = "table1"
TRAINING_SETTINGS = {
    "lenet_300_100": {
        TABLE1: {},
        "table1_no_weight_decay": {"weight_decay": 0.0},
        "frankle_carbin": {"lr": 1.2e-3, "weight_decay": 0.0, "lr_schedule": "constant", "lr_gamma": 1.0,
                           "batch_size": 60, "iterations": 50_000},
    },
}


@dataclass(frozen=True)
class IMPConfig:
    network: str = "lenet_300_100"
    seed: int = 0  # model init and batch order
    rounds: int = 5  # pruning steps; the trajectory has rounds + 1 levels
    prune_rate: float = 0.2  # hidden layers (and BN gamma when pruned)
    output_rate: float | None = None  # None: prune_rate / 2
    prune_bn: bool = False
    train: TrainConfig = TrainConfig()
    find_on: str = "all"
    retrain_on: tuple[str, ...] = ()
    subset_percent: float = 100.0
    controls: tuple[str, ...] = ()
    rewind_iteration: int | None = None  # None: reset to init (the paper); k: late rewinding
    val_size: int = 5000
    split_seed: int = 0  # data splits; fixed across seeds by default so seeds vary only init and order
    train_limit: int | None = None  # use only this many (seeded) pool rows
    test_limit: int | None = None  # evaluate on this many (seeded) test rows; None: full test set

    def __post_init__(self):
        check_model_name(self.network)
        if isinstance(self.train, dict):  # rebuilt from JSON
            object.__setattr__(self, "train", TrainConfig(**self.train))
        object.__setattr__(self, "retrain_on", tuple(self.retrain_on))
        object.__setattr__(self, "controls", tuple(self.controls))
        for s in (self.find_on, *self.retrain_on):
            if s not in SPLITS:
                raise ValueError(f"unknown data split {s!r}; valid splits: {', '.join(SPLITS)}")
        for c in self.controls:
            if c not in CONTROLS:
                raise ValueError(f"unknown control {c!r}; valid controls: {', '.join(CONTROLS)}")
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        # a rate of 1 would prune every weight; past it (or negative) the masks would be nonsense,
        # and without this check that surfaces only after round 0 has trained
        for name, rate in (("prune_rate", self.prune_rate), ("output_rate", self.output_rate)):
            if rate is None:
                continue
            if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {rate!r}")
            object.__setattr__(self, name, float(rate))  # a NumPy scalar too: configs are hashed as JSON
        n_train = data_mod.TRAIN_SIZE[self.dataset]
        if not 1 <= self.val_size < n_train:  # 0 would fail only at the first evaluation
            raise ValueError(f"val_size must be in [1, {n_train}) for {self.dataset}, got {self.val_size}")
        for name, limit in (("train_limit", self.train_limit), ("test_limit", self.test_limit)):
            if limit is not None and limit < 1:  # negative limits would slice from the end
                raise ValueError(f"{name} must be None or >= 1, got {limit}")
        if not 0 < self.subset_percent <= 100:
            raise ValueError(f"subset_percent must be in (0, 100], got {self.subset_percent}")
        if self.rewind_iteration is not None and self.rewind_iteration < 0:
            raise ValueError(f"rewind_iteration must be None or >= 0, got {self.rewind_iteration}")
        if (self.rewind_iteration is not None and self.train.epochs is None  # else: known with the data
                and self.rewind_iteration > self.train.iterations):
            raise ValueError(f"rewind_iteration {self.rewind_iteration} is outside the training budget "
                             f"0..{self.train.iterations}")

    @property
    def dataset(self) -> str:
        return DATASET_OF[self.network]


def paper_config(network: str, **overrides) -> IMPConfig:
    """An IMPConfig with Table 1's settings for `network`; `overrides` may hold TrainConfig fields too."""
    check_model_name(network)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_over = {k: overrides.pop(k) for k in list(overrides) if k in train_fields}
    tc = dataclasses.replace(PAPER_TRAINING[network], **train_over)
    return IMPConfig(**{"network": network, "prune_rate": PAPER_PRUNE_RATE[network], "train": tc, **overrides})


def training_settings(network: str) -> dict[str, TrainConfig]:
    """{setting name: its full TrainConfig} of `network`: Table 1's, then its other named settings."""
    check_model_name(network)
    named = TRAINING_SETTINGS.get(network, {TABLE1: {}})
    return {name: dataclasses.replace(PAPER_TRAINING[network], **over) for name, over in named.items()}


def setting_overrides(network: str, setting: str, iterations: int | None = None) -> dict:
    """`paper_config` overrides that train `network` under `setting`. `iterations` is a budget stated at Table 1's
    (a profile's `lenet_iterations`); each setting gets the same share of its own full budget, so Table 1's 30,000
    are every setting's full budget (Frankle & Carbin's 50,000 at batch 60: the same 3 million examples)."""
    settings = training_settings(network)
    if setting not in settings:
        raise ValueError(f"unknown training setting {setting!r} for {network}; valid: {', '.join(settings)}")
    over = dict(TRAINING_SETTINGS.get(network, {}).get(setting, {}))
    if iterations is not None:
        full, table1 = settings[setting].iterations, PAPER_TRAINING[network].iterations
        over["iterations"] = iterations if full == table1 else max(1, round(iterations * full / table1))
    return over


def setting_of(network: str, train: TrainConfig) -> str | None:
    """The name of the setting `train` follows (budget, evaluation frequency and patience aside); None when it
    follows none (a training set up by hand)."""
    aside = {"iterations": 1, "eval_every": 1, "patience": None, "epochs": None}
    for name, tc in training_settings(network).items():
        if dataclasses.replace(tc, **aside) == dataclasses.replace(train, **aside):
            return name
    return None


def is_paper_scale(cfg: IMPConfig, setting: str = TABLE1) -> bool:
    """`setting`'s full training (default Table 1's) on the full data (evaluation frequency and patience aside)."""
    paper = training_settings(cfg.network)[setting]
    same_training = dataclasses.replace(cfg.train, eval_every=paper.eval_every, patience=None) == paper
    return (same_training and cfg.train_limit is None and cfg.test_limit is None
            and cfg.val_size == IMPConfig.val_size)
