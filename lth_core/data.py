"""Datasets as whole uint8 tensors, their normalisation, and seeded index splits.

Inside:
- `load_dataset(name)`: MNIST or CIFAR-10 as a `Dataset` of four tensors (train/test images
  as uint8 N x C x H x W, labels as int64), from where `data_sources.py` finds them (the
  decoded cache, the data root, a download).
- `Dataset`: the tensors plus `normalize` and batch iterators that yield normalised float
  batches, so training code never touches uint8 pixels.
- `validation_split`, `split_halves`, `random_subset`: index selections that depend only on
  a seed (drawn with a CPU generator, so they are the same on every device).
- `DataError` (defined in `data_sources.py`): every data problem a user can fix, with a message
  saying what was wrong and what to do.

Whole datasets fit in memory (CIFAR-10 is 184 MB as uint8), so batches are plain tensor
indexing, with no DataLoader workers to compete for the few CPU cores.
"""
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch

from lth_core import data_sources
from lth_core.data_sources import TENSOR_KEYS, DataError

DATASETS = ("mnist", "cifar10")
MEAN_STD = {"mnist": ((0.1307,), (0.3081,)), "cifar10": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000}  # official training-set rows
TEST_SIZE = {"mnist": 10_000, "cifar10": 10_000}  # official test-set rows


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One dataset's train and test tensors (uint8 images, int64 labels) on one device."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    # (x/255 - mean)/std folded into one multiply-add, built once on the data's device
    _scale: torch.Tensor = field(init=False)
    _shift: torch.Tensor = field(init=False)

    def __post_init__(self):
        _check_name(self.name)
        mean, std = (torch.tensor(v, dtype=torch.float32, device=self.device).view(-1, 1, 1)
                     for v in MEAN_STD[self.name])
        object.__setattr__(self, "_scale", 1.0 / (255.0 * std))
        object.__setattr__(self, "_shift", -mean / std)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.train_x.shape)}, "
                f"test={tuple(self.test_x.shape)}, device={self.device})")

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def to(self, device) -> "Dataset":
        """The same data with all four tensors on `device`."""
        return replace(self, **{key: getattr(self, key).to(device) for key in TENSOR_KEYS})

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """float32 (x/255 - mean)/std per channel, on x's device; x is (N x) C x H x W uint8."""
        if x_uint8.dtype != torch.uint8:
            raise DataError(f"normalize expects uint8 pixels, got {x_uint8.dtype}; "
                            "pass the raw dataset tensors, not already normalised ones")
        scale, shift = self._scale.to(x_uint8.device), self._shift.to(x_uint8.device)
        return x_uint8.to(torch.float32).mul_(scale).add_(shift)

    def train_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images and labels of training rows `idx`."""
        idx = idx.to(self.device)
        # index_select is far faster than advanced indexing for a small batch on CPU (docs/decisions.md)
        return self.normalize(self.train_x.index_select(0, idx)), self.train_y.index_select(0, idx)

    def train_batches(self, idx: torch.Tensor, batch_size: int = 1000
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of (normalised images, labels) over training rows `idx`, in that order."""
        _check_batch_size(batch_size)
        for chunk in idx.split(batch_size):
            yield self.train_batch(chunk)

    def test_batches(self, batch_size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of (normalised images, labels) over the whole test set, in order."""
        _check_batch_size(batch_size)
        for start in range(0, len(self.test_y), batch_size):
            rows = slice(start, start + batch_size)
            yield self.normalize(self.test_x[rows]), self.test_y[rows]

def load_dataset(name: str, device="cpu", data_root=None, download: bool | None = None,
                 cache_dir=None) -> Dataset:
    """Dataset `name` on `device`: from the cache, else the data root, else a download
    (`data_sources.load_tensors`, where the arguments are explained)."""
    _check_name(name)
    return Dataset(name, **data_sources.load_tensors(name, data_root, download, cache_dir)).to(device)


def validation_split(n_train: int, n_val: int = 5000, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx): a seeded permutation of range(n_train), its first n_val rows held out."""
    if n_train < 1:
        raise DataError(f"n_train must be positive, got {n_train}")
    if not 0 <= n_val < n_train:
        raise DataError(f"n_val must be in [0, n_train={n_train}) so that some training rows "
                        f"remain, got {n_val}")
    perm = torch.randperm(n_train, generator=_generator(seed))
    return perm[n_val:], perm[:n_val]


def split_halves(indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`indices` shuffled with `seed` and cut into two disjoint halves (sizes floor, ceil of n/2)."""
    _check_indices(indices)
    perm = torch.randperm(len(indices), generator=_generator(seed)).to(indices.device)
    shuffled = indices[perm]
    half = len(indices) // 2
    return shuffled[:half], shuffled[half:]


def random_subset(indices: torch.Tensor, percent: float, seed: int) -> torch.Tensor:
    """round(percent/100 * n) of `indices` chosen with `seed`, kept in their input order."""
    _check_indices(indices)
    # the percent's own range is its config field's (IMPConfig.subset_percent); what it leaves of these rows
    # is known only here: past 100% (or below 0) randperm's slice would quietly return other sizes
    size = round(percent / 100 * len(indices))
    if not 1 <= size <= len(indices):
        raise DataError(f"{percent}% of {len(indices)} indices rounds to {size} rows; a subset holds "
                        f"1 to {len(indices)} of them")
    chosen = torch.randperm(len(indices), generator=_generator(seed))[:size]
    # sorting the chosen positions makes 100% return `indices` unchanged
    return indices[chosen.sort().values.to(indices.device)]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")


def _check_indices(indices: torch.Tensor) -> None:
    if not isinstance(indices, torch.Tensor) or indices.ndim != 1 or indices.is_floating_point():
        raise DataError("indices must be a 1-D integer tensor, got "
                        + (f"{indices.dtype} of shape {tuple(indices.shape)}"
                           if isinstance(indices, torch.Tensor) else type(indices).__name__))
