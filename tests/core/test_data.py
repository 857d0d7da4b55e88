"""Tests of lth_core.data: readers of every accepted layout, the cache, Dataset and the splits.

Most tests write tiny datasets in the official formats into tmp_path, so they run anywhere.
The real-data tests read LTH_DATA_DIR (default: the shared offline copy next to the repo)
into a tmp cache and skip when it is absent.
"""
import gzip
import os
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from lth_core import data, data_sources, paths

from lth_core.data import DataError, load_dataset
from lth_core.data_sources import CorruptCacheError

REAL_DATA = Path(os.environ.get("LTH_DATA_DIR", paths.REPO_ROOT.parent / "shared" / "data"))


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def make_mnist(root: Path, gz: bool = False, n_train: int = 6, n_test: int = 4) -> dict:
    """Tiny MNIST in root/MNIST/raw; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": np.arange(n_train, dtype=np.uint8) % 10,
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, (file_name, _) in data_sources.MNIST_FILES.items():
        write_idx(raw / file_name, arrays[key], gz)
    return arrays


def make_cifar_pickles(root: Path) -> dict:
    """Tiny official-format CIFAR-10 batches (2 images each); returns the arrays written."""
    rng = np.random.default_rng(1)
    batch_dir = root / "cifar-10-batches-py"
    batch_dir.mkdir(parents=True)
    written = {}
    for i, file_name in enumerate([*data_sources.CIFAR10_TRAIN_BATCHES, data_sources.CIFAR10_TEST_BATCH]):
        images = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = [(2 * i) % 10, (2 * i + 1) % 10]
        with open(batch_dir / file_name, "wb") as f:
            pickle.dump({b"data": images, b"labels": labels, b"batch_label": file_name.encode()},
                        f, protocol=2)
        written[file_name] = (images, labels)
    return written


def make_cifar_folder(root: Path, per_class: int = 2, size: int = 32) -> dict:
    """Tiny CIFAR10-jpg tree of PNGs (lossless); returns {(split, class, file name): HWC array}."""
    rng = np.random.default_rng(2)
    written = {}
    for split in ("train", "test"):
        for cls in data_sources.CIFAR10_CLASSES:
            folder = root / "CIFAR10-jpg" / split / cls
            folder.mkdir(parents=True)
            for j in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{j:04d}.png")
                written[split, cls, f"{j:04d}.png"] = pixels
    return written


def load_tiny(name: str, tmp_path: Path, **kwargs) -> data.Dataset:
    return load_dataset(name, data_root=tmp_path / "root", cache_dir=tmp_path / "cache", **kwargs)


# ---- readers of each layout ---------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_is_read_exactly(tmp_path, gz):
    arrays = make_mnist(tmp_path / "root", gz=gz)
    ds = load_tiny("mnist", tmp_path)
    assert ds.train_x.shape == (6, 1, 28, 28) and ds.test_x.shape == (4, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    for key, array in arrays.items():
        assert np.array_equal(getattr(ds, key).numpy().reshape(array.shape), array), key


def test_cifar_pickles_are_read_exactly_in_batch_order(tmp_path):
    written = make_cifar_pickles(tmp_path / "root")
    ds = load_tiny("cifar10", tmp_path)
    assert ds.train_x.shape == (10, 3, 32, 32) and ds.test_x.shape == (2, 3, 32, 32)
    train_images = np.concatenate([written[f][0] for f in data_sources.CIFAR10_TRAIN_BATCHES])
    train_labels = sum((written[f][1] for f in data_sources.CIFAR10_TRAIN_BATCHES), [])
    assert np.array_equal(ds.train_x.numpy().reshape(10, 3072), train_images)
    assert ds.train_y.tolist() == train_labels
    # a row of b"data" is 1024 red, then green, then blue values of a row-major 32x32 image
    assert ds.test_x[1, 2, 0, 1] == written["test_batch"][0][1, 2048 + 1]
    assert ds.test_y.tolist() == written["test_batch"][1]


def test_cifar_image_folder_labels_follow_class_order(tmp_path):
    written = make_cifar_folder(tmp_path / "root")
    ds = load_tiny("cifar10", tmp_path)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_y.tolist() == [label for label in range(10) for _ in range(2)]
    # row 2k+j is class k's file j (sorted names); PNG is lossless, so pixels are exact
    for (split, cls, file_name), pixels in written.items():
        row = 2 * data_sources.CIFAR10_CLASSES.index(cls) + int(file_name[:4])
        x = ds.train_x if split == "train" else ds.test_x
        assert np.array_equal(x[row].permute(1, 2, 0).numpy(), pixels), (split, cls, file_name)


def test_cifar_image_folder_accepts_jpeg_and_grey_images(tmp_path):
    make_cifar_folder(tmp_path / "root", per_class=1)
    folder = tmp_path / "root" / "CIFAR10-jpg" / "train" / "truck"
    Image.new("RGB", (32, 32), (200, 100, 50)).save(folder / "0001.jpg", quality=95)
    Image.new("L", (32, 32), 77).save(folder / "0002.png")
    ds = load_tiny("cifar10", tmp_path)
    assert ds.train_y.tolist() == list(range(10)) + [9, 9]
    colour = ds.train_x[-2].flatten(1).float().mean(1)
    assert torch.allclose(colour, torch.tensor([200.0, 100.0, 50.0]), atol=3)
    assert (ds.train_x[-1] == 77).all()


def test_cifar_pickles_win_over_image_folder(tmp_path):
    written = make_cifar_pickles(tmp_path / "root")
    make_cifar_folder(tmp_path / "root", per_class=1)
    ds = load_tiny("cifar10", tmp_path)
    assert ds.test_y.tolist() == written["test_batch"][1]


# ---- damaged or incomplete raw data ---------------------------------------------------------

def test_bad_idx_magic_is_reported(tmp_path):
    make_mnist(tmp_path / "root")
    labels = tmp_path / "root" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*magic number 00000803"):
        load_tiny("mnist", tmp_path)


def test_truncated_idx_is_reported(tmp_path):
    make_mnist(tmp_path / "root")
    images = tmp_path / "root" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte has .* bytes but its header"):
        load_tiny("mnist", tmp_path)


def test_idx_image_and_label_counts_must_match(tmp_path):
    make_mnist(tmp_path / "root")
    write_idx(tmp_path / "root" / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels"):
        load_tiny("mnist", tmp_path)


def test_incomplete_mnist_names_the_missing_file(tmp_path):
    make_mnist(tmp_path / "root")
    (tmp_path / "root" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="incomplete: missing t10k-images-idx3-ubyte"):
        load_tiny("mnist", tmp_path)


def test_incomplete_cifar_pickles_name_the_missing_file(tmp_path):
    make_cifar_pickles(tmp_path / "root")
    (tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_tiny("cifar10", tmp_path)


def test_garbage_cifar_pickle_is_reported(tmp_path):
    make_cifar_pickles(tmp_path / "root")
    (tmp_path / "root" / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read the CIFAR-10 batch .*test_batch"):
        load_tiny("cifar10", tmp_path)


def test_wrong_class_folders_are_named(tmp_path):
    make_cifar_folder(tmp_path / "root", per_class=1)
    train = tmp_path / "root" / "CIFAR10-jpg" / "train"
    (train / "airplane").rename(train / "plane")
    with pytest.raises(DataError, match=r"missing: \['airplane'\], unexpected: \['plane'\]"):
        load_tiny("cifar10", tmp_path)


def test_wrong_image_size_is_reported(tmp_path):
    make_cifar_folder(tmp_path / "root", per_class=1)
    Image.new("RGB", (28, 28)).save(tmp_path / "root" / "CIFAR10-jpg" / "test" / "cat" / "0000.png")
    with pytest.raises(DataError, match=r"cat/0000.png is \(28, 28\) pixels"):
        load_tiny("cifar10", tmp_path)


# ---- finding the data -----------------------------------------------------------------------

def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; valid names: mnist, cifar10"):
        load_dataset("imagenet", cache_dir=tmp_path)


@pytest.mark.parametrize("name", data.DATASETS)
def test_nothing_found_explains_where_to_put_the_data(tmp_path, name):
    with pytest.raises(DataError) as error:
        load_tiny(name, tmp_path)
    message = str(error.value)
    assert str(tmp_path / "root") in message and "LTH_DATA_DIR" in message
    assert "download=True" in message
    for layout in data_sources.LAYOUTS[name]:
        assert layout in message
    assert not (tmp_path / "cache" / f"{name}.pt").exists()


def test_default_data_root_is_lth_data_dir(tmp_path, monkeypatch):
    make_mnist(tmp_path / "env_root")
    monkeypatch.setenv("LTH_DATA_DIR", str(tmp_path / "env_root"))
    assert len(load_dataset("mnist", cache_dir=tmp_path / "cache").train_y) == 6


def test_download_fetches_with_torchvision_into_the_cache_dir(tmp_path, monkeypatch):
    calls = []

    class FakeMNIST:  # stands in for the network: writes what torchvision would
        def __init__(self, root, train, download):
            calls.append((Path(root), download))
            make_mnist(Path(root))

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    ds = load_tiny("mnist", tmp_path, download=True)
    assert calls == [(tmp_path / "cache", True)]
    assert len(ds.train_y) == 6 and (tmp_path / "cache" / "mnist.pt").exists()


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    class OfflineCIFAR10:
        def __init__(self, root, train, download):
            raise OSError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(DataError, match="downloading cifar10 .* failed .*Network is unreachable"):
        load_tiny("cifar10", tmp_path, download=True)


# ---- the cache ------------------------------------------------------------------------------

def test_second_load_reads_the_cache(tmp_path):
    make_mnist(tmp_path / "root")
    first = load_tiny("mnist", tmp_path)
    cache_file = tmp_path / "cache" / "mnist.pt"
    assert cache_file.exists()
    assert [p.name for p in cache_file.parent.iterdir()] == ["mnist.pt"]  # no temp file left
    for raw_file in (tmp_path / "root" / "MNIST" / "raw").iterdir():
        raw_file.unlink()
    second = load_tiny("mnist", tmp_path)
    for key in data_sources.TENSOR_KEYS:
        assert torch.equal(getattr(first, key), getattr(second, key)), key


@pytest.fixture
def mnist_cache(tmp_path) -> Path:
    make_mnist(tmp_path / "root")
    load_tiny("mnist", tmp_path)
    return tmp_path / "cache" / "mnist.pt"


def assert_corrupt_cache_error(tmp_path, cache_file, match):
    with pytest.raises(CorruptCacheError, match=match) as error:
        load_tiny("mnist", tmp_path)
    assert str(cache_file) in str(error.value)
    assert "delete it and re-run" in str(error.value)


def test_truncated_cache_is_reported(tmp_path, mnist_cache):
    mnist_cache.write_bytes(mnist_cache.read_bytes()[:1000])
    assert_corrupt_cache_error(tmp_path, mnist_cache, "cannot be read")


def test_flipped_byte_in_cache_is_reported(tmp_path, mnist_cache):
    contents = bytearray(mnist_cache.read_bytes())
    pixels = load_tiny("mnist", tmp_path).train_x.numpy().tobytes()
    position = contents.find(pixels) + len(pixels) // 2  # inside the stored train images
    contents[position] ^= 0xFF
    mnist_cache.write_bytes(bytes(contents))
    # torch may notice the damage itself (zip CRC) or load it, leaving it to the checksum
    assert_corrupt_cache_error(tmp_path, mnist_cache, "cannot be read|do not match the stored checksum")


def test_cache_with_wrong_checksum_is_reported(tmp_path, mnist_cache):
    saved = torch.load(mnist_cache, weights_only=True)
    saved["test_y"][0] = (saved["test_y"][0] + 1) % 10
    torch.save(saved, mnist_cache)
    assert_corrupt_cache_error(tmp_path, mnist_cache, "do not match the stored checksum")


@pytest.mark.parametrize("edit, match", [
    (lambda saved: saved.pop("train_y"), r"missing entries \['train_y'\]"),
    (lambda saved: saved.update(format_version=0), "format version 0"),
    (lambda saved: saved.update(test_x=saved["test_x"][:, :, :14]), r"expected uint8 N x 1 x 28 x 28"),
    (lambda saved: saved.update(train_y=saved["train_y"] + 10), r"labels span 10\.\.15"),
])
def test_cache_with_wrong_contents_is_reported(tmp_path, mnist_cache, edit, match):
    saved = torch.load(mnist_cache, weights_only=True)
    edit(saved)
    torch.save(saved, mnist_cache)
    assert_corrupt_cache_error(tmp_path, mnist_cache, match)


# ---- Dataset --------------------------------------------------------------------------------

@pytest.fixture
def tiny_cifar(tmp_path) -> data.Dataset:
    make_cifar_pickles(tmp_path / "root")
    return load_tiny("cifar10", tmp_path)


def test_normalize_is_per_channel_standardisation(tiny_cifar):
    x = tiny_cifar.normalize(tiny_cifar.train_x)
    assert x.dtype == torch.float32 and x.shape == tiny_cifar.train_x.shape
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in data.MEAN_STD["cifar10"])
    assert torch.allclose(x, (tiny_cifar.train_x / 255 - mean) / std, atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1  # CIFAR's mean/std 0.5 map [0, 255] onto [-1, 1]
    assert torch.equal(tiny_cifar.normalize(tiny_cifar.train_x[0]), x[0])  # a single image too
    with pytest.raises(DataError, match="expects uint8"):
        tiny_cifar.normalize(x)


def test_batches_cover_the_requested_rows_in_order(tiny_cifar):
    idx = torch.tensor([7, 2, 9, 0, 4])
    x, y = tiny_cifar.train_batch(idx)
    assert torch.equal(x, tiny_cifar.normalize(tiny_cifar.train_x[idx]))
    assert torch.equal(y, tiny_cifar.train_y[idx])
    batches = list(tiny_cifar.train_batches(idx, batch_size=2))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    assert torch.equal(torch.cat([x for x, _ in batches]), x)
    assert torch.equal(torch.cat([y for _, y in batches]), y)
    test_batches = list(tiny_cifar.test_batches(batch_size=1))
    assert torch.equal(torch.cat([y for _, y in test_batches]), tiny_cifar.test_y)
    with pytest.raises(DataError, match="batch_size must be positive"):
        next(tiny_cifar.test_batches(batch_size=0))


def test_to_moves_every_tensor(tiny_cifar):
    moved = tiny_cifar.to("meta")  # a device that exists on every machine
    assert moved.device == torch.device("meta") and tiny_cifar.device == torch.device("cpu")
    assert all(getattr(moved, key).is_meta for key in data_sources.TENSOR_KEYS)
    assert moved.name == "cifar10"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dataset_on_gpu_matches_cpu(tiny_cifar):
    gpu = tiny_cifar.to("cuda")
    x, y = gpu.train_batch(torch.tensor([3, 1]))  # CPU indices into GPU data
    assert x.is_cuda and y.is_cuda
    assert torch.allclose(x.cpu(), tiny_cifar.train_batch(torch.tensor([3, 1]))[0])


# ---- splits ---------------------------------------------------------------------------------

def test_validation_split_is_a_seeded_partition():
    train_idx, val_idx = data.validation_split(100, n_val=20, seed=3)
    assert len(train_idx) == 80 and len(val_idx) == 20
    assert train_idx.dtype == val_idx.dtype == torch.int64
    assert sorted(torch.cat([train_idx, val_idx]).tolist()) == list(range(100))
    again = data.validation_split(100, n_val=20, seed=3)
    assert torch.equal(train_idx, again[0]) and torch.equal(val_idx, again[1])
    assert not torch.equal(val_idx, data.validation_split(100, n_val=20, seed=4)[1])


@pytest.mark.parametrize("n_train, n_val", [(100, 100), (100, 150), (100, -1), (0, 0)])
def test_validation_split_rejects_impossible_sizes(n_train, n_val):
    with pytest.raises(DataError, match="must be"):
        data.validation_split(n_train, n_val)


def test_split_halves_are_disjoint_and_cover():
    indices = torch.arange(100, 111)
    first, second = data.split_halves(indices, seed=0)
    assert len(first) == 5 and len(second) == 6
    assert sorted(torch.cat([first, second]).tolist()) == indices.tolist()
    assert torch.equal(first, data.split_halves(indices, seed=0)[0])
    assert not torch.equal(first, data.split_halves(indices, seed=1)[0])


def test_random_subset_is_a_seeded_subset():
    indices = torch.randperm(200, generator=torch.Generator().manual_seed(9)) + 1000
    subset = data.random_subset(indices, 25, seed=0)
    assert len(subset) == 50 and len(set(subset.tolist())) == 50
    assert set(subset.tolist()) <= set(indices.tolist())
    assert torch.equal(subset, data.random_subset(indices, 25, seed=0))
    assert not torch.equal(subset, data.random_subset(indices, 25, seed=1))
    assert len(data.random_subset(indices[:10], 33.3, seed=0)) == 3  # round(3.33)
    assert torch.equal(data.random_subset(indices, 100, seed=5), indices)


@pytest.mark.parametrize("percent", [0, 150, -5, -50])  # its range is IMPConfig.subset_percent's; rows are known here
def test_random_subset_rejects_a_percent_that_leaves_no_subset(percent):
    with pytest.raises(DataError, match=r"rounds to -?\d+ rows; a subset holds 1 to 10 of them"):
        data.random_subset(torch.arange(10), percent, seed=0)


def test_random_subset_rejects_empty_result_and_bad_indices():
    with pytest.raises(DataError, match="rounds to 0 rows"):
        data.random_subset(torch.arange(10), 1, seed=0)
    with pytest.raises(DataError, match="1-D integer tensor"):
        data.random_subset(torch.zeros(10), 50, seed=0)


# ---- the real datasets ----------------------------------------------------------------------

@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(),
                    reason=f"real MNIST not found in {REAL_DATA} (set LTH_DATA_DIR)")
def test_real_mnist(tmp_path):
    ds = load_dataset("mnist", data_root=REAL_DATA, cache_dir=tmp_path)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's well-known start
    assert torch.bincount(ds.train_y).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                   5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(ds.test_y).tolist() == [980, 1135, 1032, 1010, 982,
                                                  892, 958, 1028, 974, 1009]
    reference = torchvision.datasets.MNIST(REAL_DATA, train=False)  # torchvision's own parser
    assert torch.equal(ds.test_x[:, 0], reference.data)
    assert torch.equal(ds.test_y, reference.targets)
    x = ds.normalize(ds.train_x)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3


@pytest.mark.skipif(not (REAL_DATA / "CIFAR10-jpg").is_dir(),
                    reason=f"real CIFAR10-jpg not found in {REAL_DATA} (set LTH_DATA_DIR)")
def test_real_cifar10_jpegs(tmp_path):
    ds = load_dataset("cifar10", data_root=REAL_DATA, cache_dir=tmp_path)
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [5000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.train_y[0] == 0 and ds.train_y[5000] == 1  # class-sorted: airplane, then automobile
    # rows follow class, then sorted file name; pixels are stored channels-first
    for row, file in [(0, "train/airplane/0000.jpg"), (49999, "train/truck/4999.jpg")]:
        pixels = np.array(Image.open(REAL_DATA / "CIFAR10-jpg" / file).convert("RGB"))
        assert np.array_equal(ds.train_x[row].permute(1, 2, 0).numpy(), pixels), file
    start = time.perf_counter()
    cached = load_dataset("cifar10", data_root=REAL_DATA, cache_dir=tmp_path)
    assert time.perf_counter() - start < 5
    assert torch.equal(cached.train_x, ds.train_x)
