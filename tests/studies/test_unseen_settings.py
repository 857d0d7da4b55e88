"""Notebook 01 under several LeNet training settings: configs, run names, the ticket-vs-control claims judged
from the seeds' intervals, the text on Figure 1's claim, the controls figure and the `controls` profile's size."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lth_core.programs import reproduce
from lth_core import config, imp
from lth_core.report.intervals import mean_interval, t_quantile
from lth_core.params.notebook import ParameterError, check_parameters
from lth_core.params.profiles import load_profile
from lth_core.report.plots import save_figure
from lth_core.runs.store import run_name
from lth_core.studies import unseen
from lth_core.studies.catalog import notebook_parameters

ALL = ["table1", "table1_no_weight_decay", "frankle_carbin"]
LEVELS = [100.0, 80.0, 64.0, 51.2, 41.0]


def _params(**values) -> dict:
    return notebook_parameters(unseen.NOTEBOOK, values)


# ---------------------------------------------------------------- settings -> configs

def test_settings_expand_into_configs_with_their_training_values():
    P = _params(lenet_settings=ALL, lenet_iterations=3000, lenet_eval_every=50, lenet_patience=7, seeds=[0, 1])
    configs = unseen.configs_from_parameters(P)
    lenet = {(config.setting_of(c.network, c.train), c.seed): c.train for c in configs if c.network == "lenet_300_100"}
    assert sorted(lenet) == sorted((s, seed) for s in ALL for seed in (0, 1))
    t1, no_wd, fc = lenet[("table1", 0)], lenet[("table1_no_weight_decay", 0)], lenet[("frankle_carbin", 0)]
    assert (t1.lr, t1.weight_decay, t1.lr_schedule, t1.lr_gamma, t1.batch_size, t1.iterations) == (
        1e-3, 1e-3, "exponential", 0.95, 100, 3000)
    assert no_wd == t1.__class__(**{**t1.__dict__, "weight_decay": 0.0})  # the one change
    assert (fc.lr, fc.weight_decay, fc.lr_schedule, fc.batch_size) == (1.2e-3, 0.0, "constant", 60)
    assert fc.iterations == 5000  # the same share (a tenth) of Frankle & Carbin's 50,000 as 3,000 of Table 1's 30,000
    assert {(tc.eval_every, tc.patience) for tc in lenet.values()} == {(50, 7)}  # the notebook's, in every setting
    conv2 = [c for c in configs if c.network == "conv2"]
    assert len(conv2) == 2 and {config.setting_of("conv2", c.train) for c in conv2} == {"table1"}


def test_at_table1s_budget_every_setting_gets_its_own_full_budget():
    assert config.setting_overrides("lenet_300_100", "frankle_carbin", 30_000)["iterations"] == 50_000
    assert config.setting_overrides("lenet_300_100", "table1", 30_000) == {"iterations": 30_000}
    full = config.training_settings("lenet_300_100")
    assert full["frankle_carbin"].iterations == 50_000 and full["table1"] == config.PAPER_TRAINING["lenet_300_100"]
    assert config.setting_of("lenet_300_100", config.TrainConfig(batch_size=50)) is None
    with pytest.raises(ValueError, match="unknown training setting 'adam'.*valid: table1, table1_no_weight_decay"):
        config.setting_overrides("lenet_300_100", "adam")
    with pytest.raises(ValueError, match="valid: table1$"):
        config.setting_overrides("conv2", "frankle_carbin")


@pytest.mark.parametrize("bad", [[], ["table1", "table1"], ["sgd"]])
def test_the_settings_parameter_is_range_checked(bad):
    with pytest.raises(ParameterError, match="lenet_settings.*frankle_carbin"):
        check_parameters(unseen.NOTEBOOK, _params() | {"lenet_settings": bad})


# the run names of today's profiles, recorded before settings existed: names hash only non-default config values
# (re-recorded when a profile's values change: on 2026-12-06 quick's 8 LeNet rounds and both profiles' Conv-2 patience)
RUN_NAMES = {
    "smoke": ["lenet_300_100-ec13f7e3b9ca", "conv2-a7a1f24285a5"],
    "quick": ["lenet_300_100-1ab88c1d8bc2", "conv2-fe448ac00d5a"],
    "paper": ["lenet_300_100-d6c64716c944", "lenet_300_100-bdbc1f80acdb", "lenet_300_100-0a2604ece10c",
              "conv2-a73e7af2afda", "conv2-3db21a0edce1", "conv2-b111e8d2b099"],
}


@pytest.mark.parametrize("profile", sorted(RUN_NAMES))
def test_todays_configurations_keep_their_run_names(profile):
    P = notebook_parameters(unseen.NOTEBOOK, load_profile(profile))
    assert P["lenet_settings"] == ["table1"]
    assert [run_name(c) for c in unseen.configs_from_parameters(P)] == RUN_NAMES[profile]


def test_rows_carry_their_setting_from_their_runs_config():
    configs = unseen.configs_from_parameters(_params(lenet_settings=["table1", "frankle_carbin"],
                                                     unseen_networks=["lenet_300_100"]))
    rows = pd.DataFrame({"run": [run_name(c) for c in configs for _ in range(2)]})
    assert list(unseen.label_settings(rows, configs)["setting"]) == ["table1"] * 2 + ["frankle_carbin"] * 2
    with pytest.raises(ValueError, match="not among the configs"):
        unseen.label_settings(pd.concat([rows, pd.DataFrame({"run": ["lenet_300_100-000000000000"]})]), configs)
    own = unseen.unseen_config("lenet_300_100", batch_size=50)  # made by hand: no record of a setting
    with pytest.raises(ValueError, match="no record of their training settings"):
        unseen.label_settings(pd.DataFrame({"run": [run_name(own)]}), [own])


def test_a_parameter_that_changes_a_setting_is_recorded_and_named_with_it():
    # today's bug: lenet_weight_decay (not a declared parameter of notebook 01) made its runs follow no named setting
    P = _params(lenet_settings=["table1", "frankle_carbin"], unseen_networks=["lenet_300_100"]) | {
        "lenet_weight_decay": 5e-4}
    configs = unseen.configs_from_parameters(P)
    assert {c.train.weight_decay for c in configs} == {5e-4}  # the parameter wins over both settings' own values
    rows = unseen.label_settings(pd.DataFrame({"run": [run_name(c) for c in configs]}), configs)
    assert list(rows["setting"]) == ["table1, weight_decay 0.0005", "frankle_carbin, weight_decay 0.0005"]
    assert unseen.setting_label(rows["setting"][0]) == "Table 1's settings (the authors' code), weight_decay 0.0005"
    assert unseen.run_settings(configs, sizes={"mnist": (60_000, 10_000)})["setting"][0] == rows["setting"][0]
    rows = rows.assign(network="lenet_300_100")
    assert unseen.groups(rows) == [("lenet_300_100", s) for s in rows["setting"]]
    assert unseen.figure_stem("lenet_300_100", rows["setting"][0]) == "fig1_lenet_mnist_table1_weight_decay_0.0005"
    # a value equal to a named setting's is no change, and another named setting's value is not relabelled as it
    same = unseen.configs_from_parameters(P | {"lenet_weight_decay": 1e-3, "lenet_settings": ["table1"]})
    assert list(same.setting.values()) == ["table1"]
    zero = unseen.configs_from_parameters(P | {"lenet_weight_decay": 0.0, "lenet_settings": ["table1"]})
    assert list(zero.setting.values()) == ["table1, weight_decay 0.0"]
    with pytest.raises(ValueError, match="'table1, weight_decay 0.0' and 'table1_no_weight_decay' train the same"):
        unseen.configs_from_parameters(P | {"lenet_weight_decay": 0.0,
                                            "lenet_settings": ["table1", "table1_no_weight_decay"]})


# ---------------------------------------------------------------- intervals

def test_t_quantiles_match_the_tables():
    assert [round(t_quantile(0.975, df), 3) for df in (1, 2, 4, 30)] == [12.706, 4.303, 2.776, 2.042]
    assert t_quantile(0.025, 2) == pytest.approx(-4.303, abs=1e-3)
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and (low, high) == pytest.approx((2 - 4.3027 / 3 ** 0.5, 2 + 4.3027 / 3 ** 0.5), abs=1e-3)
    assert np.isnan(mean_interval([5.0])[1])


# ---------------------------------------------------------------- claims from synthetic seeds

def _rows(setting, ticket, reinit, random_prune, noise, seeds=(0, 1, 2)):
    """One setting's rows: per level, the ticket on S1 and S2 and both controls on S2, each seed shifted by
    noise[seed] (the controls by the opposite shift, so their lead varies from seed to seed)."""
    out = []
    for seed in seeds:
        for i, level in enumerate(LEVELS):
            def add(kind, split, acc):
                out.append({"network": "lenet_300_100", "setting": setting, "seed": seed, "round": i,
                            "pct_remaining": level, "kind": kind, "found_on": "half1", "trained_on": split,
                            "test_acc": acc, "es_iteration": 1000.0, "budget": 3000})
            add("ticket", "half1", ticket[i] + noise[seed])
            add("ticket", "half2", ticket[i] + noise[seed])
            if i:
                add("reinit", "half2", reinit[i] - noise[seed])
                add("random_prune", "half2", random_prune[i] - noise[seed])
    return pd.DataFrame(out)


TICKET = [98.0, 98.2, 98.3, 98.1, 97.8]
CLEARLY_BELOW = [0, 97.6, 97.2, 96.6, 95.9]  # about a point and more under the ticket
CLOSE = [0, 98.1, 98.2, 98.05, 97.75]  # within a tenth of it


def _three_settings(seeds=(0, 1, 2)):
    noise = {0: 0.0, 1: 0.15, 2: -0.1}
    return pd.concat([
        _rows("frankle_carbin", TICKET, CLEARLY_BELOW, CLEARLY_BELOW, noise, seeds),  # the ticket wins
        _rows("table1", TICKET, CLOSE, CLOSE, noise, seeds),  # intervals of the lead straddle 0
        _rows("table1_no_weight_decay", TICKET, CLEARLY_BELOW, CLOSE, noise, seeds),  # beats re-init only
    ], ignore_index=True)


def _control_claims(claims: pd.DataFrame, setting: str) -> dict:
    mine = claims[claims["claim"].str.contains("beats the") & (
        claims["claim"].str.contains(unseen.SETTING_LABEL[setting]) if setting != "table1"
        else ~claims["claim"].str.contains("under "))]
    return {("reinit" if "re-initialised" in c else "random_prune"): (v, w)
            for c, v, w in zip(mine["claim"], mine["verdict"], mine["why"])}


def test_ticket_vs_controls_judged_from_the_seeds_interval():
    found = unseen.findings(_three_settings(), tolerance=1.0)
    assert list(found["setting"]) == ALL  # the library's order
    claims = unseen.claims(found)
    fc = _control_claims(claims, "frankle_carbin")
    assert fc["reinit"][0] == fc["random_prune"][0] == "holds" and "mean over 3 seeds" in fc["reinit"][1]
    t1 = _control_claims(claims, "table1")
    assert t1["reinit"][0] == t1["random_prune"][0] == "does not hold"
    ablation = _control_claims(claims, "table1_no_weight_decay")
    assert (ablation["reinit"][0], ablation["random_prune"][0]) == ("holds", "does not hold")
    # the level compared is where the ticket is last within tolerance (all of them here: the sparsest)
    f = found.set_index("setting").loc["frankle_carbin"]
    lead = 1.9 + 2 * (0.15 - 0.1) / 3  # the ticket's lead, 1.9, moved by twice the mean shift of the seeds
    assert f["compared_at"] == 41.0 and f["reinit_lead"] == pytest.approx(lead)
    assert 0 < f["reinit_lead_low"] < lead < f["reinit_lead_high"] and f["reinit_levels_above"] == 4
    ours = claims.loc[claims["claim"].str.contains("re-initialised") & claims["claim"].str.contains("Frankle"), "ours"]
    assert ours.iloc[0].startswith("+1.93 points at 41% remaining (95% interval +") and "4 of 4" in ours.iloc[0]


def test_one_seed_is_not_judged_and_says_why():
    claims = unseen.claims(unseen.findings(_three_settings(seeds=(0,)), tolerance=1.0))
    control = claims[claims["claim"].str.contains("beats the")]
    assert len(control) == 6 and set(control["verdict"]) == {"not judged"}
    assert control["why"].str.startswith("one seed: no interval, and a difference of one run may be seed-to-seed "
                                          "noise").all()
    assert (control["ours"].str.endswith("(one seed: no interval)")).all()


def test_the_text_says_what_the_controls_mean_for_figure_1():
    text = unseen.controls_markdown(unseen.findings(_three_settings(), tolerance=1.0))
    paragraphs = text.split("\n\n")
    assert len(paragraphs) == 4  # one per setting, then the summary
    fc = next(p for p in paragraphs if p.startswith("**LeNet-300-100, Frankle & Carbin's"))
    assert "what trains on unseen S2 is a winning ticket" in fc
    t1 = next(p for p in paragraphs if p.startswith("**LeNet-300-100, Table 1's settings"))
    assert "says nothing about *winning* tickets" in t1 and ("does not beat the randomly re-initialised control or "
                                                             "the randomly pruned control") in t1
    ablation = next(p for p in paragraphs if p.startswith("**LeNet-300-100, Table 1's without"))
    assert "a network of the same density with a random mask trains on S2 as well" in ablation
    assert paragraphs[-1].startswith("Across settings, the ticket beats every control run with LeNet-300-100 under "
                                     "Frankle & Carbin's settings, and not with LeNet-300-100 under Table 1's")
    # where no setting's ticket beats its controls (as the controls profile measured), the summary says so plainly
    none = unseen.controls_markdown(unseen.findings(_three_settings().query("setting != 'frankle_carbin'"),
                                                    tolerance=1.0))
    assert none.split("\n\n")[-1].startswith("In no setting does the ticket beat every control run (LeNet-300-100 "
                                              "under Table 1's settings (the authors' code) and LeNet-300-100 under")
    one = unseen.controls_markdown(unseen.findings(_three_settings(seeds=(0,)), tolerance=1.0))
    assert one.count("stays open") == 3 and "Across settings" not in one


# ---------------------------------------------------------------- the figure

def test_controls_figure_has_a_panel_per_setting_with_the_three_curves(tmp_outputs):
    rows = _three_settings()
    fig = unseen.controls_figure(rows, "lenet_300_100")
    panels = fig.axes
    assert [ax.get_title().split("\n")[0] for ax in panels] == [unseen.SETTING_LABEL[s] for s in ALL]
    curves = [unseen.CURVES[k] for k in [("ticket", "half2"), ("reinit", "half2"), ("random_prune", "half2")]]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == curves + ["unpruned, trained on S2"]
    for ax in panels:
        assert ax.get_xscale() == "log" and ax.get_xlim()[0] > ax.get_xlim()[1]  # 100% on the left
        assert len(ax.collections) >= 3  # a 95% band per curve (three seeds)
        assert ax.get_ylim() == panels[0].get_ylim()  # one scale
    files = save_figure(fig, "fig1_controls_test")
    assert all(p.exists() and p.stat().st_size > 0 for p in files)
    plt.close(fig)
    with pytest.raises(ValueError, match="no control rows"):
        unseen.controls_figure(rows[rows["kind"] == "ticket"], "lenet_300_100")


# ---------------------------------------------------------------- the controls profile

def test_the_controls_profile_fits_about_two_hours_at_the_measured_lenet_cost():
    table = reproduce.estimate("controls", "cpu", {"workers": 2}, only=[unseen.NOTEBOOK])
    assert list(table["network"]) == ["lenet_300_100"] and table["runs"].item() == 9
    hours = table["iterations"].item() * 3.4e-3 / 2 / 3600  # every training to its full budget: the ceiling
    assert 1.5 < hours <= 2.2
    P = notebook_parameters(unseen.NOTEBOOK, load_profile("controls"))
    assert P["lenet_settings"] == ALL and len(P["seeds"]) == 3 and set(P["controls"]) == {"reinit", "random_prune"}
    # the run reaches the paper's 80% pruned, so Figure 1's claim can be judged
    assert min(imp.planned_remaining_pct(unseen.configs_from_parameters(P)[0])) < 20
    with pytest.raises(ValueError, match="unknown notebooks"):
        reproduce.estimate("controls", "cpu", only=["99_nothing"])


def test_the_scale_note_counts_the_trainings_the_budget_ended_per_setting():
    from lth_core.config import paper_config
    rows = _three_settings()
    assert "last tenth" not in unseen.scale_note([paper_config("lenet_300_100")], rows)  # every stop at 1,000 of 3,000
    capped = rows.assign(es_iteration=rows["es_iteration"].where(rows["setting"] != "table1", 3000.0))
    note = unseen.scale_note([paper_config("lenet_300_100")], capped)
    n = int((rows["setting"] == "table1").sum())
    assert note.count("early-stopped in the last tenth") == 1
    assert f"Under Table 1's settings (the authors' code), {n} of {n} trainings of LeNet-300-100" in note
