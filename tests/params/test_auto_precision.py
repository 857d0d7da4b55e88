"""The precision `auto` of notebooks 01 and 02: bf16 where the CPU has BF16 hardware and the agreement adopts it."""
import pytest
import torch

from lth_core.params import notebook
from lth_core.params.notebook import ParameterError, check_parameters, declared_parameters
from lth_core.runs.store import run_name
from lth_core.studies.catalog import STUDIES

U, F = "01_trainability_unseen", "02_faster_tickets"


def _configs(nb, **over):
    values = {**{k: spec[2] for k, spec in declared_parameters(nb).items()}, "device": "cpu", **over}
    return STUDIES[nb].configs_from_parameters(check_parameters(nb, values))


def _precisions(configs):
    return {n: {c.train.precision for c in configs if c.network == n} for n in ("lenet_300_100", "conv2")}


@pytest.mark.parametrize("nb", [U, F])
def test_auto_trains_conv2_in_bf16_on_a_cpu_with_bf16_hardware_and_lenet_in_float32(nb, monkeypatch):
    monkeypatch.setattr(notebook, "cpu_has_bf16", lambda: True)
    configs = _configs(nb, lenet_precision="auto", conv2_precision="auto")
    assert _precisions(configs) == {"lenet_300_100": {"float32"}, "conv2": {"bf16"}}
    # the config holds bf16 itself: its run is the explicit bf16 run, and the store records bf16 in its numerics
    assert [run_name(c) for c in configs] == [run_name(c) for c in _configs(nb, conv2_precision="bf16")]


@pytest.mark.parametrize("nb", [U, F])
def test_auto_without_bf16_hardware_names_the_same_runs_as_float32(nb, monkeypatch):
    monkeypatch.setattr(notebook, "cpu_has_bf16", lambda: False)
    configs = _configs(nb, lenet_precision="auto", conv2_precision="auto")
    assert _precisions(configs) == {"lenet_300_100": {"float32"}, "conv2": {"float32"}}
    assert [run_name(c) for c in configs] == [run_name(c) for c in _configs(nb)]


def test_auto_is_float32_on_a_gpu_even_beside_a_bf16_cpu(monkeypatch):
    monkeypatch.setattr(notebook, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # device auto picks cuda
    assert notebook.resolved_precision("auto", "conv2", "auto") == "float32"
    assert notebook.resolved_precision("auto", "conv2", "auto", "slurm") == "float32"  # Slurm's GPU jobs
    assert notebook.resolved_precision("auto", "conv2", "cpu") == "bf16"
    assert notebook.resolved_precision("bf16", "lenet_300_100", "cuda") == "bf16"  # a named precision stays


@pytest.mark.parametrize("flags,has", [("fpu avx2 avx512f avx512_bf16 amx_tile", True), ("fpu avx2 amx_bf16", True),
                                       ("fpu avx2 avx512f avx512bw", False)])
def test_bf16_hardware_is_read_from_the_cpu_flags(flags, has, tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(notebook, "CPUINFO", tmp_path / "cpuinfo")
    assert notebook.cpu_has_bf16.__wrapped__() is has
    monkeypatch.setattr(notebook, "CPUINFO", tmp_path / "absent")
    assert notebook.cpu_has_bf16.__wrapped__() is False  # unreadable: float32


def test_notebook_03_takes_no_auto():
    values = {k: spec[2] for k, spec in declared_parameters("03_shufflenet").items()}
    with pytest.raises(ParameterError, match="parameter 'shufflenet_precision' = 'auto' is out of range"):
        check_parameters("03_shufflenet", {**values, "shufflenet_precision": "auto"})
