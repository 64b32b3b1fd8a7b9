"""§3.1 reasoning: do second-half layers write less into the residual than an untrained model's do?

Rules (the methods page states them, with their simulated error rates):

- **The paper's shape** (`SHAPE`): a steady first half and a drop around the middle, not any fall.
  Per prompt, on the layer's relative contribution ‖a_l + m_l‖/‖h_l‖ (the bars of Fig 2a) in log
  scale: a straight line is fitted to the first half's layers 1 … L/2−1 (layer 0 writes onto the bare
  embedding), and `mid_drops` is how far the second half's layers L/2 … L−2 lie below its
  continuation, on average (the last layer, which rises in the paper, is left out), capped by the
  log of first- over second-half mean (a second half above the first is never a drop). A pre-norm
  network at initialisation falls smoothly and slower and slower (below its own first-half trend's
  continuation: negative); a steady-then-drop curve gives the log of the drop (Llama 70B: about
  log 4); a flat or steadily falling one about 0. `verdicts.decide` with threshold and margin log 1.25.
- **The turn of the cosines** (`COS_TURN`): per prompt, the second half's mean layer cosine minus the
  first half's (layer 0 left out); threshold 0.1, margin 0.05.
- Descriptive: `half_ratio` (second-half over first-half mean relative contribution, per prompt, its
  mean and t-interval, against the control's), the knee of the curve (`stats.change_point`).
"""

from __future__ import annotations

import numpy as np

from effdepth import stats, verdicts
from effdepth.chapters import CONTROL_TOO, NOT_TESTABLE, PAPER, UNLIKE, Findings, record

MIN_LAYERS = 3  # halves leave layer 0 out: a 2-layer model has no halves to compare
MIN_SHAPE_LAYERS = 5  # a first-half trend needs two layers (1, 2) and a second half one (L/2 … L−2)

SHAPE = verdicts.Rule(
    name="contributions.shape",
    statistic="per prompt: how far the second half's log relative contribution lies below the first half's own straight-line trend (and below the first half)",
    direction=+1,
    threshold=float(np.log(1.25)),
    margin=float(np.log(1.25)),
    effect="the second half writes at least 1.25× less than the first half's own trend predicts, and 1.25× less than the control's does",
    paper="Llama 3.1 70B: about 0.15–0.2 per layer through the first half, below 0.05 after the middle (a drop of about log 4)",
)
COS_TURN = verdicts.Rule(
    name="contributions.cos_turn",
    statistic="per prompt: mean layer cosine of the second half minus that of the first half (layer 0 left out)",
    direction=+1,
    threshold=0.1,
    margin=0.05,
    effect="the second half's writes align with the residual by at least 0.1 more in cosine than the first half's, 0.05 more than in the control",
    paper="Llama 3.1 70B: negative (erasing) cosines in the first half, positive (strengthening) after the middle",
)


def curve(result, column: str = "rel_layer") -> np.ndarray:
    return np.asarray(result.arrays[f"mean_{column}"], dtype=float)


def halves(result, column: str = "rel_layer") -> tuple[float, float]:
    """(first, second): mean of `column` over layers 1 … L/2−1 and over L/2 … L−1 (layer 0 left out;
    NaN for a model of fewer than 3 layers)."""
    v = curve(result, column)
    L = len(v)
    if L < MIN_LAYERS:
        return float("nan"), float("nan")
    h = max(2, L // 2)
    return float(v[1:h].mean()), float(v[h:].mean())


def prompt_ratios(result, column: str = "rel_layer") -> np.ndarray:
    """Per prompt: second-half over first-half mean relative contribution (layer 0 left out)."""
    key = f"prompt_{column}"
    if key not in result.arrays:
        raise ValueError(
            f"This contributions result has no per-prompt values ('{key}'); recompute it with this version of effdepth."
        )
    v = np.asarray(result.arrays[key], dtype=float)  # [P, L]
    L = v.shape[1]
    if L < MIN_LAYERS:  # layer 0 left out, one layer is left: no halves
        return np.full(v.shape[0], np.nan)
    h = max(2, L // 2)
    first, second = v[:, 1:h].mean(axis=1), v[:, h:].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(first > 0, second / first, np.nan)


def mid_drops(result, column: str = "rel_layer") -> np.ndarray:
    """Per prompt, the SHAPE rule's statistic: min(M, log(h1/h2)). M = the mean, over the second half's
    layers L/2 … L−2 (the last layer, which rises in the paper, left out), of how far log ‖Δ_l‖/‖h_l‖
    lies below the straight line fitted to the first half's layers 1 … L/2−1 (log scale): the drop
    around the middle beyond the first half's own trend. h1, h2: the two halves' mean contributions (a
    second half above the first is never a drop). NaN for L < 5."""
    v = np.asarray(result.arrays[f"prompt_{column}"], dtype=float)  # [P, L]
    L = v.shape[1]
    if L < MIN_SHAPE_LAYERS:
        return np.full(v.shape[0], np.nan)
    h = L // 2
    first, second = np.arange(1, h), np.arange(h, L - 1)
    logv = np.log(np.clip(v, 1e-12, None))
    xc = first - first.mean()
    slope = (logv[:, first] - logv[:, first].mean(axis=1, keepdims=True)) @ xc / max((xc**2).sum(), 1e-12)
    pred = logv[:, first].mean(axis=1, keepdims=True) + slope[:, None] * (second - first.mean())[None, :]
    m = (pred - logv[:, second]).mean(axis=1)
    halves_gap = np.log(v[:, first].mean(axis=1) / np.clip(v[:, second].mean(axis=1), 1e-12, None))
    return np.minimum(m, halves_gap)


def cos_rises(result) -> np.ndarray:
    """Per prompt: mean layer cosine of the second half minus that of the first (the COS_TURN statistic)."""
    v = np.asarray(result.arrays["prompt_cos_layer"], dtype=float)
    L = v.shape[1]
    if L < MIN_LAYERS:
        return np.full(v.shape[0], np.nan)
    h = max(2, L // 2)
    return v[:, h:].mean(axis=1) - v[:, 1:h].mean(axis=1)


def shape_verdict(result, controls: list) -> verdicts.Verdict:
    L = len(curve(result))
    why = f"a {L}-layer model has no first-half trend to continue (layers 1 … L/2−1)" if L < MIN_SHAPE_LAYERS else ""
    return verdicts.decide(SHAPE, mid_drops(result), [mid_drops(c) for c in controls], not_testable=why)


def cos_verdict(result, controls: list) -> verdicts.Verdict:
    L = len(curve(result))
    why = f"with layer 0 left out a {L}-layer model has no two halves" if L < MIN_LAYERS else ""
    return verdicts.decide(COS_TURN, cos_rises(result), [cos_rises(c) for c in controls], not_testable=why)


def half_ratio(result, column: str = "rel_layer") -> tuple[float, float, float, float]:
    """(mean, lo, hi, se) of the per-prompt half ratio: its mean over prompts, 95 % t-interval, standard error."""
    r = prompt_ratios(result, column)
    if not np.isfinite(r).any():
        return (float("nan"),) * 3 + (0.0,)
    m, lo, hi = stats.mean_ci(r)
    ok = r[np.isfinite(r)]
    se = float(ok.std(ddof=1) / np.sqrt(ok.size)) if ok.size > 1 else 0.0
    return m, lo, hi, se


def knee(result) -> dict:
    """stats.change_point of the mean layer relative contribution; x = layer / L."""
    v = curve(result)
    return stats.change_point(v, x=np.arange(len(v)) / len(v))


def first_positive_cos(result) -> int | None:
    """The first layer from which the layer cosine stays ≥ 0 up to the last layer but one (None if none)."""
    cos = curve(result, "cos_layer")
    L = len(cos)
    return next((l for l in range(L) if (cos[l : max(l + 1, L - 1)] >= 0).all()), None)


def _layers(ls) -> str:
    ls = list(ls)
    return ", ".join(map(str, ls)) if ls else "none"


def _range(values) -> str:
    v = np.asarray(values, dtype=float)
    lo, hi = f"{v.min():.2f}", f"{v.max():.2f}"
    return lo if lo == hi else f"{lo}–{hi}"


def findings(result, controls: list) -> Findings:
    """The §3.1 findings of `result` (trained model) against `controls` (its random-init controls)."""
    if not controls:
        raise ValueError("contributions.findings needs at least one control result (the random-init model).")
    L = len(curve(result))
    first, second = halves(result)
    ratio, ratio_lo, ratio_hi, _ = half_ratio(result)
    c_ratios = [half_ratio(c)[0] for c in controls]
    a_ratio = half_ratio(result, "rel_attn")[0]
    ca = [half_ratio(c, "rel_attn")[0] for c in controls]
    kn, ckn = knee(result), [knee(c) for c in controls]
    rel0, c_rel0 = float(curve(result)[0]), [float(curve(c)[0]) for c in controls]
    shape, cos = shape_verdict(result, controls), cos_verdict(result, controls)
    n = len(controls)
    ctl = f"the random-init control{'s' if n > 1 else ''} ({n} seed{'s' if n > 1 else ''})"
    numbers = {
        "n_layers": L,
        "n_tokens": int(result.arrays["n_tokens"]) if "n_tokens" in result.arrays else 0,
        "first_half_rel": first,
        "second_half_rel": second,
        "half_ratio": ratio,
        "half_ratio_lo": ratio_lo,
        "half_ratio_hi": ratio_hi,
        "control_half_ratio_min": float(np.min(c_ratios)),
        "control_half_ratio_max": float(np.max(c_ratios)),
        "attn_half_ratio": a_ratio,
        "control_attn_half_ratio": float(np.mean(ca)),
        "layer0_rel": rel0,
        "control_layer0_rel": float(np.mean(c_rel0)),
        "last_layer_rel": float(curve(result)[-1]),
        "knee_layer": kn["index"],
        "knee_depth": kn["x"],
        "control_knee_layer": int(ckn[0]["index"]),
        "control_knee_depth": float(np.mean([c["x"] for c in ckn])),
        "cos_first_half": halves(result, "cos_layer")[0],
        "cos_second_half": halves(result, "cos_layer")[1],
        "min_cos_io": float(curve(result, "cos_io").min()),
        "control_min_cos_io": float(np.min([curve(c, "cos_io").min() for c in controls])),
    }
    f = Findings(numbers=numbers)
    record(f, "paper_shape", shape, SHAPE)
    record(f, "cos_turn", cos, COS_TURN)
    drop = (
        f"The second half lies **{shape.effect:.2f}** (log scale) below the continuation of the first half's own trend (mean over "
        f"{shape.n} prompts, {100 - 200 * SHAPE.alpha:.0f} % interval {shape.lo:.2f} to {shape.hi:.2f}), against "
        f"{_num(shape.control)} in {ctl}; the paper's shape needs at least {SHAPE.threshold:.2f} (log 1.25; Llama 70B: about log 4)."
        if shape.state != NOT_TESTABLE
        else ""
    )
    shape_text = {
        PAPER: "**As in the paper**: a steady first half and a drop around the middle, beyond the control by more than log 1.25.",
        CONTROL_TOO: "The curve has the paper's shape, but **the untrained architecture shows it too** (the control's drop is as large).",
        UNLIKE: (
            "**Unlike the paper**: no steady-then-drop shape here"
            + (
                f"; the second half still writes {ratio:.2f} of the first half's share, against {_range(c_ratios)} in the control: "
                "the fall that a pre-norm network has at initialisation, training made smaller, not larger."
                if ratio > max(c_ratios)
                else "."
            )
        ),
        NOT_TESTABLE: f"The paper's shape is **not testable here**: {shape.reason}.",
    }.get(shape.state, f"The paper's shape is **{shape.words()}**.")
    cos_text = {
        PAPER: f"**As in the paper** the writes turn from erasing towards strengthening: the second half's mean cosine exceeds the first half's by {cos.effect:.2f}, beyond {ctl}.",
        CONTROL_TOO: f"The writes turn towards strengthening (rise {cos.effect:.2f}), but **the untrained architecture shows it too** (control {_num(cos.control)}).",
        UNLIKE: f"**Unlike the paper**, the writes do not turn from erasing to strengthening: the second half's mean cosine exceeds the first half's by only {cos.effect:.2f} (control {_num(cos.control)}).",
        NOT_TESTABLE: f"The turn of the cosines is **not testable here**: {cos.reason}.",
    }.get(
        cos.state, f"The turn of the cosines is **{cos.words()}** (rise {cos.effect:.2f}, control {_num(cos.control)})."
    )
    neg = [int(l) for l in np.flatnonzero(curve(result, "cos_layer") < 0)]
    c_neg = [int(l) for l in np.flatnonzero(curve(controls[0], "cos_layer") < 0)]
    turn, c_turn = first_positive_cos(result), first_positive_cos(controls[0])
    changed = [int(l) for l in np.flatnonzero(curve(result, "cos_io") < 0.9)]
    f.text.update(
        {
            "shape_text": (
                f"Leaving layer 0 out, layers in the first half add on average **{first:.2f}** of the residual's "
                f"norm per layer, those in the second half **{second:.2f}**: a second-to-first-half ratio of "
                f"**{ratio:.2f}** (mean over prompts of each prompt's ratio; 95 % interval {ratio_lo:.2f}–{ratio_hi:.2f}), "
                f"against {_range(c_ratios)} in {ctl}. A ratio below 1 alone is not the paper's finding: an untrained pre-norm "
                f"network falls too. {drop} {shape_text}"
            ),
            "detail_text": (
                f"Layer 0 writes {rel0:.2f} times the residual's norm (control {np.mean(c_rel0):.2f}); attention alone "
                f"has a ratio of {a_ratio:.2f} (control {np.mean(ca):.2f}); the last layer contributes "
                f"{numbers['last_layer_rel']:.2f}."
            ),
            "knee_text": (
                f"A two-segment fit (a straight line on each side) to the contribution curve (layer 0 "
                f"{'left out: it dominates' if kn['excluded_first'] else 'kept'}) puts its knee at layer "
                f"**{kn['index']}** (relative depth {kn['x']:.2f}); the control's knee is at relative depth "
                f"{_range([c['x'] for c in ckn])}."
                + (
                    ""
                    if shape.state == PAPER
                    else " Without the paper's steady-then-drop shape this knee marks no transition, so no other chapter compares with it."
                )
            ),
            "cos_text": (
                f"The layer write is anti-aligned with the residual (erasing) at layers {_layers(neg)} (control: "
                f"{_layers(c_neg)}); the cosine stays non-negative from layer "
                f"{turn if turn is not None else '— (never)'} on (control: {c_turn if c_turn is not None else '— (never)'}). "
                f"{cos_text}"
            ),
            "io_text": (
                f"The residual after a layer has a cosine of at least 0.9 with the one before it except at layers "
                f"{_layers(changed)} (lowest {numbers['min_cos_io']:.3f}; control lowest {numbers['control_min_cos_io']:.3f}): "
                "most layers change the stream only a little, which is why the relative measures above, not the raw "
                "similarity, are informative."
            ),
        }
    )
    if L < MIN_LAYERS:
        f.text["shape_text"] = (
            f"With layer 0 left out, a {L}-layer model has no two halves to compare, so there is no verdict on the paper's shape."
        )
    return f


def _num(x: float) -> str:
    return f"{x:.2f}" if np.isfinite(x) else "n/a"
