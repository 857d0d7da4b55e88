"""The GPU check's data pack (the check itself needs a GPU: it is run on a lent one, see README)."""
import pytest

from lth_core.programs.gpu_check import pack_jpeg_folder, unpack_jpeg_folder


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


def test_figure1_is_not_started_when_the_benchmark_says_round_0_cannot_end_in_time():
    import time
    from lth_core.programs.gpu_check import figure1_conv2, first_round_seconds
    from lth_core.runs.experiment import grid
    from lth_core.studies.unseen import unseen_config
    configs = grid(unseen_config("conv2", rounds=20), seeds=[0, 1, 2])
    rows = [{"network": "conv2", "device": "cuda:0", "K": k, "fused ms/model-step": 2.0, "graphed ms/model-step": 1.0}
            for k in (1, 4, 8)]
    # round 0: a finding run and a retraining per seed, 6 trainings, so the K=4 figure, at 30,000 iterations
    need = first_round_seconds(rows, configs)
    assert need in (pytest.approx(6 * 30_000 * 2.0 / 1000), pytest.approx(6 * 30_000 * 1.0 / 1000))
    assert first_round_seconds([{"network": "lenet_300_100", "K": 1}], configs) is None
    out = figure1_conv2(time.time() + 60, rows)
    assert "round 0 needs about" in out["skipped"]


@pytest.mark.parametrize("choice", ["deterministic, autotuned", "any algorithm, autotuned"])
def test_a_cudnn_choice_holds_while_training_selects_its_numerics_and_is_undone_after(choice):
    import torch
    from lth_core import training
    from lth_core.programs.gpu_check import CUDNN_CHOICES, cudnn_choice
    cudnn = torch.backends.cudnn
    with cudnn_choice(choice):
        training.select_numerics("cuda")  # what train() and the fused trainer call first on a GPU
        assert (cudnn.deterministic, cudnn.benchmark) == CUDNN_CHOICES[choice]
        if hasattr(cudnn, "conv"):
            assert cudnn.conv.fp32_precision == "ieee"  # never TF32, whatever the algorithm choice
    assert (cudnn.deterministic, cudnn.benchmark) == (True, False)
    training.select_numerics("cuda")
    assert (cudnn.deterministic, cudnn.benchmark) == (True, False)
