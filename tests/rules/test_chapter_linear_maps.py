"""§3.4 verdict rules (effdepth.chapters.linear_maps) on synthetic error matrices, both sides of each rule."""

import numpy as np
import pytest

from effdepth.chapters import PAPER, SAME_AS_CONTROL
from effdepth.chapters import linear_maps as F
from effdepth.measures.linear_maps import LinearMaps
from effdepth.verdicts import INCONCLUSIVE, NOT_TESTABLE
from effdepth.verdicts import UNLIKE as NOT_PAPER

L1, L2 = 4, 8


def maps_of(err) -> LinearMaps:
    return LinearMaps(arrays={"relative_error": np.asarray(err, float)}, meta={})


def stretched(L1=L1, L2=L2, noise=0.0, seed=0):
    """The paper's Fig 8: error grows with the distance from equal relative depth."""
    m, n = np.meshgrid(np.arange(L1 + 1) / L1, np.arange(L2 + 1) / L2, indexing="ij")
    rng = np.random.default_rng(seed)
    return maps_of(0.1 + 0.8 * np.abs(n - m) + noise * rng.random(m.shape))


def same_index(L1=L1, L2=L2):
    """Same layers first, something new after: shallow layer m best predicts deep layer m."""
    m, n = np.meshgrid(np.arange(L1 + 1), np.arange(L2 + 1), indexing="ij")
    return maps_of(0.1 + 0.8 * np.abs(n - m) / L2)


def untrained(seed=0, L1=L1, L2=L2):
    """What a random target gives: every deep layer is predicted about equally badly, the first best."""
    rng = np.random.default_rng(100 + seed)
    n = np.arange(L2 + 1) / L2
    return maps_of(0.6 + 0.05 * n[None, :] + 0.01 * rng.random((L1 + 1, L2 + 1)))


CONTROLS = [untrained(s) for s in range(3)]


def test_paper_pattern_beyond_the_controls_is_the_papers_verdict():
    f = F.findings(stretched(), CONTROLS)
    assert f.verdicts["reading"] == "equal relative depth"
    assert f.verdicts["diagonal"] == "yes"
    assert f.verdicts["vs_control"] == "differs"
    assert f.verdicts["paper_pattern"] == PAPER
    assert f.numbers["offset"] == pytest.approx(0.0, abs=0.07)
    assert f.text["verdict_text"].startswith("As in the paper")


def test_a_control_like_result_is_not_the_paper():
    # the "trained" pair is just another untrained target: it cannot beat the other controls
    f = F.findings(untrained(7), CONTROLS)
    assert f.verdicts["paper_pattern"] != PAPER
    assert f.verdicts["vs_control"] != "differs"
    assert f.verdicts["learned_structure"] == "no"
    assert "As in the paper" not in f.text["verdict_text"]


def test_a_diagonal_the_controls_also_have_is_not_distinguishable():
    controls = [stretched(noise=0.02, seed=s) for s in range(3)]
    f = F.findings(stretched(noise=0.02, seed=9), controls)
    assert f.verdicts["diagonal"] == "yes"
    assert f.verdicts["paper_pattern"] == SAME_AS_CONTROL
    assert "not distinguishable from the control" in f.text["verdict_text"]


@pytest.mark.parametrize("seed", range(25))
def test_pure_noise_is_never_the_paper(seed):
    rng = np.random.default_rng(seed)
    f = F.findings(maps_of(rng.random((L1 + 1, L2 + 1))), CONTROLS)
    assert f.verdicts["paper_pattern"] != PAPER


def test_same_index_matching_is_not_the_paper():
    f = F.findings(same_index(), CONTROLS)
    assert f.verdicts["reading"] == "same layer index"
    assert f.verdicts["paper_pattern"] == NOT_PAPER
    assert "same-index" in f.text["verdict_text"]


def test_equal_depths_cannot_tell_the_hypotheses_apart():
    f = F.findings(stretched(4, 4), [untrained(s, 4, 4) for s in range(3)])
    assert f.verdicts["reading"] == "undetermined"
    assert f.verdicts["paper_pattern"] == NOT_PAPER


def test_a_diagonal_that_moves_back_is_not_clean():
    err = stretched().arrays["relative_error"].copy()
    err[2, :] = err[4, :]  # source layer 2's best target jumps to the end, then back
    err[2, 8] = 0.0
    f = F.findings(maps_of(err), CONTROLS)
    assert f.numbers["monotone"] < F.MONOTONE
    assert f.verdicts["diagonal"] == "no" and f.verdicts["paper_pattern"] == NOT_PAPER


def test_without_controls_nothing_is_attributed_to_training():
    f = F.findings(stretched(), [])
    assert f.verdicts["paper_pattern"] == INCONCLUSIVE
    assert "no control" in f.text["verdict_text"]


def test_one_control_seed_sets_the_bound_at_its_value():
    c = untrained(0)
    f = F.findings(stretched(), [c])
    assert f.numbers["control_offset_bound"] == pytest.approx(F.describe(c)["offset"])
    assert "one seed" in f.text["control_text"]


def test_learned_structure_needs_more_row_contrast_than_the_controls():
    assert F.findings(stretched(), CONTROLS).verdicts["learned_structure"] == "yes"
    flat = maps_of(np.full((L1 + 1, L2 + 1), 0.5))
    assert F.findings(flat, CONTROLS).verdicts["learned_structure"] == "no"


def test_identity_check_passes_only_when_the_diagonal_vanishes():
    ident = 0.3 * (1 - np.eye(L2 + 1))
    assert F.findings(stretched(), CONTROLS, identity=maps_of(ident)).verdicts["identity"] == "passed"
    ident[3, 3] = 0.01
    f = F.findings(stretched(), CONTROLS, identity=maps_of(ident))
    assert f.verdicts["identity"] == "failed" and "pipeline is wrong" in f.text["identity_text"]


def test_absent_pair_fills_every_text_slot():
    f = F.absent("no pair given")
    full = F.findings(stretched(), CONTROLS, identity=maps_of(np.zeros((L2 + 1, L2 + 1))))
    assert set(full.text) <= set(f.text)
    assert all("no pair given" in t for t in f.text.values())


def test_weighting_says_whether_the_best_targets_change():
    a = stretched()
    same = F.weighting(a, maps_of(a.arrays["relative_error"] + 0.01), {"this": "least squares", "other": "weighted"})
    assert same.verdicts["same_best_targets"] == "yes" and "the same under both fits" in same.text["weighting_text"]
    other = F.weighting(a, same_index(), {"this": "least squares", "other": "weighted"})
    assert other.verdicts["same_best_targets"] == "no"


def test_bad_matrix_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        F.describe(np.zeros(3))


def test_a_best_match_path_that_never_moves_is_not_reported_as_moving_forward():
    n = np.arange(L2 + 1) / L2
    flat = maps_of(0.6 + 0.05 * n[None, :] + np.zeros((L1 + 1, 1)))  # every source layer's best target is deep layer 1
    f = F.findings(flat, CONTROLS)
    assert set(F.describe(flat)["best"].values()) == {1}
    assert "never moves: every best match is layer 1" in f.text["matrix_text"]
    assert "forward in 100 %" not in f.text["matrix_text"]
    g = F.findings(stretched(), CONTROLS)
    assert "moves forward in 100 % of steps, stays in 0 % and moves back in 0 %" in g.text["matrix_text"]


# --- the chapter's setup (measure, figures, tables, run info) on both sides of each switch ----------


def test_without_a_pair_every_slot_says_why_and_nothing_is_drawn_or_tabulated(tmp_path, monkeypatch):
    pair = F.PairRun(why="`m` is not a pair")
    assert not pair.measured and pair.made_by() is None
    f = F.page_findings(pair, window=128, seed=0)
    assert f.text["verdict_text"] == "Not measured: `m` is not a pair" and f.verdicts["paper_pattern"] == NOT_TESTABLE
    for which in F.FIGURES:
        assert F.figure(pair, which) == (None, None, "`m` is not a pair")
    assert F.tables(pair) == []
    assert F.run_info(pair, "m", window=128, seed=0, weighting="none", controls=True, n_controls=3) == (
        None,
        {"requested_model": "m", "note": "no model pair: nothing measured"},
    )
    monkeypatch.setenv("EFFDEPTH_CURVES", str(tmp_path / "curves.json"))
    F.save_curves(pair)
    assert not (tmp_path / "curves.json").exists()  # no curves without a pair


def test_a_pair_without_controls_or_sgd_draws_neither_and_says_they_were_switched_off():
    pair = F.PairRun(src=object(), tgt=object(), result=stretched())
    assert pair.measured and pair.identity is None and pair.sgd is None
    assert F.figure(pair, "controls") == (None, None, F.SWITCHED_OFF)
    assert F.figure(pair, "sgd") == (None, None, F.SWITCHED_OFF)


def test_the_other_weighting_and_the_scaled_sgd_recipe():
    assert F.PairRun(weighting="none").other == "relative" and F.PairRun(weighting="relative").other == "none"
    recipe = F.sgd_recipe(1000, 8)
    assert recipe.steps == 1000 and recipe.batch_windows == 8 and recipe.warmup == 200 and recipe.cache_activations
    assert recipe.eval_at[0] == 20 and recipe.eval_at[-1] == 1000 and len(recipe.eval_at) == 8
    assert F.sgd_recipe(20, 4).warmup == 4  # a fifth of a short run


def test_the_paper_setting_projection_is_a_glued_sentence():
    assert "Projection for the paper's setting" in F.paper_setting().text["paper_setting_text"]
