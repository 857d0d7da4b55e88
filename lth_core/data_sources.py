"""Where a dataset's tensors come from: the decoded cache, the raw files in the data root, a download.

`load_tensors(name)` gives MNIST's or CIFAR-10's four tensors (train/test images as uint8
N x C x H x W, labels as int64), read once from the data root (torchvision's official on-disk
layouts, or CIFAR-10 as an ImageFolder tree of JPEG/PNG files), or else downloaded with
torchvision (unless $LTH_DOWNLOAD=0), then cached decoded in `paths.CACHE_DIR` under a lock,
so parallel workers read or download once. Every problem a user can fix is a `DataError`
(`CorruptCacheError` for a damaged cache) saying what was wrong and what to do.
"""
import fcntl
import gzip
import hashlib
import http.client
import os
import pickle
import struct
import sys
import tarfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from lth_core import paths

IMAGE_SHAPE = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
NUM_CLASSES = 10
TENSOR_KEYS = ("train_x", "train_y", "test_x", "test_y")


class DataError(RuntimeError):
    """A dataset could not be found, read or used; the message says what to do."""

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CACHE_FORMAT_VERSION = 1

MNIST_FILES = {  # tensor key -> file name in MNIST/raw, and the IDX dimensionality it must have
    "train_x": ("train-images-idx3-ubyte", 3),
    "train_y": ("train-labels-idx1-ubyte", 1),
    "test_x": ("t10k-images-idx3-ubyte", 3),
    "test_y": ("t10k-labels-idx1-ubyte", 1),
}
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DOWNLOAD_ENV = "LTH_DOWNLOAD"  # 0/false/no/off: never download; unset or 1/true/yes/on: download
DOWNLOAD_ON, DOWNLOAD_OFF = ("", "1", "true", "yes", "on"), ("0", "false", "no", "off")
# what torchvision's download writes under the cache dir: all of it is removed if the download fails
DOWNLOAD_PATHS = {"mnist": ("MNIST",), "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz")}
# the downloaded archives, deleted once extracted (the extracted files are a data-root layout)
DOWNLOAD_ARCHIVES = {"mnist": tuple(f"MNIST/raw/{file_name}.gz" for file_name, _ in MNIST_FILES.values()),
                     "cifar10": ("cifar-10-python.tar.gz",)}
OFFICIAL_SOURCES = {  # where users can fetch the files by hand (torchvision's first mirror)
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (the four *-ubyte.gz files)",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it)",
}
# how torchvision and urllib report a failed, refused, cut-off or corrupt download
DOWNLOAD_ERRORS = (OSError, RuntimeError, EOFError, http.client.HTTPException, tarfile.TarError)
LAYOUTS = {  # shown to the user when nothing is found
    "mnist": [
        "MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte} (each optionally .gz; torchvision's layout)",
    ],
    "cifar10": [
        "cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch} (torchvision's layout)",
        "CIFAR10-jpg/{train,test}/<class>/*.jpg|*.png with the class folders "
        + ", ".join(CIFAR10_CLASSES),
    ],
}


class CorruptCacheError(DataError):
    """The decoded-tensor cache file is unreadable or does not match its checksum."""


def load_tensors(name: str, data_root=None, download: bool | None = None, cache_dir=None) -> dict:
    """The four tensors of dataset `name`: from the cache, else the data root, else a download.

    The cache (`cache_dir/<name>.pt`, default `paths.CACHE_DIR`) always wins, whatever the
    data root holds now; delete it to re-read the raw files. `data_root` defaults to
    `paths.data_root()` ($LTH_DATA_DIR). For CIFAR-10 the official pickles are preferred over
    the ImageFolder tree when both exist, since JPEG copies are lossy. Found in neither, the
    dataset is downloaded with torchvision into `cache_dir`: `download=None` (the default)
    follows $LTH_DOWNLOAD (unset or 1: download, 0: never), True or False override it.
    Processes sharing a cache dir build each cache once: the others wait, then read it.
    """
    cache_dir = Path(paths.CACHE_DIR if cache_dir is None else cache_dir)
    data_root = Path(paths.data_root() if data_root is None else data_root)
    cache_file = cache_dir / f"{name}.pt"
    if not cache_file.exists():
        with _build_lock(cache_file):
            if not cache_file.exists():  # another process may have built it while this one waited
                tensors = _build(name, data_root, cache_dir, download)
                _write_cache(tensors, cache_file)
                return tensors
    return _read_cache(name, cache_file)


def _check_tensors(name: str, tensors: dict, source: str) -> None:
    """Raise DataError unless `tensors` has the structure of dataset `name`.

    Only the structure is checked, not the sample counts, so small test datasets pass.
    """
    c, h, w = IMAGE_SHAPE[name]
    for split in ("train", "test"):
        x, y = tensors[f"{split}_x"], tensors[f"{split}_y"]
        problem = None
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            problem = f"images are {x.dtype} {tuple(x.shape)}, expected uint8 N x {c} x {h} x {w}"
        elif y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
            problem = f"labels are {y.dtype} {tuple(y.shape)}, expected int64 of length {len(x)}"
        elif len(y) == 0:
            problem = "there are no samples"
        elif y.min() < 0 or y.max() >= NUM_CLASSES:
            problem = f"labels span {int(y.min())}..{int(y.max())}, expected 0..{NUM_CLASSES - 1}"
        if problem:
            raise DataError(f"{name} {split} set from {source}: {problem}")


def _build(name: str, data_root: Path, cache_dir: Path, download: bool | None) -> dict:
    """The dataset's checked tensors from the raw files in `data_root`, else from a download."""
    tensors, source = _read_raw(name, data_root), data_root
    if tensors is None:
        why_not = _why_no_download(download)
        if why_not:
            raise DataError(_not_found_message(name, data_root, cache_dir, why_not))
        tensors, source = _download(name, data_root, cache_dir), cache_dir
    _check_tensors(name, tensors, source=str(source))
    return tensors


@contextmanager
def _build_lock(cache_file: Path):
    """Hold an exclusive lock on `cache_file`'s build, so parallel workers read or download once.

    The lock file (`.<name>.pt.lock` beside the cache) is deleted on release; a waiter that then
    holds a lock on the deleted file takes the lock again on the current one.
    """
    lock_file = cache_file.with_name(f".{cache_file.name}.lock")
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with open(lock_file, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when f closes
            if lock_file.exists() and os.path.samestat(os.fstat(f.fileno()), os.stat(lock_file)):
                try:
                    yield
                finally:
                    lock_file.unlink(missing_ok=True)
                return


def _checksum(tensors: dict) -> str:
    """sha256 over every tensor's dtype, shape and bytes, to detect a damaged cache."""
    digest = hashlib.sha256()
    for key in TENSOR_KEYS:
        tensor = tensors[key].contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy())
    return digest.hexdigest()


def _read_cache(name: str, cache_file: Path) -> dict:
    def corrupt(problem: str) -> CorruptCacheError:
        return CorruptCacheError(f"dataset cache {cache_file} is unusable ({problem}); "
                                 "delete it and re-run to rebuild it from the raw data")

    try:
        saved = torch.load(cache_file, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to parse the file means it is damaged
        raise corrupt(f"cannot be read: {type(err).__name__}: {err}") from err
    if not isinstance(saved, dict):
        raise corrupt(f"holds a {type(saved).__name__}, not a dict")
    missing = [key for key in (*TENSOR_KEYS, "checksum", "format_version") if key not in saved]
    if missing:
        raise corrupt(f"missing entries {missing}")
    if saved["format_version"] != CACHE_FORMAT_VERSION:
        raise corrupt(f"format version {saved['format_version']}, "
                      f"this code writes {CACHE_FORMAT_VERSION}")
    tensors = {key: saved[key] for key in TENSOR_KEYS}
    if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise corrupt("an entry is not a tensor")
    try:
        _check_tensors(name, tensors, source=str(cache_file))
    except DataError as err:
        raise corrupt(str(err)) from err
    if _checksum(tensors) != saved["checksum"]:
        raise corrupt("its contents do not match the stored checksum")
    return tensors


def _write_cache(tensors: dict, cache_file: Path) -> None:
    """Save atomically (temp file + rename) so an interrupted run never leaves half a cache."""
    # the process id keeps concurrent writers apart; a plain open keeps the umask's permissions
    tmp_file = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.save({**tensors, "checksum": _checksum(tensors),
                        "format_version": CACHE_FORMAT_VERSION}, tmp_file)
            os.replace(tmp_file, cache_file)
        finally:
            tmp_file.unlink(missing_ok=True)
    except OSError as err:
        # the data is already decoded, so a failed cache only costs time on the next run
        warnings.warn(f"could not write the dataset cache {cache_file} ({err}); "
                      "the next load will decode the raw files again")


def _read_raw(name: str, root: Path) -> dict | None:
    """The dataset's tensors from the first accepted layout under `root`, or None if none exists."""
    if name == "mnist":
        return _read_mnist(root / "MNIST" / "raw")
    if (root / "cifar-10-batches-py").is_dir():
        return _read_cifar10_pickles(root / "cifar-10-batches-py")
    if (root / "CIFAR10-jpg").is_dir():
        return _read_cifar10_folders(root / "CIFAR10-jpg")
    return None


def _read_mnist(raw_dir: Path) -> dict | None:
    files = {}
    for key, (file_name, _) in MNIST_FILES.items():
        plain, gzipped = raw_dir / file_name, raw_dir / f"{file_name}.gz"
        files[key] = plain if plain.exists() else gzipped if gzipped.exists() else None
    if not any(files.values()):
        return None
    missing = [MNIST_FILES[key][0] for key, path in files.items() if path is None]
    if missing:
        raise DataError(f"MNIST in {raw_dir} is incomplete: missing {', '.join(missing)} "
                        "(or its .gz); copy the four original MNIST files there")
    tensors = {key: _read_idx(path, MNIST_FILES[key][1]) for key, path in files.items()}
    for split in ("train", "test"):
        if len(tensors[f"{split}_x"]) != len(tensors[f"{split}_y"]):
            raise DataError(f"{files[f'{split}_x']} holds {len(tensors[f'{split}_x'])} images but "
                            f"{files[f'{split}_y']} holds {len(tensors[f'{split}_y'])} labels; "
                            "replace them with matching original MNIST files")
        tensors[f"{split}_x"] = tensors[f"{split}_x"].unsqueeze(1)
        tensors[f"{split}_y"] = tensors[f"{split}_y"].to(torch.int64)
    return tensors


def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (the MNIST format): magic 0x0000 08 <ndim>, sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path} ({err}); replace it with the original MNIST file") from err
    expected_magic = bytes((0, 0, 0x08, ndim))
    if raw[:4] != expected_magic:
        raise DataError(f"{path} is not an IDX file of {ndim}-D unsigned bytes: magic number "
                        f"{raw[:4].hex()}, expected {expected_magic.hex()}; "
                        "replace it with the original MNIST file")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated inside its header; replace it with the original MNIST file")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected_size = header_size + torch.Size(shape).numel()
    if len(raw) != expected_size:
        raise DataError(f"{path} has {len(raw)} bytes but its header {shape} implies {expected_size}; "
                        "replace it with the original MNIST file")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header_size).reshape(shape)


def _read_cifar10_pickles(batch_dir: Path) -> dict:
    missing = [f for f in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH) if not (batch_dir / f).exists()]
    if missing:
        raise DataError(f"CIFAR-10 in {batch_dir} is incomplete: missing {', '.join(missing)}; "
                        "extract the official cifar-10-python.tar.gz there")
    train = [_read_cifar10_batch(batch_dir / f) for f in CIFAR10_TRAIN_BATCHES]
    test_x, test_y = _read_cifar10_batch(batch_dir / CIFAR10_TEST_BATCH)
    return {"train_x": torch.cat([x for x, _ in train]), "train_y": torch.cat([y for _, y in train]),
            "test_x": test_x, "test_y": test_y}


def _read_cifar10_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One official CIFAR-10 python batch: a pickled dict with b"data" (N x 3072) and b"labels"."""
    try:
        with open(path, "rb") as f:
            # the official batches were pickled by Python 2; "bytes" keeps their str keys as bytes
            batch = pickle.load(f, encoding="bytes")
        data, labels = batch[b"data"], batch[b"labels"]
        images = torch.as_tensor(data)
        labels = torch.as_tensor(labels, dtype=torch.int64)
    except Exception as err:  # unpickling can fail in many ways; all mean a damaged file
        raise DataError(f"cannot read the CIFAR-10 batch {path} ({type(err).__name__}: {err}); "
                        "replace it with the file from the official cifar-10-python.tar.gz") from err
    if images.dtype != torch.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32 \
            or labels.shape != (len(images),):
        raise DataError(f"{path} holds data {images.dtype} {tuple(images.shape)} and "
                        f"{tuple(labels.shape)} labels, expected uint8 N x 3072 and N labels; "
                        "replace it with the file from the official cifar-10-python.tar.gz")
    return images.reshape(-1, 3, 32, 32), labels


def _read_cifar10_folders(root: Path) -> dict:
    missing = [split for split in ("train", "test") if not (root / split).is_dir()]
    if missing:
        raise DataError(f"{root} lacks the {' and '.join(missing)} folder(s); "
                        "it needs train/<class>/ and test/<class>/")
    tensors = {}
    for split in ("train", "test"):
        tensors[f"{split}_x"], tensors[f"{split}_y"] = _read_image_folder(root / split)
    return tensors


def _read_image_folder(split_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of <split_dir>/<class>/*, label = the class's index in CIFAR10_CLASSES."""
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if found != list(CIFAR10_CLASSES):
        missing = sorted(set(CIFAR10_CLASSES) - set(found))
        unexpected = sorted(set(found) - set(CIFAR10_CLASSES))
        raise DataError(f"{split_dir} must hold exactly the CIFAR-10 class folders "
                        f"{', '.join(CIFAR10_CLASSES)}; missing: {missing or 'none'}, "
                        f"unexpected: {unexpected or 'none'}")
    # sorted file names make the sample order, and so every seeded split, reproducible
    files = [(path, label) for label, cls in enumerate(CIFAR10_CLASSES)
             for path in sorted((split_dir / cls).iterdir())
             if path.suffix.lower() in IMAGE_SUFFIXES]
    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(tqdm(files, desc=f"decoding {split_dir}", unit="img")):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError as err:
            raise DataError(f"cannot decode {path} ({err}); replace or remove it") from err
        if pixels.shape[:2] != (32, 32):
            raise DataError(f"{path} is {pixels.shape[:2]} pixels, CIFAR-10 images are 32 x 32")
        images[i] = pixels
    return (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            torch.tensor([label for _, label in files], dtype=torch.int64))


def _why_no_download(download: bool | None) -> str | None:
    """Why downloading is off, for the error message; None when it is allowed."""
    if download is not None:
        return None if download else "load_dataset was called with download=False"
    value = os.environ.get(DOWNLOAD_ENV, "")
    if value.strip().lower() in DOWNLOAD_ON:
        return None
    if value.strip().lower() in DOWNLOAD_OFF:
        return f"{DOWNLOAD_ENV}={value}"
    raise DataError(f"{DOWNLOAD_ENV}={value!r} is not understood: set it to 1 (download missing "
                    "datasets, the default) or 0 (never download)")


def _download(name: str, data_root: Path, cache_dir: Path) -> dict:
    """Fetch the official files with torchvision into `cache_dir`, then read them like a data root.

    torchvision shows a progress bar and checks the archives' md5. The extracted files stay in
    `cache_dir` (a data-root layout), the archives are deleted. Whatever the download created is
    deleted again if it fails or is interrupted, so no partial raw files are left behind.
    """
    import torchvision.datasets  # here, not at the top: it is slow to import and rarely needed

    dataset_class = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    targets = [cache_dir / path for path in DOWNLOAD_PATHS[name]]
    existing = _paths_under(targets)
    print(f"{name} is in neither the cache {cache_dir / f'{name}.pt'} nor the data root {data_root}; "
          f"downloading it with torchvision into {cache_dir} ({DOWNLOAD_ENV}=0 turns this off)",
          file=sys.stderr, flush=True)
    try:
        try:
            dataset_class(root=str(cache_dir), train=True, download=True)
        except DOWNLOAD_ERRORS as err:
            raise DataError(f"downloading {name} into {cache_dir} failed ({type(err).__name__}: "
                            f"{err}); nothing of it was kept. Check the internet connection and "
                            f"retry, or get the data by hand: "
                            + _manual_instructions(name, data_root)) from err
        tensors = _read_raw(name, cache_dir)
        if tensors is None:
            raise DataError(f"torchvision downloaded {name} but none of the layouts "
                            f"{LAYOUTS[name]} appeared in {cache_dir}")
    except BaseException:  # an interruption too: a half-written file must not pass for data
        _remove_new(targets, existing)
        raise
    _remove_new([cache_dir / path for path in DOWNLOAD_ARCHIVES[name]], existing)
    return tensors


def _paths_under(roots: list[Path]) -> set[Path]:
    """Every existing file and folder in `roots`, the roots included."""
    found = set()
    for root in roots:
        if root.exists():
            found.add(root)
            found.update(root.rglob("*"))
    return found


def _remove_new(roots: list[Path], before: set[Path]) -> None:
    """Delete what exists in `roots` now but was not in `before`."""
    # deepest first, so that each folder is empty when its turn comes
    for path in sorted(_paths_under(roots) - before, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()


def _manual_instructions(name: str, data_root: Path) -> str:
    layouts = "\n".join(f"  {data_root}/{layout}" for layout in LAYOUTS[name])
    return (f"set the environment variable LTH_DATA_DIR (or pass data_root=) to a folder holding "
            f"one of these layouts:\n{layouts}\nThe official files are at {OFFICIAL_SOURCES[name]}.")


def _not_found_message(name: str, data_root: Path, cache_dir: Path, why_not: str) -> str:
    return (f"{name} not found: no cache at {cache_dir / f'{name}.pt'} and no raw files in the "
            f"data root {data_root}, and downloading is off ({why_not}). On a machine with "
            f"internet access, unset {DOWNLOAD_ENV} (or set it to 1) or call "
            f"load_dataset({name!r}, download=True) to fetch it with torchvision into {cache_dir}; "
            "or " + _manual_instructions(name, data_root))
