"""The benchmark's table: its columns, positive finite times, and ratio = lth_core / bare (no timing targets)."""
import math

import pytest

from lth_core.programs.benchmark import COLUMNS, FUSION_COLUMNS, run_benchmark, run_fusion_benchmark


def test_lenet_table_has_positive_times_and_their_ratio():
    table = run_benchmark(["lenet_300_100"], iterations=5, device="cpu", warmup=1)
    assert list(table.columns) == COLUMNS
    assert len(table) == 1
    row = table.iloc[0]
    assert row["network"] == "lenet_300_100"
    assert row["batch"] == 100
    assert row["device"] == "cpu"
    assert row["iterations"] == 5
    lth, bare = row["lth_core ms/iter"], row["bare ms/iter"]
    assert math.isfinite(lth) and lth > 0
    assert math.isfinite(bare) and bare > 0
    assert row["ratio"] == lth / bare


def test_fusion_table_has_solo_and_every_fused_path_per_group_size_and_their_speedup():
    from lth_core.runs.fused import fused_layers
    table = run_fusion_benchmark(["lenet_300_100"], ks=[1, 2], iterations=30, device="cpu", warmup=2,
                                 compile_paths=False)
    assert list(table.columns) == FUSION_COLUMNS
    assert list(table["K"]) == [1, 2] and set(table["network"]) == {"lenet_300_100"}
    assert fused_layers("lenet_300_100", "cpu") == ("stacked", False)
    for _, row in table.iterrows():
        solo, fused = row["solo ms/model-step"], row["fused ms/model-step"]
        assert math.isfinite(solo) and solo > 0 and math.isfinite(fused) and fused > 0
        assert row["speedup"] == solo / fused
        # vmap (today's path) and the stacked layers side by side; the runner's pass is the fused column
        assert row["vmap ms/model-step"] > 0 and row["stacked ms/model-step"] > 0
        assert row["fused path"] == "stacked" and fused == row["stacked ms/model-step"]
        assert math.isnan(row["stacked channels-last ms/model-step"])  # LeNet has no channels
        assert math.isnan(row["graphed ms/model-step"])  # no CUDA graphs on a CPU
        assert math.isnan(row["solo graphs on streams ms/model-step"])
        assert math.isnan(row["stacked compiled ms/model-step"])  # compile_paths=False


def test_fusion_table_times_the_compiled_stacked_step_beside_the_eager_one():
    table = run_fusion_benchmark(["lenet_300_100"], ks=[2], iterations=5, device="cpu", warmup=1)
    row = table.iloc[0]
    assert row["stacked compiled ms/model-step"] > 0 and row["stacked ms/model-step"] > 0
    assert row["fused path"] == "stacked"  # the runner compiles nothing until it measured faster


@pytest.mark.parametrize("fused", [False, True])
def test_the_stopwatch_holds_the_timed_steps_and_nothing_after_them(monkeypatch, fused):
    # solo and fused figures read one clock inside the loop: started at the first timed batch, stopped
    # at the final validation, so no per-call cost (compiling, testing, state copies) can enter the figure
    from lth_core.programs import benchmark
    seen = []

    class Counting(benchmark._StopwatchData):
        def train_batches(self, idx, batch_size=1000):
            if self.stopped is None:
                seen.append((self._start, self._fetches))
            return super().train_batches(idx, batch_size)
    monkeypatch.setattr(benchmark, "_StopwatchData", Counting)
    if fused:
        table = run_fusion_benchmark(["lenet_300_100"], ks=[2], iterations=4, device="cpu", warmup=3,
                                     compile_paths=False)
        assert table.iloc[0]["stacked ms/model-step"] > 0
    else:
        assert run_benchmark(["lenet_300_100"], iterations=4, device="cpu", warmup=3, repeats=1).iloc[0][
            "lth_core ms/iter"] > 0
    # every clock started at the 4th batch and stopped at the first validation, after the 3 + 4 steps
    assert set(seen) == {(4, 7)} and len(seen) == (3 if fused else 1)  # fused: solo, vmap, stacked


def test_schedule_benchmark_times_whole_trainings_beside_the_step():
    from lth_core.programs.benchmark import SCHEDULE_COLUMNS, run_schedule_benchmark, schedule_sentence
    # 300 iterations: the two timed calls differ by about a second, so machine noise cannot flip the sign
    table = run_schedule_benchmark(["lenet_300_100"], iterations=300, device="cpu", step_ms={"lenet_300_100": 0.5})
    assert list(table.columns) == SCHEDULE_COLUMNS and len(table) == 1
    row = table.iloc[0]
    assert row["eval_every"] == 100 and row["val_rows"] == 5000 and row["step ms/iter"] == 0.5
    assert row["train() ms/iter"] > 0 and row["overhead"] == pytest.approx(1 - 0.5 / row["train() ms/iter"])
    assert row["s per 30K training"] >= row["train() ms/iter"] * 30  # plus the once-per-call costs
    assert "30,000-iteration training takes about" in schedule_sentence(table)
    with pytest.raises(ValueError, match="positive"):
        run_schedule_benchmark(["lenet_300_100"], iterations=0, device="cpu")


def test_fusion_benchmark_starts_no_row_past_its_deadline():
    # gpu-check gives the benchmark a share of its 8 minutes: rows measured by then are kept, no more
    import time
    from lth_core.programs.benchmark import run_fusion_benchmark
    assert run_fusion_benchmark(["lenet_300_100"], ks=[1, 2], iterations=2, warmup=1, device="cpu",
                                deadline=time.time() - 1, compile_paths=False).empty
    seen = []
    table = run_fusion_benchmark(["lenet_300_100"], ks=[1, 2], iterations=2, warmup=1, device="cpu",
                                 on_row=lambda t: seen.append(len(t)), deadline=time.time() + 600, compile_paths=False)
    assert list(table["K"]) == [1, 2] and seen == [1, 2]


def test_precision_table_times_the_step_in_float32_and_bf16_side_by_side():
    import time
    from lth_core.programs.benchmark import PRECISION_COLUMNS, run_precision_benchmark
    table = run_precision_benchmark(["lenet_300_100"], iterations=5, device="cpu", warmup=1, repeats=1)
    assert list(table.columns) == PRECISION_COLUMNS and len(table) == 1
    row = table.iloc[0]
    f32, bf16 = row["float32 ms/iter"], row["bf16 ms/iter"]
    assert math.isfinite(f32) and f32 > 0 and math.isfinite(bf16) and bf16 > 0
    assert row["bf16 / float32"] == bf16 / f32
    assert math.isnan(row["tf32 ms/iter"]) and math.isnan(row["tf32 / float32"])  # CUDA only
    assert run_precision_benchmark(["lenet_300_100"], iterations=2, device="cpu", deadline=time.time() - 1).empty
