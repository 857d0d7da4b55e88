import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import synthetic_dataset
from lth_core.config import IMPConfig
from lth_core.pruning import random_masks_like
from lth_core.report.plots import save_figure
from lth_core.runs import store
from lth_core.runs.lockstep import run_cached
from lth_core.studies import faster_tickets, overlap


def _mask(n: int, keep) -> torch.Tensor:
    m = torch.zeros(n, dtype=torch.bool)
    m[list(keep)] = True
    return m


def _overall(t):
    return t[t["layer"] == overlap.OVERALL].iloc[0]


def test_chance_overlap_is_the_hypergeometric_mean_and_variance():
    for n, ka, kb in ((10, 3, 4), (12, 12, 5), (7, 1, 6), (20, 9, 9), (1, 1, 1)):
        # the exact distribution: choose kb of n, x of them among the ka kept by the other mask
        pmf = {x: math.comb(ka, x) * math.comb(n - ka, kb - x) / math.comb(n, kb) for x in range(min(ka, kb) + 1)}
        mean = sum(x * p for x, p in pmf.items())
        var = sum((x - mean) ** 2 * p for x, p in pmf.items())
        got_mean, got_var = overlap.chance_overlap(n, ka, kb)
        assert got_mean == pytest.approx(mean) and got_var == pytest.approx(var, abs=1e-12)


def test_identical_masks_share_everything_and_are_the_same_tickets():
    masks = {"fc1.weight": _mask(1000, range(0, 1000, 5)), "fc2.weight": _mask(50, range(10))}
    t = overlap.mask_overlap(masks, {k: v.clone() for k, v in masks.items()})
    assert list(t["layer"]) == ["fc1.weight", "fc2.weight", "overall"]
    assert (t["share"] == 1.0).all() and list(t["common"]) == [200, 10, 210]
    total = _overall(t)
    assert total["chance_mean"] == pytest.approx(200 * 200 / 1000 + 10 * 10 / 50)
    assert total["chance_share"] == pytest.approx(total["chance_mean"] / 210)
    assert overlap.verdict(total["share"], total["common"], total["chance_mean"], total["chance_sd"]) == overlap.SAME


def test_disjoint_masks_share_nothing_and_are_less_alike_than_chance():
    t = overlap.mask_overlap({"w": _mask(100, range(50))}, {"w": _mask(100, range(50, 100))})
    total = _overall(t)
    assert total["common"] == 0 and total["share"] == 0.0 and total["z"] < -3
    assert overlap.verdict(total["share"], 0, total["chance_mean"], total["chance_sd"]) == overlap.LESS


def test_a_known_partial_overlap_per_layer_and_overall():
    a = {"l1": _mask(100, range(40)), "l2": _mask(10, range(4))}
    b = {"l1": _mask(100, range(30, 70)), "l2": _mask(10, range(2, 4))}  # 10 of 40, and 2 of the smaller 2
    t = overlap.mask_overlap(a, b).set_index("layer")
    assert t.loc["l1", "share"] == 0.25 and t.loc["l2", "share"] == 1.0
    assert t.loc["overall", "common"] == 12 and t.loc["overall", "share"] == pytest.approx(12 / 42)
    # overall chance: layer means and variances added (layers independent)
    m1, v1 = overlap.chance_overlap(100, 40, 40)
    m2, v2 = overlap.chance_overlap(10, 4, 2)
    assert t.loc["overall", "chance_mean"] == pytest.approx(m1 + m2)
    assert t.loc["overall", "chance_sd"] == pytest.approx(math.sqrt(v1 + v2))
    assert t.loc["l1", "z"] == pytest.approx((10 - 16) / math.sqrt(v1))


def test_random_masks_fall_within_the_chance_band():
    shapes = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
    g = torch.Generator().manual_seed(0)
    dense = {k: torch.zeros(s, dtype=torch.bool) for k, s in shapes.items()}
    for k, m in dense.items():  # per-layer densities as after a few rounds: 26%, 26%, 60%
        m.view(-1)[: int(m.numel() * (0.6 if k == "fc3.weight" else 0.26))] = True
    z, shares, chance = [], [], []
    for _ in range(200):
        total = _overall(overlap.mask_overlap(random_masks_like(dense, g), random_masks_like(dense, g)))
        z.append(total["z"])
        shares.append(total["share"])
        chance.append(total["chance_share"])
    z = np.array(z)
    assert abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.2  # the hypergeometric sd is the spread seen
    assert (np.abs(z) > overlap.CHANCE_SDS).sum() <= 3  # 3 sd: 0.3% of draws outside, 0.5 of 200 expected
    assert np.mean(shares) == pytest.approx(chance[0], abs=1e-3)


def test_dense_random_masks_share_99_percent_but_are_only_as_alike_as_chance():
    g = torch.Generator().manual_seed(1)
    dense = {"w": _mask(10_000, range(9_950))}
    total = _overall(overlap.mask_overlap(random_masks_like(dense, g), random_masks_like(dense, g)))
    assert total["share"] >= overlap.SAME_SHARE
    assert overlap.verdict(total["share"], total["common"], total["chance_mean"], total["chance_sd"]) == overlap.AS


def test_verdict_thresholds():
    sds = overlap.CHANCE_SDS
    assert overlap.verdict(0.5, 100 + sds * 10 + 1, 100, 10) == overlap.MORE
    assert overlap.verdict(0.5, 100 + sds * 10, 100, 10) == overlap.AS  # on the edge: not above it
    assert overlap.verdict(0.5, 100 - sds * 10 - 1, 100, 10) == overlap.LESS
    assert overlap.verdict(0.995, 200, 100, 10) == overlap.SAME
    assert overlap.verdict(0.98, 200, 100, 10) == overlap.MORE


def _pair_rows(comparison: str, run_a: str, masks_a: dict, masks_b: dict, level: int = 1):
    """Rows of `overlap_table` for one pair at one level, from masks given here."""
    return overlap.mask_overlap(masks_a, masks_b).assign(
        group="g", network="lenet_300_100", protocol="iterations", setting=None, comparison=comparison,
        run_a=run_a, run_b="b", round=level, pct_remaining=50.0)


def test_a_level_s_verdict_is_the_one_all_its_pairs_get():
    g = torch.Generator().manual_seed(2)
    half = _mask(1000, range(500))
    shifted = _mask(1000, range(100, 600))  # 400 of 500 in common: far above chance's 250
    table = pd.concat([_pair_rows("x vs y, same seed", "a1", {"w": half}, {"w": half}),
                       _pair_rows("x vs y, same seed", "a2", {"w": half}, {"w": shifted}),
                       _pair_rows("x vs x, other seeds", "a1", {"w": half}, {"w": shifted}),
                       _pair_rows("x vs x, other seeds", "a2", *(random_masks_like({"w": half}, g) for _ in "ab"))])
    v = overlap.verdicts(table).set_index("comparison")
    assert v.loc["x vs y, same seed", "verdict"] == overlap.MIXED
    assert v.loc["x vs y, same seed", "verdict_counts"] == f"{overlap.SAME}: 1, {overlap.MORE}: 1"
    assert v.loc["x vs y, same seed", "share_min"] == 0.8 and v.loc["x vs y, same seed", "pairs"] == 2
    assert v.loc["x vs x, other seeds", "verdict_counts"] == f"{overlap.MORE}: 1, {overlap.AS}: 1"
    text = overlap.verdict_sentences(v.reset_index())
    assert (f"- x vs y, same seed (2 pairs): {overlap.MIXED} ({overlap.SAME}: 1, {overlap.MORE}: 1) at 50% of "
            "weights left (shares in common 0.900, random masks 0.500).") in text


def test_masks_of_other_layers_or_shapes_are_refused():
    with pytest.raises(ValueError, match="different layers"):
        overlap.mask_overlap({"a": _mask(4, [0])}, {"b": _mask(4, [0])})
    with pytest.raises(ValueError, match="shapes"):
        overlap.mask_overlap({"a": _mask(4, [0])}, {"a": _mask(5, [0])})


def test_pairs_are_runs_of_one_setting_and_named_by_what_differs():
    cfgs = faster_tickets.subset_configs("lenet_300_100", [10, 100], seeds=[0, 1, 2], iterations=40, rounds=2)
    epochs = faster_tickets.subset_configs("lenet_300_100", [10, 100], seeds=[0], iterations=40, rounds=2, epochs=2)
    # the same ticket-finding run with other trainings beside it finds the same masks: not a pair of its own
    twin = dataclasses.replace(cfgs[0], retrain_on=(), controls=("reinit",))
    pairs = overlap.run_pairs(cfgs + epochs + [twin])
    names = [overlap.comparison(a, b) for a, b in pairs]
    assert len(pairs) == 15 + 1  # 6 runs of the iteration budget, 2 of the epoch budget, never across them
    assert names.count("10% vs 100%, same seed") == 4
    assert names.count("10% vs 10%, other seeds") == 3 and names.count("100% vs 100%, other seeds") == 3
    assert names.count("10% vs 100%, other seeds") == 6
    assert all((a.train.epochs is None) == (b.train.epochs is None) for a, b in pairs)
    unseen = [IMPConfig(seed=s, find_on="half1", retrain_on=("half2",), rounds=2) for s in (0, 1)]
    assert [overlap.comparison(a, b) for a, b in overlap.run_pairs(unseen)] == ["S1 vs S1, other seeds"]
    assert overlap.run_pairs(unseen[:1]) == []


def test_overlap_of_a_tiny_run_store(tmp_outputs):
    data = synthetic_dataset()
    cfgs = faster_tickets.subset_configs("lenet_300_100", [10, 100], seeds=[0, 1], iterations=20, rounds=2,
                                         batch_size=50, eval_every=10, val_size=200, test_limit=100)
    with pytest.raises(ValueError, match="compute it first"):
        overlap.overlap_table(cfgs)
    rows = {store.run_name(c): run_cached(c, data, progress=False) for c in cfgs}
    for c in cfgs:  # the last level's mask is the one the run ends with
        last = store.level_masks(c)[c.rounds]
        assert all(torch.equal(last[k], m) for k, m in store.load_state(c).masks.items())

    table = overlap.overlap_table(cfgs)
    assert set(table["round"]) == {1, 2}  # the dense level keeps every weight: nothing to compare
    assert table.groupby(["run_a", "run_b", "round"]).size().eq(4).all()  # 3 layers and overall
    # the stored masks are the ones the rows were trained with: per-layer percents kept agree
    for t in table[table["layer"] != overlap.OVERALL].itertuples():
        r = rows[t.run_a]
        row = r[(r["round"] == t.round) & (r["kind"] == "ticket")].iloc[0]
        assert 100 * t.kept_a / t.weights == pytest.approx(row[f"pct_remaining[{t.layer}]"])
    for t in table[table["layer"] == overlap.OVERALL].itertuples():
        r = rows[t.run_b]
        assert t.pct_remaining == pytest.approx(r.loc[r["round"] == t.round, "pct_remaining"].iloc[0])

    v = overlap.verdicts(table)
    assert len(v) == 4 * 2  # 4 comparisons at 2 levels
    same_seed = v[v["comparison"] == "10% vs 100%, same seed"]
    assert (same_seed["pairs"] == 2).all()
    # from one initialisation, a few iterations barely move the weights: magnitude pruning keeps the same ones
    assert (same_seed["verdict"].isin([overlap.MORE, overlap.SAME])).all() and (same_seed["z_min"] > 10).all()
    other = v[v["comparison"] == "100% vs 100%, other seeds"]
    assert (other["share_mean"].to_numpy() < same_seed["share_mean"].to_numpy()).all()

    text = overlap.verdict_sentences(v)
    assert text.startswith("**LeNet-300-100 on MNIST, iterations budget**:\n- ")
    assert "- 10% vs 100%, same seed (2 pairs): " in text
    assert same_seed["verdict"].iloc[0] in text

    fig = overlap.plot_overlap(table)
    top, bottom = fig.axes  # one network and setting: the share, and below it the share minus chance's
    assert top.get_ylabel() == "share of kept weights in common"
    assert top.get_title() == "LeNet-300-100 on MNIST, iterations budget"
    legend = [t.get_text() for t in bottom.get_legend().get_texts()]
    assert legend[0].startswith("random masks") and set(legend[1:]) == set(v["comparison"])
    files = save_figure(fig, "mask_overlap")
    assert all(f.exists() and f.stat().st_size > 0 for f in files) and {f.suffix for f in files} == {".png", ".pdf"}
