"""The five verdict states and the two decision rules (effdepth.verdicts), on both sides: the paper's
pattern gets the paper's verdict, a null, the opposite, a control that shows it too and a small
sample do not."""

import numpy as np
import pytest

from effdepth import stats
from effdepth import verdicts as V

RULE = V.Rule(
    "test.rule",
    "a per-prompt number",
    +1,
    threshold=0.5,
    margin=0.2,
    effect="0.5 and 0.2 over the control",
    paper="about 1",
)
RNG = np.random.default_rng(0)


def _draw(mean, n, sd=0.2, seed=0):
    return mean + np.random.default_rng(seed).normal(0, sd, n)


def _controls(mean, k=3, n=5, seed=10):
    return [_draw(mean, n, seed=seed + i) for i in range(k)]


def test_the_papers_pattern_beyond_the_control_is_as_in_the_paper():
    v = V.decide(RULE, _draw(1.0, 20), _controls(0.0))
    assert v.state == V.AS_PAPER and v.words() == "as in the paper"
    assert v.lo > RULE.threshold and v.diff_lo > 0 and v.control == pytest.approx(0.0, abs=0.2)


def test_a_control_that_shows_it_too_is_said_so():
    v = V.decide(RULE, _draw(1.0, 20), _controls(1.0))
    assert v.state == V.CONTROL_TOO


def test_the_opposite_is_unlike_the_paper():
    assert V.decide(RULE, _draw(-1.0, 20), _controls(0.0)).state == V.UNLIKE
    # below the control decisively, though above the threshold: training made it smaller than untrained
    assert V.decide(RULE, _draw(0.3, 20, sd=0.05), _controls(1.5, n=20)).state in (V.UNLIKE, V.CONTROL_TOO)


def test_a_small_sample_is_inconclusive_and_names_the_n_that_would_decide():
    v = V.decide(RULE, _draw(0.7, 3, sd=0.4, seed=3), _controls(0.0))
    assert v.state == V.INCONCLUSIVE and v.n == 3
    assert (
        v.n_needed is not None
        and v.n_needed > 3
        and v.words() == f"inconclusive at n = 3 (would need about n = {v.n_needed})"
    )
    # and at that n the same effect decides
    assert V.decide(RULE, _draw(0.7, v.n_needed * 2, sd=0.4, seed=4), _controls(0.0)).state == V.AS_PAPER


def test_a_degenerate_control_is_not_compared_and_the_reason_kept():
    v = V.decide(RULE, _draw(1.0, 20), _controls(0.0), degenerate="its output never moves")
    assert v.state == V.AS_PAPER and v.reason == "its output never moves" and np.isnan(v.diff)


def test_not_testable_keeps_its_reason():
    v = V.decide(RULE, _draw(1.0, 20), not_testable="the model answers at chance")
    assert v.words() == "not testable here (the model answers at chance)"


def test_a_null_trained_model_rarely_passes():
    """The trained model one more draw of the controls' distribution, with seed-to-seed spread."""
    passed = 0
    for i in range(300):
        r = np.random.default_rng(i)
        seeds = r.normal(0.6, 0.1, 4)  # each seed's own mean: above the threshold, so the shape "shows"
        trained = seeds[0] + r.normal(0, 0.2, 20)
        ctl = [s + r.normal(0, 0.2, 5) for s in seeds[1:]]
        passed += V.decide(RULE, trained, ctl).state == V.AS_PAPER
    assert passed / 300 <= 0.05


def test_equivalence_both_sides():
    flat = V.Rule("flat", "slope", +1, threshold=0.0, margin=0.5, effect="", paper="")
    assert V.decide_equivalence(flat, _draw(0.0, 40, sd=0.3)).state == V.AS_PAPER
    assert V.decide_equivalence(flat, _draw(1.5, 40, sd=0.3)).state == V.UNLIKE
    v = V.decide_equivalence(flat, _draw(0.0, 4, sd=1.0))
    assert v.state == V.INCONCLUSIVE and v.n_needed and v.n_needed > 4
    # an effect exactly at the margin is shown flat at most α of the time
    shown = np.mean(
        [V.decide_equivalence(flat, _draw(0.5, 40, sd=0.3, seed=s)).state == V.AS_PAPER for s in range(400)]
    )
    assert shown <= 0.03


def test_combine_all_needs_every_test():
    assert V.combine_all([V.AS_PAPER, V.AS_PAPER, V.NOT_TESTABLE]) == V.AS_PAPER
    assert V.combine_all([V.AS_PAPER, V.UNLIKE]) == V.UNLIKE
    assert V.combine_all([V.AS_PAPER, V.INCONCLUSIVE]) == V.INCONCLUSIVE
    assert V.combine_all([V.NOT_TESTABLE]) == V.NOT_TESTABLE


def test_holm_rejects_in_step_down_order():
    assert list(V.holm([0.001, 0.04, 0.5], 0.05)) == [True, False, False]
    assert list(V.holm([0.01, 0.02, 0.03], 0.05)) == [True, True, True]
    assert not V.holm([1 / 32] * 17, 0.05).any()  # five agreeing seeds per statement never survive 17


def test_a_bound_no_statistic_can_reach_is_named():
    assert not stats.reachable(4.61, "greater", (-1.0, 1.0))  # a stretch in [−1, 1] above 4.61
    assert not stats.reachable(-0.13, "less", (0.0, np.inf))  # a distance below −0.13
    assert stats.reachable(0.5, "greater", (-1.0, 1.0)) and stats.reachable(0.2, "less", (0.0, np.inf))
