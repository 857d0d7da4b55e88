"""Tests of load_dataset's download: torchvision fetching the official files from a local server.

An http.server on 127.0.0.1 (in a thread) serves files in the official formats: MNIST's four
gzipped IDX files (tiny random ones, and once the real ones from the offline copy) and a
small `cifar-10-python.tar.gz` of Python-2-style pickled batches. torchvision's mirrors, URL
and md5 lists are pointed at them. Covered: downloading by default with progress, exactness,
LTH_DOWNLOAD, cut-off downloads leaving nothing behind, the cache and data root winning over a
download, and parallel loads downloading once.
"""
import gzip
import hashlib
import io
import pickle
import tarfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from lth_core import data, data_sources
from lth_core.data import DataError, load_dataset
from conftest import shared_data_dir


class FileServer(ThreadingHTTPServer):
    """Serves `files` (URL path -> bytes); records every request path; can cut responses off."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.cut: dict[str, str] = {}  # URL path -> "half" (half the body) or "hangup" (no reply)
        self.delay_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FileHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        time.sleep(server.delay_s)
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if server.cut.get(self.path) == "hangup":
            self.close_connection = True  # closes the socket without a status line
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))  # the full length, even when cut
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if server.cut.get(self.path) == "half" else body)

    def log_message(self, *args):  # keeps the test output free of access logs
        pass


@pytest.fixture
def server():
    server = FileServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes((0, 0, 0x08, array.ndim)) + b"".join(n.to_bytes(4, "big") for n in array.shape) \
        + array.astype(np.uint8).tobytes()


def serve_mnist(server: FileServer, monkeypatch, raw: dict) -> None:
    """Serve MNIST's official .gz files of `raw` (file name -> IDX bytes); point torchvision at them.

    gzip's output is not the official bytes, so torchvision's md5 list is set to the served files'.
    """
    resources = []
    for file_name, payload in raw.items():
        served = gzip.compress(payload, compresslevel=1)
        server.files[f"/mnist/{file_name}.gz"] = served
        resources.append((f"{file_name}.gz", md5(served)))
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"{server.url}/mnist/"])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)


@pytest.fixture
def mnist_server(server, monkeypatch):
    """The server holding a tiny MNIST (7 train and 7 test images); returns (server, raw IDX bytes)."""
    raw = {}
    for key, (file_name, ndim) in data_sources.MNIST_FILES.items():
        shape = (7, 28, 28) if ndim == 3 else (7,)
        raw[file_name] = idx_bytes(np.random.default_rng(len(key)).integers(0, 10, shape))
    serve_mnist(server, monkeypatch, raw)
    return server, raw


def py2_pickle(batch: dict) -> bytes:
    """A protocol-2 pickle of a dict whose keys are Python 2 str, like the official batches.

    Such keys load as str with encoding="latin1" (torchvision) and as bytes with
    encoding="bytes" (lth_core), which no pickle of Python 3 str or bytes keys does.
    """
    items = b"".join(b"U" + bytes([len(key)]) + key.encode() + pickle.dumps(value, protocol=2)[2:-1]
                     for key, value in batch.items())  # each value without its PROTO and STOP
    return b"\x80\x02}(" + items + b"u."  # PROTO 2, EMPTY_DICT, MARK, items, SETITEMS, STOP


@pytest.fixture
def cifar_server(server, monkeypatch):
    """The server holding a small cifar-10-python.tar.gz (3 images a batch), torchvision pointed
    at it with the md5s of what it serves. Returns (server, {batch file name: (data, labels)})."""
    rng = np.random.default_rng(3)
    batches, archive = {}, io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        def add(file_name, payload):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{file_name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
            return md5(payload)

        md5s = {}
        for i, file_name in enumerate([*data_sources.CIFAR10_TRAIN_BATCHES, data_sources.CIFAR10_TEST_BATCH]):
            batches[file_name] = (rng.integers(0, 256, (3, 3072), dtype=np.uint8), [i, (i + 3) % 10, 9])
            md5s[file_name] = add(file_name, py2_pickle({"batch_label": file_name, "labels": batches[file_name][1],
                                                         "data": batches[file_name][0]}))
        meta_md5 = add("batches.meta", pickle.dumps({"label_names": list(data_sources.CIFAR10_CLASSES),
                                                     "num_cases_per_batch": 3, "num_vis": 3072}))
    served = archive.getvalue()
    server.files["/cifar/cifar-10-python.tar.gz"] = served
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "url", f"{server.url}/cifar/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "tgz_md5", md5(served))
    monkeypatch.setattr(cifar, "train_list", [[f, md5s[f]] for f in data_sources.CIFAR10_TRAIN_BATCHES])
    monkeypatch.setattr(cifar, "test_list", [[data_sources.CIFAR10_TEST_BATCH, md5s[data_sources.CIFAR10_TEST_BATCH]]])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": meta_md5})
    return server, batches


@pytest.fixture(autouse=True)
def downloads_on(monkeypatch):
    """Each test starts with LTH_DOWNLOAD unset: the default a fresh machine has."""
    monkeypatch.delenv(data_sources.DOWNLOAD_ENV, raising=False)


def load(name: str, tmp_path: Path, **kwargs) -> data.Dataset:
    return load_dataset(name, data_root=tmp_path / "root", cache_dir=tmp_path / "cache", **kwargs)


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---- downloading by default -----------------------------------------------------------------

def test_mnist_downloads_by_default_with_progress(tmp_path, mnist_server, capfd):
    server, raw = mnist_server
    ds = load("mnist", tmp_path)
    err = capfd.readouterr().err
    assert "downloading it with torchvision into" in err and "LTH_DOWNLOAD=0 turns this off" in err
    assert "100%" in err  # torchvision's progress bar reached the end
    for key, (file_name, ndim) in data_sources.MNIST_FILES.items():
        expected = np.frombuffer(raw[file_name], np.uint8, offset=4 + 4 * ndim)
        assert np.array_equal(getattr(ds, key).numpy().ravel(), expected), key
    assert {f"/mnist/{f}.gz" for f in raw} <= set(server.requests)
    # the cache and the extracted files are kept; the archives and the lock file are not
    assert files_in(tmp_path / "cache") == sorted(["MNIST", "MNIST/raw", "mnist.pt",
                                                   *(f"MNIST/raw/{f}" for f in raw)])


@pytest.mark.skipif(shared_data_dir() is None, reason="offline MNIST not found (set LTH_DATA_DIR)")
def test_downloaded_mnist_equals_the_offline_copy(tmp_path, server, monkeypatch):
    raw_dir = shared_data_dir() / "MNIST" / "raw"
    serve_mnist(server, monkeypatch, {f: (raw_dir / f).read_bytes() for f, _ in data_sources.MNIST_FILES.values()})
    downloaded = load("mnist", tmp_path)
    local = load_dataset("mnist", data_root=shared_data_dir(), cache_dir=tmp_path / "local_cache")
    for key in data_sources.TENSOR_KEYS:
        assert torch.equal(getattr(downloaded, key), getattr(local, key)), key
    assert len(downloaded.train_y) == 60000


def test_cifar10_downloads_by_default(tmp_path, cifar_server):
    server, batches = cifar_server
    ds = load("cifar10", tmp_path)
    train = [batches[f] for f in data_sources.CIFAR10_TRAIN_BATCHES]
    assert np.array_equal(ds.train_x.numpy().reshape(15, 3072), np.concatenate([x for x, _ in train]))
    assert ds.train_y.tolist() == sum((labels for _, labels in train), [])
    assert np.array_equal(ds.test_x.numpy().reshape(3, 3072), batches["test_batch"][0])
    assert ds.test_y.tolist() == batches["test_batch"][1]
    assert "/cifar/cifar-10-python.tar.gz" in server.requests
    assert "cifar-10-python.tar.gz" not in files_in(tmp_path / "cache")
    assert "cifar-10-batches-py/test_batch" in files_in(tmp_path / "cache")


# ---- failed downloads -------------------------------------------------------------------------

@pytest.mark.parametrize("cut", ["half", "hangup"])
def test_cut_off_mnist_download_leaves_nothing_behind(tmp_path, mnist_server, cut):
    server, _ = mnist_server
    # the third file fails, after two were downloaded and extracted: they must go too
    server.cut["/mnist/t10k-images-idx3-ubyte.gz"] = cut
    with pytest.raises(DataError, match="downloading mnist into .* failed") as error:
        load("mnist", tmp_path)
    message = str(error.value)
    assert "nothing of it was kept" in message and "LTH_DATA_DIR" in message
    assert "ossci-datasets" in message  # where to get the files by hand
    assert files_in(tmp_path / "cache") == []
    server.cut.clear()  # the next try starts clean and succeeds
    assert len(load("mnist", tmp_path).test_y) > 0


@pytest.mark.parametrize("cut", ["half", "hangup"])
def test_cut_off_cifar10_download_leaves_nothing_behind(tmp_path, cifar_server, cut):
    server, _ = cifar_server
    server.cut["/cifar/cifar-10-python.tar.gz"] = cut
    with pytest.raises(DataError, match="downloading cifar10 into .* failed") as error:
        load("cifar10", tmp_path)
    assert "cifar-10-python.tar.gz" in str(error.value)
    assert files_in(tmp_path / "cache") == []


def test_interrupted_download_leaves_nothing_behind(tmp_path, mnist_server, monkeypatch):
    real_urlretrieve = torchvision.datasets.utils._urlretrieve
    fetched = []

    def interrupt_on_third_file(url, filename, *args):
        fetched.append(url)
        if len(fetched) == 3:
            raise KeyboardInterrupt  # Ctrl-C in a notebook, mid-download
        real_urlretrieve(url, filename, *args)

    monkeypatch.setattr(torchvision.datasets.utils, "_urlretrieve", interrupt_on_third_file)
    with pytest.raises(KeyboardInterrupt):
        load("mnist", tmp_path)
    assert files_in(tmp_path / "cache") == []


# ---- turning downloads off --------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_lth_download_0_turns_downloading_off(tmp_path, mnist_server, monkeypatch, value):
    server, _ = mnist_server
    monkeypatch.setenv("LTH_DOWNLOAD", value)
    with pytest.raises(DataError, match=f"downloading is off \\(LTH_DOWNLOAD={value}\\)") as error:
        load("mnist", tmp_path)
    message = str(error.value)
    assert "unset LTH_DOWNLOAD" in message and "download=True" in message
    assert "LTH_DATA_DIR" in message and str(tmp_path / "root") in message
    assert server.requests == [] and files_in(tmp_path / "cache") == []
    assert len(load("mnist", tmp_path, download=True).train_y) > 0  # the argument wins


def test_download_false_argument_wins_over_the_environment(tmp_path, mnist_server, monkeypatch):
    monkeypatch.setenv("LTH_DOWNLOAD", "1")
    with pytest.raises(DataError, match="called with download=False"):
        load("mnist", tmp_path, download=False)
    assert mnist_server[0].requests == []


def test_unknown_lth_download_value_is_reported(tmp_path, mnist_server, monkeypatch):
    monkeypatch.setenv("LTH_DOWNLOAD", "maybe")
    with pytest.raises(DataError, match="LTH_DOWNLOAD='maybe' is not understood"):
        load("mnist", tmp_path)
    assert mnist_server[0].requests == []


# ---- what wins over a download ------------------------------------------------------------------

def test_data_root_is_read_instead_of_downloading(tmp_path, mnist_server):
    server, raw = mnist_server
    raw_dir = tmp_path / "root" / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for file_name, payload in raw.items():
        (raw_dir / file_name).write_bytes(payload)
    assert len(load("mnist", tmp_path).train_y) > 0
    assert server.requests == []


def test_cache_wins_over_downloading(tmp_path, mnist_server):
    server, _ = mnist_server
    first = load("mnist", tmp_path)
    for raw_file in (tmp_path / "cache" / "MNIST" / "raw").iterdir():
        raw_file.unlink()
    server.requests.clear()
    second = load("mnist", tmp_path)
    assert server.requests == []
    assert torch.equal(first.train_x, second.train_x)


def test_parallel_loads_download_once(tmp_path, mnist_server):
    server, _ = mnist_server
    load_dataset("mnist", data_root=tmp_path / "root", cache_dir=tmp_path / "alone")
    requests_of_one_download = Counter(server.requests)
    server.requests.clear()
    server.delay_s = 0.2  # keeps the first download going while the second load starts
    results = [None, None]

    def load_into(i):
        results[i] = load("mnist", tmp_path)

    threads = [threading.Thread(target=load_into, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(server.requests) == requests_of_one_download
    assert torch.equal(results[0].train_x, results[1].train_x)
    assert files_in(tmp_path / "cache").count("mnist.pt") == 1
