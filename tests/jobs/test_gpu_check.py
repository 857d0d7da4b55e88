"""The GPU check's data pack (the check itself needs a GPU: it is run on a lent one, see docs/operations.md, "GPU check")."""
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


def test_conv2_precision_agreement_sets_float32_and_bf16_side_by_side_and_leaves_out_an_unfinished_arm(tmp_path):
    """The agreement section (CPU-sized here): Figure 1's Conv-2 round 0 in both precisions, compared per
    training; past its deadline an arm is left out, and what finished is kept."""
    import time

    from conftest import synthetic_dataset
    from lth_core.programs.gpu_check import conv2_precision_agreement
    data = synthetic_dataset("cifar10", n_train=300, n_test=40)
    small = dict(iterations=4, eval_every=2, train_limit=60, val_size=40, test_limit=40, batch_size=20)
    out = conv2_precision_agreement(time.time() + 600, tmp_path, load_data=lambda name: data, seeds=(0,), **small)
    assert {(t["trained_on"], t["seed"]) for t in out["trainings"]} == {("half1", 0), ("half2", 0)}
    assert {"es_iteration_float32", "es_iteration_bf16", "test_acc_float32", "test_acc_bf16"} <= set(out["trainings"][0])
    assert out["summary"]["trainings"] == 2 and "2 trainings" in out["sentence"]
    late = conv2_precision_agreement(time.time() - 1, tmp_path / "late", load_data=lambda name: data, seeds=(1,),
                                     **small)
    assert late == {"finished": {}, "skipped": "float32, bf16: not finished in the time left"}


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


def test_stopping_curves_give_each_networks_patience_table_rows_and_curves(tmp_path, monkeypatch):
    """The curves section (CPU-sized here): trainings without patience over the budget, then the
    stopping-rule study's table of them; a network with no finished round by the deadline says so."""
    import time

    from conftest import synthetic_dataset
    from lth_core.programs.gpu_check import stopping_curves
    monkeypatch.setenv("LTH_RUNS_DIR", str(tmp_path / "runs"))
    data = synthetic_dataset("cifar10", n_train=300, n_test=40)
    out = stopping_curves(time.time() + 600, device="cpu", budgets={"conv2": (6, 1)}, load_data=lambda name: data,
                          train_limit=60, val_size=40, test_limit=40, eval_every=2, batch_size=20)
    conv2 = out["conv2"]
    assert [r["round"] for r in conv2["rows"]] == [0, 1] and all(r["iterations"] == 6 for r in conv2["rows"])
    assert {row["patience"] for row in conv2["patience"]} >= {10, 100} and conv2["patience"][0]["trainings"] == 2
    assert len(conv2["curves"]["iteration"]) == 2 * 3 and set(conv2["curves"]["round"]) == {0.0, 1.0}
    late = stopping_curves(time.time() - 1, device="cpu", budgets={"shufflenet": (4, 0)},
                           load_data=lambda name: data, train_limit=60, val_size=40, test_limit=40, batch_size=20)
    assert late == {"shufflenet": {"skipped": "no round finished in the time left"}}


def test_the_paper_projection_is_what_reproduce_estimates_from_the_gpus_benchmark_rows(tmp_path):
    import pandas as pd

    from lth_core import paths
    from lth_core.programs.gpu_check import paper_projection
    from lth_core.programs.reproduce import estimate
    measured = paths.REPO_ROOT / "benchmarks" / "h100-2026-11-27.csv"
    out = paper_projection(pd.read_csv(measured).to_dict("records"), tmp_path)
    expected = estimate("paper", "cuda", benchmark_csv=measured)
    assert out["total_hours"] == pytest.approx(expected["hours"].sum())
    assert set(out["hours_per_network"]) == {"lenet_300_100", "conv2", "shufflenet"}
    assert paper_projection([], tmp_path)["total_hours"] is None  # no figures: no hours, not zero
