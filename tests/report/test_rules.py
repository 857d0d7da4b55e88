"""lth_core.report.rules: a claim's rule is one expression, evaluated and shown as the same text."""
import pytest

from lth_core.report.claims import LEARNED_FRACTION, learned, not_learned
from lth_core.report.rules import Precondition, Rule, paper_numbers_table


def test_a_rule_evaluates_its_text_with_the_papers_numbers_resolved():
    rule = Rule("es_speedup >= paper['faster.speedup'] and acc_diff_worst >= -tolerance")
    assert rule.paper_keys == ("faster.speedup",) and rule.names == ("es_speedup", "acc_diff_worst", "tolerance")
    assert rule.holds({"es_speedup": 8.0, "acc_diff_worst": -0.5, "tolerance": 1.0}) is True
    assert rule.holds({"es_speedup": 7.0, "acc_diff_worst": -0.5, "tolerance": 1.0}) is False
    assert rule.holds({"es_speedup": 8.0, "acc_diff_worst": -1.5, "tolerance": 1.0}) is False
    assert rule.text() == ("es_speedup >= paper['faster.speedup'] and acc_diff_worst >= -tolerance, "
                           "where paper['faster.speedup'] = 7.5")
    r2 = Rule("r2 >= LINEAR_R2", {"LINEAR_R2": 0.8})
    assert r2.names == ("r2",) and r2.holds({"r2": 0.85}) and r2.text() == "r2 >= LINEAR_R2, where LINEAR_R2 = 0.8"


def test_a_missing_value_leaves_the_rule_unapplied_and_an_absent_one_is_an_error():
    rule = Rule("x >= paper['faster.speedup']")
    assert rule.holds({"x": None}) is None and rule.holds({"x": float("nan")}) is None
    assert Rule("n > 0 and x >= 1").holds({"n": 0, "x": None}) is False  # short-circuit: x is not needed
    with pytest.raises(ValueError, match=r"needs values \['x'\]"):
        rule.holds({"y": 1.0})


@pytest.mark.parametrize("expression, message", [
    ("x >=", "not a Python expression"),
    ("__import__('os')", "uses Call"),
    ("x.real > 0", "uses Attribute"),
    ("values['x'] > 0", "only paper\\['key'\\]"),
    ("paper[key] > 0", "only paper\\['key'\\]"),
])
def test_a_rule_outside_its_small_language_is_refused(expression, message):
    with pytest.raises(ValueError, match=message):
        Rule(expression)


def test_a_rule_reading_an_unknown_paper_number_is_refused_when_made():
    with pytest.raises(KeyError, match="no paper value 'faster.nonesuch'"):
        Rule("x >= paper['faster.nonesuch']")


def test_a_precondition_gives_its_reason_and_the_rule_that_failed():
    reached = Precondition(Rule("pct >= paper['shufflenet.winning_pct_pruned']"),
                           "the run reaches only {pct:.1f}% pruned, short of {paper[shufflenet.winning_pct_pruned]:g}%")
    assert reached.unmet({"pct": 41.0}) is None
    assert reached.unmet({"pct": 19.0}) == ("the run reaches only 19.0% pruned, short of 40% "
                                           "(needs pct >= paper['shufflenet.winning_pct_pruned'])")
    assert "a value it needs is missing" in reached.unmet({"pct": None})


def test_learned_is_measured_against_the_papers_unpruned_accuracy_not_chance():
    threshold = LEARNED_FRACTION * 80.0  # the paper's ShuffleNet: 80% (Figure 4 top)
    assert not_learned("shufflenet", threshold) is None
    why = not_learned("shufflenet", 21.0, "the BN arm's unpruned network")
    assert why.startswith("the BN arm's unpruned network did not learn (21.0% test accuracy; the paper's unpruned "
                          "network reaches 80% (Figure 4 top)")
    assert not_learned("shufflenet", 50.0) is not None  # far above chance (10%), far below the paper
    assert not_learned("lenet_300_100", 90.0) is None and not_learned("lenet_300_100", 70.0) is not None


def test_the_paper_numbers_table_lists_each_key_once_with_its_source():
    t = paper_numbers_table([Rule("a >= paper['faster.speedup']"), learned("conv2"),
                             Rule("b >= 2 * paper['faster.speedup']")], quoted=["faster.subset_percent"])
    assert list(t["key"]) == ["faster.speedup", "conv2.dense_test_acc", "faster.subset_percent"]
    row = t.set_index("key").loc["faster.speedup"]
    assert row["value"] == 7.5 and row["where"] == "Section 4" and "7.5X faster" in row["stated_as"]
    assert list(t.columns) == ["key", "value", "uncertainty", "where", "stated_as"]
