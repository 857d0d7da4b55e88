"""The paper's three networks, built by name, with the authors' initialisations.

- `lenet_300_100`: 784-300-100-10 fully connected, for MNIST (266,200 prunable weights).
- `conv2`: Frankle & Carbin's Conv-2 for CIFAR-10 (4,300,992 prunable weights).
- `shufflenet`: a CIFAR-sized ShuffleNet v1 (groups=1 by default; 946,008 prunable weights).

`build_model(name, **options)` is the entry point; `prunable_weights(model)`
lists the conv and linear weights pruning acts on, in forward order, and
`output_layer_name(model)` names the classifier (pruned at half rate).
`NETWORK_LABEL`, `DATASET_LABEL` and `network_title` are the names figures and
tables print; `FIGURE_STEM` names each network's figure files (`fig1_<stem>`, ...).
Initialisations follow the spec (reproduction-spec.md): linear N(0, std=1e-3),
conv Xavier-uniform (Conv-2) or He-normal fan-out (ShuffleNet), biases 0, BN 1/0.
"""
from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F

LINEAR_INIT_STD = 1e-3


def _init_linear(m: nn.Linear, std: float) -> None:
    nn.init.normal_(m.weight, 0.0, std)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _mlp(widths: list[int], linear_init_std: float) -> list[tuple[str, nn.Module]]:
    """Named fc1, relu1, fc2, ... layers; the last linear has no ReLU."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        lin = nn.Linear(a, b)
        _init_linear(lin, linear_init_std)
        layers.append((f"fc{i}", lin))
        if i < len(widths) - 1:
            layers.append((f"relu{i}", nn.ReLU()))
    return layers


def lenet_300_100(linear_init_std: float = LINEAR_INIT_STD) -> nn.Module:
    """LeNet-300-100 for 1x28x28 inputs."""
    return nn.Sequential(OrderedDict([("flatten", nn.Flatten()), *_mlp([784, 300, 100, 10], linear_init_std)]))


def conv2(linear_init_std: float = LINEAR_INIT_STD) -> nn.Module:
    """Conv-2 for 3x32x32 inputs: two 3x3 convs (pad 1) with ReLU, 2x2 max-pool, 256-256-10."""
    convs = [nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)]
    for c in convs:
        nn.init.xavier_uniform_(c.weight)
        nn.init.zeros_(c.bias)
    return nn.Sequential(OrderedDict([
        ("conv1", convs[0]), ("crelu1", nn.ReLU()), ("conv2", convs[1]), ("crelu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
        *_mlp([64 * 16 * 16, 256, 256, 10], linear_init_std),
    ]))


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    if groups == 1:
        return x  # a permutation with no effect; skip the copy
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit: 1x1 (grouped) conv, shuffle, 3x3 depthwise, 1x1 (grouped) conv.

    Stride 1 adds the input (residual); stride 2 concatenates an average-pooled input.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, first_in_net: bool):
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = c_out // 4
        c_branch = c_out - c_in if stride == 2 else c_out
        # ShuffleNet never groups the first 1x1 conv on the 24-channel stem output
        g1 = 1 if first_in_net else groups
        self.conv1 = nn.Conv2d(c_in, mid, 1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_branch, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(c_branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = _channel_shuffle(out, self.groups)
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], dim=1))
        return F.relu(out + x)


def _shufflenet_groups_fit(groups: int, widths) -> bool:
    """Whether grouped 1x1 convolutions with `groups` fit every unit: its bottleneck (width/4) and, in a
    stage's first (stride-2) unit, the branch that adds width - previous width channels (24 after the stem)."""
    previous = (24, *widths[:-1])
    return (isinstance(groups, int) and groups >= 1 and all(w % (4 * groups) == 0 for w in widths)
            and all((w - p) % groups == 0 for w, p in zip(widths, previous)))


class ShuffleNet(nn.Module):
    """CIFAR ShuffleNet v1: 3x3 stem (no max-pool), stages of 4/8/4 units, GAP, linear."""

    def __init__(self, groups: int = 1, widths=(144, 288, 576), units=(4, 8, 4),
                 num_classes: int = 10, linear_init_std: float = LINEAR_INIT_STD):
        super().__init__()
        if not _shufflenet_groups_fit(groups, widths):
            valid = [g for g in range(1, 9) if _shufflenet_groups_fit(g, widths)]
            raise ValueError(f"groups={groups} does not divide ShuffleNet's channels for stage widths {widths} "
                             f"(each width by 4*groups, and each stage's new channels by groups); "
                             f"valid groups up to 8: {valid}")
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        blocks, c_in = [], 24
        for stage, (c_out, n) in enumerate(zip(widths, units)):
            for i in range(n):
                blocks.append(ShuffleUnit(c_in, c_out, 2 if i == 0 else 1, groups, stage == 0 and i == 0))
                c_in = c_out
        self.units = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        _init_linear(self.fc, linear_init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.units(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def shufflenet(groups: int = 1, linear_init_std: float = LINEAR_INIT_STD) -> nn.Module:
    return ShuffleNet(groups=groups, linear_init_std=linear_init_std)


MODELS = {"lenet_300_100": lenet_300_100, "conv2": conv2, "shufflenet": shufflenet}
DATASET_OF = {"lenet_300_100": "mnist", "conv2": "cifar10", "shufflenet": "cifar10"}
NETWORK_LABEL = {"lenet_300_100": "LeNet-300-100", "conv2": "Conv-2", "shufflenet": "ShuffleNet"}
DATASET_LABEL = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
FIGURE_STEM = {"lenet_300_100": "lenet_mnist", "conv2": "conv2_cifar10", "shufflenet": "shufflenet_cifar10"}


def network_title(name: str) -> str:
    """"LeNet-300-100 on MNIST": how figures and sentences name a network."""
    return f"{NETWORK_LABEL[check_model_name(name)]} on {DATASET_LABEL[DATASET_OF[name]]}"


def check_model_name(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown network {name!r}; valid networks are: {', '.join(MODELS)}")
    return name


def build_model(name: str, seed: int | None = None, **options) -> nn.Module:
    """Build network `name`; with `seed`, its initial weights depend on nothing else."""
    fn = MODELS[check_model_name(name)]
    if seed is None:
        return fn(**options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn(**options)


def prunable_weights(model: nn.Module, include_bn: bool = False) -> dict[str, nn.Parameter]:
    """Conv and linear weights (and BN gammas when asked), keyed by parameter name, in order."""
    kinds = (nn.Conv2d, nn.Linear) + ((nn.BatchNorm2d,) if include_bn else ())
    out = {}
    for mod_name, m in model.named_modules():
        if isinstance(m, kinds):
            out[f"{mod_name}.weight"] = m.weight
    return out


def output_layer_name(model: nn.Module) -> str:
    """The classifier: the last nn.Linear in module order."""
    names = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("model has no nn.Linear output layer")
    return names[-1]


def count_prunable(model: nn.Module) -> int:
    return sum(p.numel() for p in prunable_weights(model).values())
