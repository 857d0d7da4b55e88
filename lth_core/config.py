"""What a run is: the configuration types, their valid values, and the paper's settings.

- `TrainConfig`: one training's optimisation settings (Adam, learning-rate schedule, budget,
  evaluation and early stopping, precision). The budget is `iterations`, or with `epochs` that
  many epochs of the training rows at hand (`budget_for(n_rows)` resolves it: the authors'
  protocol, 20 epochs, gives a 10% subset a tenth of the full pool's iterations).
- `IMPConfig`: one IMP trajectory completely (network, seed, data splits, training settings,
  pruning rates and criterion, controls); the unit the run store names, caches and resumes.
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
from dataclasses import dataclass

from lth_core import checks
from lth_core import data as data_mod
from lth_core.models import DATASET_OF, MODELS

OPTIMIZERS = ("adam",)  # the paper's and the authors' optimiser for every network
SCHEDULES = ("constant", "step", "exponential")
CRITERIA = ("val_loss", "val_acc")
BUDGET_PROTOCOLS = ("iterations", "epochs")  # a budget of `iterations`, or of `epochs` of the training rows
PRECISIONS = ("float32", "tf32", "bf16")  # the compute precision of training and evaluation (module docstring)
SPLITS = ("all", "half1", "half2", "subset")
CONTROLS = ("reinit", "random_prune")
PRUNINGS = ("layerwise", "global")  # the pruning criterion (pruning.prune_layerwise, pruning.prune_global)


def _make_plain(config) -> None:
    """Turn a config's NumPy numbers into Python's (a NumPy float rate, say): configs are named by a hash
    of their JSON, which knows only Python's numbers."""
    for f in dataclasses.fields(config):
        object.__setattr__(config, f.name, checks.plain(getattr(config, f.name)))


def check_network(network: str) -> str:
    """`network` when IMPConfig knows it; else the ConfigError of IMPConfig's `network` rule."""
    return checks.check("IMPConfig", "network", network, IMPConfig.RULES["network"])


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

    # the valid values of each field (checks.py); __post_init__ applies them in this order
    RULES = {
        "optimizer": checks.one_of(OPTIMIZERS),
        "iterations": checks.integer(1),
        "batch_size": checks.integer(1),
        "lr": checks.number(0, lo_open=True),
        "weight_decay": checks.number(0),
        "lr_schedule": checks.one_of(SCHEDULES),
        "lr_gamma": checks.number(0, lo_open=True),
        "lr_step_epochs": checks.integer(1),
        # past `iterations` it validates once, at the end: tiny test and benchmark trainings rely on that
        "eval_every": checks.integer(1),
        "criterion": checks.one_of(CRITERIA),
        "patience": checks.integer(1, optional=True),
        "epochs": checks.number(0, lo_open=True, optional=True),
        "precision": checks.one_of(PRECISIONS),
    }

    def __post_init__(self):
        _make_plain(self)
        checks.apply("TrainConfig", self, self.RULES)

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
    pruning: str = "layerwise"  # layerwise: each layer at its rate; global: one threshold over the hidden layers
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

    # the valid values of each field (checks.py), in the order __post_init__ checks them; val_size, test_limit
    # and rewind_iteration, whose ranges depend on the dataset or the budget, are `_relations`' (checked after)
    RULES = {
        "network": checks.one_of(MODELS),
        "seed": checks.integer(0),
        "rounds": checks.integer(0),
        # 0 would train one level again and again (levels are told apart by sparsity), 1 prunes every weight
        "prune_rate": checks.explained(checks.fraction_open(), "0 prunes nothing, 1 every weight"),
        "output_rate": checks.fraction_open(optional=True),
        "prune_bn": checks.boolean(),
        "pruning": checks.one_of(PRUNINGS),
        "train": checks.instance_of(TrainConfig),
        "find_on": checks.one_of(SPLITS),
        "retrain_on": checks.distinct(SPLITS, "splits"),
        "subset_percent": checks.percent(),
        "controls": checks.distinct(CONTROLS, "controls"),
        "split_seed": checks.integer(0),
        "train_limit": checks.integer(1, optional=True),  # negative limits would slice from the end
    }

    def __post_init__(self):
        if isinstance(self.train, dict):  # rebuilt from JSON
            object.__setattr__(self, "train", TrainConfig(**self.train))
        _make_plain(self)
        checks.apply("IMPConfig", self, self.RULES)
        object.__setattr__(self, "retrain_on", tuple(self.retrain_on))  # a list too: configs are hashed
        object.__setattr__(self, "controls", tuple(self.controls))
        checks.apply("IMPConfig", self, self._relations())

    def _relations(self) -> dict[str, checks.Rule]:
        """The rules of the fields whose range depends on other fields (the dataset, the budget); they read
        those fields, so they run once RULES has passed them."""
        n_train, n_test = data_mod.TRAIN_SIZE[self.dataset], data_mod.TEST_SIZE[self.dataset]
        return {
            # 0 would fail only at the first evaluation; the training pool is what val_size leaves
            "val_size": checks.explained(checks.integer(1, n_train - 1),
                                         f"{self.dataset} has {n_train:,} training rows; the rest is the pool"),
            # past the test set it would name a second run for the same full test set
            "test_limit": checks.explained(checks.integer(1, n_test, optional=True),
                                           f"{self.dataset} has {n_test:,} test rows; None: all of them"),
            # an epoch budget is known only with the data (IMPRunner checks the rewind against it then)
            "rewind_iteration": checks.integer(0, optional=True) if self.train.epochs is not None else checks.explained(
                checks.integer(0, self.train.iterations, optional=True),
                f"within the training budget of {self.train.iterations:,} iterations"),
        }

    @property
    def dataset(self) -> str:
        return DATASET_OF[self.network]


def paper_config(network: str, **overrides) -> IMPConfig:
    """An IMPConfig with Table 1's settings for `network`; `overrides` may hold TrainConfig fields too."""
    check_network(network)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_over = {k: overrides.pop(k) for k in list(overrides) if k in train_fields}
    tc = dataclasses.replace(PAPER_TRAINING[network], **train_over)
    return IMPConfig(**{"network": network, "prune_rate": PAPER_PRUNE_RATE[network], "train": tc, **overrides})


def training_settings(network: str) -> dict[str, TrainConfig]:
    """{setting name: its full TrainConfig} of `network`: Table 1's, then its other named settings."""
    check_network(network)
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


# what a named setting leaves open: how often a training validates, when it stops, its numerics
LEFT_OPEN = ("eval_every", "patience", "precision")


def _left_open(train: TrainConfig, reference: TrainConfig, fields) -> TrainConfig:
    """`train` with `fields` taken from `reference`: equal to it when they differ in those fields alone."""
    return dataclasses.replace(train, **{f: getattr(reference, f) for f in fields})


def setting_of(network: str, train: TrainConfig) -> str | None:
    """The name of the setting `train` follows (budget, evaluation frequency, patience and precision aside: a
    setting is the optimisation, not its numerics); None when it follows none (a training set up by hand)."""
    for name, tc in training_settings(network).items():
        if _left_open(train, tc, ("iterations", "epochs", *LEFT_OPEN)) == tc:
            return name
    return None


def is_paper_scale(cfg: IMPConfig, setting: str = TABLE1) -> bool:
    """`setting`'s full training (default Table 1's) on the full data (evaluation frequency, patience and
    precision aside: the run's settings table shows them)."""
    paper = training_settings(cfg.network)[setting]
    same_training = _left_open(cfg.train, paper, LEFT_OPEN) == paper
    return (same_training and cfg.train_limit is None and cfg.test_limit is None
            and cfg.val_size == IMPConfig.val_size)
