"""§3.1 rules on synthetic results: the paper's pattern gives the paper's verdict; a random-init-like
result, pure noise or the opposite trend do not."""

import json

import numpy as np
import pytest

from effdepth.chapters import NOT_PAPER, NOT_TESTABLE, PAPER, SAME_AS_CONTROL
from effdepth.chapters import contributions as ch
from effdepth.measures.contributions import MAX_COLUMNS, MEAN_COLUMNS, Contributions


def fake(rel, cos=None, cos_io=None, n_prompts=20, noise=0.05, seed=0):
    """A contributions result with mean curve `rel`; per-prompt rows are `rel` times (1 + noise·N(0, 1))."""
    rel = np.asarray(rel, float)
    L = len(rel)
    rows = np.abs(rel) * np.abs(1 + noise * np.random.default_rng(seed).standard_normal((n_prompts, L)))
    cols = {c: np.full(L, 0.5) for c in MEAN_COLUMNS}
    cols.update(rel_layer=rel, rel_attn=0.6 * rel, rel_mlp=0.6 * rel, norm_h=np.arange(1, L + 1.0))
    cols["cos_layer"] = np.zeros(L) if cos is None else np.asarray(cos, float)
    cols["cos_io"] = np.full(L, 0.95) if cos_io is None else np.asarray(cos_io, float)
    arrays = {f"mean_{c}": v for c, v in cols.items()}
    arrays.update({f"max_{c}": 2 * cols[c] for c in MAX_COLUMNS})
    arrays["n_tokens"] = np.array(100)
    cos_rows = cols["cos_layer"] + 0.05 * np.random.default_rng(seed + 1).standard_normal((n_prompts, L))
    arrays.update(prompt_rel_layer=rows, prompt_rel_attn=0.6 * rows, prompt_cos_layer=cos_rows)
    return Contributions(arrays=arrays, meta={"model": {"model": "synthetic"}})


def init_like(seed, L=8):
    """A pre-norm random-init curve: relative contribution ~ 1/sqrt(l+1), a little seed noise."""
    r = np.random.default_rng(seed)
    return 1 / np.sqrt(np.arange(L) + 1.0) * (1 + 0.02 * r.standard_normal(L))


CONTROLS = [fake(init_like(s), seed=100 + s) for s in range(3)]


def steady_then_drop(L=8, hi=0.6, lo=0.12):
    """The paper's Fig 2a shape: layer 0 large, a steady first half, a drop at the middle."""
    return np.array([4.0] + [hi if l < L / 2 else lo for l in range(1, L)])


def test_paper_pattern_gives_the_paper_verdict():
    f = ch.findings(fake(steady_then_drop()), CONTROLS)
    assert f.verdicts["paper_shape"] == PAPER
    assert f.numbers["paper_shape_lo"] > ch.SHAPE.threshold > f.numbers["paper_shape_control"]
    assert "**As in the paper**" in f.text["shape_text"]
    assert f.numbers["knee_layer"] in (3, 4) and abs(f.numbers["knee_depth"] - 0.5) <= 0.125
    assert json.loads(f.text["paper_shape_card"])["state"] == PAPER  # what the scorecard reads


def test_paper_pattern_at_half_size_still_gives_the_paper_verdict():
    f = ch.findings(fake(steady_then_drop(lo=0.6 * (0.12 / 0.6) ** 0.5)), CONTROLS)
    assert f.verdicts["paper_shape"] == PAPER


def test_random_init_like_result_is_not_the_paper():
    f = ch.findings(fake(init_like(11), seed=11), CONTROLS)
    assert f.numbers["half_ratio"] < 1  # "second half less", as every control shows: not the paper's shape
    assert f.verdicts["paper_shape"] == NOT_PAPER


def test_a_smooth_steep_decay_is_not_the_paper_shape():
    """Half ratio far below 1, but no steady first half: a pre-norm-like decay, steeper."""
    f = ch.findings(fake(np.append(4.0, 2.0 ** -np.arange(1, 8.0))), CONTROLS)
    assert f.numbers["half_ratio"] < 0.2 and f.verdicts["paper_shape"] == NOT_PAPER


def test_a_trained_model_flatter_than_its_control_is_unlike_the_paper():
    """SmolLM2-135M's case: a ratio of 0.94 against the controls' 0.4: training made the fall smaller."""
    f = ch.findings(fake([30.0, 0.6, 0.6, 0.6, 0.58, 0.57, 0.56, 0.56]), CONTROLS)
    assert f.verdicts["paper_shape"] == NOT_PAPER and "training made smaller" in f.text["shape_text"]


def test_noise_never_gives_the_paper_verdict():
    for i in range(50):  # every prompt's curve is independent noise: no common shape
        noise = fake(np.full(8, 0.5), noise=0.6, seed=i)
        assert ch.findings(noise, CONTROLS).verdicts["paper_shape"] != PAPER


def test_rising_contribution_is_not_the_paper():
    f = ch.findings(fake(np.linspace(0.1, 0.9, 8)), CONTROLS)
    assert f.verdicts["paper_shape"] == NOT_PAPER and "**Unlike the paper**" in f.text["shape_text"]


def test_few_prompts_are_inconclusive_and_say_how_many_would_do():
    """A weak drop measured on 3 noisy prompts cannot decide: the words give n and the n needed."""
    f = ch.findings(fake(steady_then_drop(lo=0.45), n_prompts=3, noise=0.3, seed=5), CONTROLS)
    words = f.verdicts["paper_shape"]
    assert words.startswith("inconclusive at n = 3") and "would need" in words


def test_knee_skips_a_dominant_layer_0():
    rel = np.array([30.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.2, 0.1])
    k = ch.knee(fake(rel))
    assert k["excluded_first"] and k["index"] == 6  # from layer 6 on the curve follows its second line


def test_cos_turn_both_sides():
    rel = [4.0, 0.6, 0.6, 0.6, 0.12, 0.12, 0.12, 0.15]
    turning = [-0.3, -0.2, -0.2, -0.1, 0.1, 0.2, 0.2, 0.1]
    f = ch.findings(fake(rel, cos=turning), CONTROLS)
    assert f.verdicts["cos_turn"] == PAPER and f.numbers["cos_turn_lo"] > ch.COS_TURN.threshold
    controls_turn = [fake(rel, cos=turning, seed=s) for s in range(1, 4)]
    assert ch.findings(fake(rel, cos=turning), controls_turn).verdicts["cos_turn"] == SAME_AS_CONTROL
    assert ch.findings(fake(rel, cos=np.full(8, 0.2)), CONTROLS).verdicts["cos_turn"] == NOT_PAPER
    falling = [0.3, 0.2, 0.2, 0.1, -0.1, -0.2, -0.2, -0.1]  # the opposite turn
    assert ch.findings(fake(rel, cos=falling), CONTROLS).verdicts["cos_turn"] == NOT_PAPER


def test_a_control_among_controls_rarely_passes_the_bound():
    """A further random-init seed judged against three others is almost never "as in the paper"."""
    rng = np.random.default_rng(3)
    passed = {"cos_turn": 0, "paper_shape": 0}
    for i in range(100):
        pool = [
            fake(init_like(4 * i + s), cos=np.append(-0.3, 0.1 * rng.standard_normal(7)), seed=4 * i + s)
            for s in range(4)
        ]
        v = ch.findings(pool[0], pool[1:]).verdicts
        for key in passed:
            passed[key] += v[key] == PAPER
    assert passed["cos_turn"] <= 5 and passed["paper_shape"] <= 5, passed


def test_findings_need_a_control_and_say_when_there_are_no_halves():
    with pytest.raises(ValueError, match="control"):
        ch.findings(fake(init_like(0)), [])
    two = ch.findings(fake([1.0, 0.5]), [fake([1.0, 0.4], seed=1)])  # a 2-layer model: no halves, no crash
    assert two.verdicts["paper_shape"].startswith(NOT_TESTABLE) and "no two halves" in two.text["shape_text"]
