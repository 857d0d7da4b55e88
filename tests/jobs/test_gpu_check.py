"""The GPU check's data pack (the check itself needs a GPU: it is run on a lent one, see README)."""
import pytest

from lth_core.gpu_check import pack_jpeg_folder, unpack_jpeg_folder


def test_pack_round_trip_is_byte_exact(tmp_path):
    root = tmp_path / "CIFAR10-jpg"
    files = {"train/cat/0000.jpg": b"\xff\xd8one", "train/dog/0001.jpg": b"", "test/cat/0002.jpg": bytes(range(256))}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    pack = pack_jpeg_folder(root, tmp_path / "pack.npz")
    out = unpack_jpeg_folder(pack, tmp_path / "unpacked")
    assert out.name == "CIFAR10-jpg"
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no files"):
        pack_jpeg_folder(tmp_path, tmp_path / "pack.npz")
