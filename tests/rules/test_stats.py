"""The shared statistics: coverage, equivalence, sign test, knees, unbiased halves (both sides of each rule)."""

import numpy as np
import pytest

from effdepth import stats


def test_mean_ci_covers_the_mean_at_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(1000):
        m, lo, hi = stats.mean_ci(rng.exponential(1.0, size=40), level=0.95)
        hits += lo <= 1.0 <= hi
    assert 0.92 <= hits / 1000 <= 0.98


def test_mean_ci_small_and_bad_input():
    m, lo, hi = stats.mean_ci([2.0])
    assert m == 2.0 and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError, match="at least one finite"):
        stats.mean_ci([np.nan])
    with pytest.raises(ValueError, match="level"):
        stats.mean_ci([1, 2], level=95)


def test_bootstrap_max_is_the_max():
    v = np.arange(10.0)
    mx, lo, hi = stats.bootstrap_max_ci(v)
    assert mx == 9.0 and lo <= hi <= 9.0


def test_slope_equivalence_flat_only_when_shown():
    rng = np.random.default_rng(1)
    x = np.repeat(np.arange(1, 6), 200)
    flat = stats.slope_equivalence(x, rng.normal(0, 1, x.size), margin=0.2)
    assert flat["verdict"] == "flat" and -0.2 < flat["tost_lo"] < flat["tost_hi"] < 0.2
    few = stats.slope_equivalence(x[::100], rng.normal(0, 1, x[::100].size), margin=0.2)
    assert few["verdict"] == "undetermined"  # too little data to show flatness
    for seed in range(20):  # a falling trend is never "flat", with little or much data
        r = np.random.default_rng(seed)
        for xs in (x, x[::50]):
            v = stats.slope_equivalence(xs, -0.5 * xs + r.normal(0, 1, xs.size), margin=0.2)["verdict"]
            assert v in ("falling", "undetermined")
    assert stats.slope_equivalence(x, -0.5 * x + rng.normal(0, 1, x.size), margin=0.2)["verdict"] == "falling"
    assert stats.slope_equivalence(x, 0.5 * x + rng.normal(0, 1, x.size), margin=0.2)["verdict"] == "rising"
    with pytest.raises(ValueError, match="margin"):
        stats.slope_equivalence(x, x, margin=0)


def test_sign_test_and_direction_verdict():
    assert stats.sign_test([1, 2, 3]) == {"n_pos": 3, "n": 3, "p": 0.125}
    assert stats.sign_test([1, -1, 0]) == {"n_pos": 1, "n": 2, "p": 0.75}
    assert stats.direction_verdict([1, 2, 3])["verdict"] == "not distinguishable from chance"
    assert stats.direction_verdict([1] * 6)["verdict"] == "consistent"  # p = 1/64
    assert stats.direction_verdict([-1] * 6)["verdict"] == "opposite"
    assert stats.direction_verdict([-1] * 6, expected=-1)["verdict"] == "consistent"


def test_differs_from_control_needs_more_than_the_spread():
    controls = [1.0, 1.2, 0.9]
    assert stats.differs_from_control(3.0, controls, "greater")
    assert not stats.differs_from_control(1.25, controls, "greater")  # beyond the extreme, not 2 sd
    assert not stats.differs_from_control(1.1, controls, "greater")
    assert not stats.differs_from_control(3.0, controls, "less")
    assert stats.differs_from_control(0.1, controls, "less")
    assert stats.differs_from_control(1.5, [1.0], "greater")
    assert not stats.differs_from_control(1.5, [1.0], "greater", spread=0.5)  # one control, prompt spread
    assert not stats.differs_from_control(float("nan"), controls, "greater")
    with pytest.raises(ValueError, match="direction"):
        stats.differs_from_control(1.0, controls, "up")


def _flat_then_falling(n, knee, rng, noise=0.05):
    x = np.arange(n, dtype=float)
    y = np.where(x < knee, 5.0, 5.0 - 4.5 * (x - knee) / (n - 1 - knee)) + rng.normal(0, noise, n)
    return y


def test_change_point_on_a_30_layer_curve_with_dominant_layer_0():
    rng = np.random.default_rng(0)
    y = _flat_then_falling(31, 20, rng)  # residuals 0..30, flat high until 2/3 depth
    y[0] = 60.0  # layer 0 writes a lot
    cp = stats.change_point(y, x=np.arange(31) / 30)
    assert cp["excluded_first"] and 19 <= cp["index"] <= 21
    assert abs(cp["x"] - 2 / 3) < 0.04 and cp["slope_after"] < cp["slope_before"]
    # the old rule (argmax of mean before minus mean after) lands at 1 here
    old = int(np.argmax([y[:k].mean() - y[k:].mean() for k in range(1, 31)])) + 1
    assert old == 1


def test_change_point_on_an_8_layer_curve():
    rng = np.random.default_rng(0)
    y = _flat_then_falling(9, 6, rng, noise=0.02)
    assert stats.change_point(y)["index"] == 6
    y[0] = 40
    assert stats.change_point(y)["index"] == 6
    assert stats.change_point(y, exclude_first=False)["excluded_first"] is False
    with pytest.raises(ValueError, match="finite"):
        stats.change_point([1, np.nan, 2, 3])
    assert stats.change_point([1.0, 1.0, 0.0])["index"] in (1, 2)  # a 3-point curve still has a knee (1-point segments)
    with pytest.raises(ValueError, match="at least 2 points"):
        stats.change_point([5.0])


def test_knees_agree_in_relative_depth():
    assert stats.knees_agree(0.66, 0.7)
    assert not stats.knees_agree(0.0, 0.5)  # a 2-layer model's neighbours do not agree by default


def test_halves_unbiased_on_noise():
    rng = np.random.default_rng(0)
    less, sig = 0, 0
    n = 400
    for i in range(n):
        M = np.triu(rng.uniform(0, 1, (8, 8)), 1)
        h = stats.halves(M, k=1, n_perm=200, seed=i)
        less += h["second"] < h["first"]
        sig += h["verdict"] == "second half less"
    assert 0.38 <= less / n <= 0.62  # chance, not the 83-90 % of max over L-1-s entries
    assert sig / n <= 0.1


def test_halves_finds_a_real_difference_and_checks_input():
    rng = np.random.default_rng(1)
    M = np.triu(rng.uniform(0.6, 1.0, (8, 8)), 1)
    M[4:] *= 0.1
    h = stats.halves(M, k=2, reduce="mean")
    assert h["verdict"] == "second half less" and h["first"] > h["second"] and len(h["scores"]) == 6
    Mrev = np.triu(rng.uniform(0.6, 1.0, (8, 8)), 1)
    Mrev[:4] *= 0.1
    assert stats.halves(Mrev, k=1)["verdict"] == "second half more"
    with pytest.raises(ValueError, match="square"):
        stats.halves(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="k must be"):
        stats.halves(np.zeros((4, 4)), k=3)


def test_change_point_takes_the_corner_whichever_segment_noise_gives_it():
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y = np.array([6, 6, 6, 6, 4, 2, 0], float) * (1 + 0.02 * rng.standard_normal(7))
        assert stats.change_point(y)["index"] == 3  # the fall starts at 3, the last flat point


def test_prediction_k_lets_a_further_control_seed_through_at_its_level():
    assert stats.prediction_k(3) == pytest.approx(4.303 * np.sqrt(4 / 3), rel=1e-3)
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4000, 4))
    k = stats.prediction_k(3)
    passed = np.mean([stats.differs_from_control(d[0], d[1:], "greater", k=k) for d in draws])
    loose = np.mean([stats.differs_from_control(d[0], d[1:], "greater", k=2.0) for d in draws])
    assert passed <= 0.035 and loose > 0.08  # k = 2 with 3 seeds lets about 1 in 9 through
    with pytest.raises(ValueError, match="at least 2"):
        stats.prediction_k(1)
