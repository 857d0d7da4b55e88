"""The main job with the smoke profile: every notebook runs and every expected output appears in outputs/smoke/."""
import json

import pandas as pd
import pytest

from lth_core import paths

from lth_core.programs import reproduce
from lth_core.runs import store
from lth_core.studies.catalog import profile_configs

FIGURES = ["fig1_lenet_mnist", "fig1_conv2_cifar10", "fig2_lenet_mnist", "fig2_conv2_cifar10",
           "fig3_lenet_mnist", "fig3_conv2_cifar10", "fig4_top_shufflenet", "fig4_bottom_shufflenet_bn_pruned"]


def test_main_job_smoke_profile(shared_data, monkeypatch):
    monkeypatch.setenv("LTH_DATA_DIR", str(shared_data))
    execute, started = reproduce._execute, []

    def execute_after_checking_the_runs(name, *args):
        # every run of every notebook is trained (together) before the first notebook starts
        started.append(all(store.is_done(c) for c in profile_configs("smoke")))
        return execute(name, *args)
    monkeypatch.setattr(reproduce, "_execute", execute_after_checking_the_runs)
    executed = reproduce.reproduce("smoke", device="cpu")
    assert started == [True, True, True]
    assert executed == reproduce.notebooks() == ["01_trainability_unseen", "02_faster_tickets", "03_shufflenet"]

    folder = reproduce.profile_dir("smoke")
    figures, tables, executed_dir = folder / "figures", folder / "tables", folder / "notebooks"
    for stem in FIGURES:
        png, pdf = figures / f"{stem}.png", figures / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, stem
        assert pdf.read_bytes()[:5] == b"%PDF-", stem

    table1 = pd.read_csv(tables / "table1.csv")
    assert len(table1) == 3 and (tables / "table1.md").read_text().count("|") > 10
    speedup = pd.read_csv(tables / "speedup.csv")
    assert not speedup.empty and speedup.notna().any().all()

    for name in executed:
        nb = json.loads((executed_dir / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, name
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert injected and "device = \"cpu\"" in "".join(injected[0]["source"])

    manifest = reproduce.read_manifest("smoke")
    assert {n: r["status"] for n, r in manifest["notebooks"].items()} == dict.fromkeys(executed, "done")
    published = {f for r in manifest["notebooks"].values() for f in r["published"]["files"]}
    assert {f"figures/{stem}.png" for stem in FIGURES} <= published and "tables/table1.csv" in published
    # the run store is shared by the profiles; nothing lands in the profile-less folders
    assert paths.runs_dir() == paths.outputs_dir() / "runs" and not paths.figures_dir().exists()

    runs_before = sorted(p.name for p in paths.runs_dir().iterdir())
    assert reproduce.reproduce("smoke", device="cpu") == []  # a second call has nothing left to do
    assert sorted(p.name for p in paths.runs_dir().iterdir()) == runs_before


def test_bad_profile_and_device_rejected():
    with pytest.raises(ValueError, match="valid profiles"):
        reproduce.reproduce("fast")
    with pytest.raises(ValueError, match="unknown device"):
        reproduce.reproduce("smoke", device="tpu")
