"""§3.1 reasoning: do second-half layers write less into the residual than an untrained model's do?

Rules (book/methods/contributions-rules.md states them for the reader):

- Halves leave layer 0 out (it writes onto the bare token embedding, often many times its norm):
  first half = layers 1 … L/2−1, second half = layers L/2 … L−1. `half_ratio` = the mean over prompts
  of each prompt's ratio (second-half mean relative contribution / first-half mean), with its 95 %
  Student-t interval over prompts.
- "paper_shape": the trained model shows the paper's shape when half_ratio < 1; it is the paper's
  (verdict "yes") only when the upper end of its interval also lies below the controls' bound
  (`stats.control_bound`, direction "less": below every control's ratio and below the controls' mean
  by more than `k` spreads (`chapters.control_k`: 4.97 for 3 seeds, 2 with one control); the spread is the standard deviation across control seeds, or with one
  control its per-prompt standard error); "not distinguishable from the control" when it shows the
  shape but does not pass the bound; "no" when half_ratio ≥ 1.
- The knee of the contribution curve: `stats.change_point` (two-segment least squares, a line per segment,
  layer 0 left out when it dominates), reported as a layer and as a relative depth layer/L.
- "cos_turn": the trained model shows the paper's turn from erasing to strengthening when the mean
  layer cosine of the first half (layer 0 left out) is negative and that of the second half
  positive; it is the paper's ("yes") only when the per-prompt rise (second-half minus first-half
  mean cosine) has an interval whose lower end exceeds the controls' bound (direction "greater").
"""

from __future__ import annotations

import numpy as np

from .. import stats
from . import NOT_PAPER, PAPER, SAME_AS_CONTROL, Findings, control_k, paper_verdict


MIN_LAYERS = 3  # halves leave layer 0 out: a 2-layer model has no halves to compare


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
        raise ValueError(f"This contributions result has no per-prompt values ('{key}'); recompute it with this version of effdepth.")
    v = np.asarray(result.arrays[key], dtype=float)  # [P, L]
    L = v.shape[1]
    if L < MIN_LAYERS:  # layer 0 left out, one layer is left: no halves
        return np.full(v.shape[0], np.nan)
    h = max(2, L // 2)
    first, second = v[:, 1:h].mean(axis=1), v[:, h:].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(first > 0, second / first, np.nan)


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


def cos_contrast(result) -> tuple[float, float, float, float]:
    """(mean, lo, hi, se) over prompts of: mean layer cosine of the second half − that of the first
    half (layer 0 left out, halves as for `half_ratio`). Positive: the writes turn from erasing
    towards strengthening with depth."""
    key = "prompt_cos_layer"
    if key not in result.arrays:
        raise ValueError(f"This contributions result has no per-prompt values ('{key}'); recompute it with this version of effdepth.")
    v = np.asarray(result.arrays[key], dtype=float)
    L = v.shape[1]
    if L < MIN_LAYERS:
        return (float("nan"),) * 3 + (0.0,)
    h = max(2, L // 2)
    d = v[:, h:].mean(axis=1) - v[:, 1:h].mean(axis=1)
    m, lo, hi = stats.mean_ci(d)
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    return m, lo, hi, se


def _cos_turns(result) -> bool:
    """The paper's turn: the first half's mean layer cosine is negative, the second half's positive."""
    first, second = halves(result, "cos_layer")
    return bool(first < 0 < second)


def _layers(ls) -> str:
    ls = list(ls)
    return ", ".join(map(str, ls)) if ls else "none"


def _range(values) -> str:
    v = np.asarray(values, dtype=float)
    lo, hi = f"{v.min():.2f}", f"{v.max():.2f}"
    return lo if lo == hi else f"{lo}–{hi}"


def findings(result, controls: list, k: float | None = None) -> Findings:
    """The §3.1 findings of `result` (trained model) against `controls` (its random-init controls)."""
    if not controls:
        raise ValueError("contributions.findings needs at least one control result (the random-init model).")
    k = control_k(len(controls), k)
    L = len(curve(result))
    first, second = halves(result)
    ratio, ratio_lo, ratio_hi, _ = half_ratio(result)
    c_stats = [half_ratio(c) for c in controls]
    c_ratios = [c[0] for c in c_stats]
    spread = float(np.std(c_ratios, ddof=1)) if len(controls) > 1 else c_stats[0][3]
    bound = stats.control_bound(c_ratios, "less", k=k, spread=spread) if np.isfinite(c_ratios).any() else float("nan")
    a_ratio = half_ratio(result, "rel_attn")[0]
    ca = [half_ratio(c, "rel_attn")[0] for c in controls]
    kn, ckn = knee(result), [knee(c) for c in controls]
    rel0, c_rel0 = float(curve(result)[0]), [float(curve(c)[0]) for c in controls]

    shape = paper_verdict(bool(ratio < 1), bool(np.isfinite(ratio_hi) and ratio_hi < bound))
    cc, cc_lo, _, _ = cos_contrast(result)
    c_cc = [cos_contrast(c) for c in controls]
    cc_means = [c[0] for c in c_cc]
    cc_spread = float(np.std(cc_means, ddof=1)) if len(controls) > 1 else c_cc[0][3]
    cc_bound = stats.control_bound(cc_means, "greater", k=k, spread=cc_spread) if np.isfinite(cc_means).any() else float("nan")
    cos_turn = paper_verdict(_cos_turns(result), bool(np.isfinite(cc_lo) and cc_lo > cc_bound))

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
        "control_bound": bound,
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
        "cos_contrast": cc,
        "cos_contrast_lo": cc_lo,
        "control_cos_contrast": float(np.mean(cc_means)),
        "control_cos_bound": cc_bound,
        "min_cos_io": float(curve(result, "cos_io").min()),
        "control_min_cos_io": float(np.min([curve(c, "cos_io").min() for c in controls])),
    }
    shape_text = {
        PAPER: (
            "This is the paper's shape, and training made it: the whole interval lies below every control's "
            f"ratio and below the controls' bound {bound:.2f} (their mean minus {k:.2f} spreads)."
        ),
        SAME_AS_CONTROL: (
            f"The second half does contribute less, but {ctl} show{'s' if n == 1 else ''} the same (ratio {_range(c_ratios)}, bound "
            f"{bound:.2f}): in a pre-norm model the residual grows with depth even at initialisation, so this "
            "is not evidence of anything learned."
        ),
        NOT_PAPER: "Unlike the paper's Llama, the second half does **not** contribute less here.",
    }[shape]
    if shape == SAME_AS_CONTROL and ratio > max(c_ratios):
        shape_text = (
            f"The second half does contribute less, but less so than in {ctl} (ratio {_range(c_ratios)}): the fall comes "
            "with the architecture (in a pre-norm model the residual grows with depth even at initialisation), and "
            "training made it smaller, not larger."
        )
    neg = [int(l) for l in np.flatnonzero(curve(result, "cos_layer") < 0)]
    c_neg = [int(l) for l in np.flatnonzero(curve(controls[0], "cos_layer") < 0)]
    turn, c_turn = first_positive_cos(result), first_positive_cos(controls[0])
    cos_text = {
        PAPER: (
            f"As in the paper, the writes turn from erasing (first half, mean cosine {numbers['cos_first_half']:.2f}) to "
            f"strengthening (second half, {numbers['cos_second_half']:.2f}), and training made it: the rise of "
            f"{cc:.2f} (interval from {cc_lo:.2f}) is beyond the bound {cc_bound:.2f} of {ctl}."
        ),
        SAME_AS_CONTROL: (
            f"The writes turn from erasing (first half, mean cosine {numbers['cos_first_half']:.2f}) to strengthening "
            f"(second half, {numbers['cos_second_half']:.2f}), but the rise of {cc:.2f} is not beyond the bound "
            f"{cc_bound:.2f} of {ctl} (their rise {_range(cc_means)})."
        ),
        NOT_PAPER: (
            f"Unlike the paper, the first half's writes do not erase on average while the second half's strengthen "
            f"(mean layer cosine {numbers['cos_first_half']:.2f} in the first half, {numbers['cos_second_half']:.2f} in the second)."
        ),
    }[cos_turn]
    changed = [int(l) for l in np.flatnonzero(curve(result, "cos_io") < 0.9)]
    text = {
        "shape_text": (
            f"Leaving layer 0 out, layers in the first half add on average **{first:.2f}** of the residual's "
            f"norm per layer, those in the second half **{second:.2f}**: a second-to-first-half ratio of "
            f"**{ratio:.2f}** (mean over prompts of each prompt's ratio; 95 % interval {ratio_lo:.2f}–{ratio_hi:.2f}), "
            f"against {_range(c_ratios)} in {ctl}. {shape_text}"
        ),
        "detail_text": (
            f"Layer 0 writes {rel0:.2f} times the residual's norm (control {np.mean(c_rel0):.2f}); attention alone "
            f"has a ratio of {numbers['attn_half_ratio']:.2f} (control {np.mean(ca):.2f}); the last layer contributes "
            f"{numbers['last_layer_rel']:.2f}."
        ),
        "knee_text": (
            f"A two-segment fit (a straight line on each side) to the contribution curve (layer 0 "
            f"{'left out: it dominates' if kn['excluded_first'] else 'kept'}) puts its knee at layer "
            f"**{kn['index']}** (relative depth {kn['x']:.2f}); the control's knee is at relative depth "
            f"{_range([c['x'] for c in ckn])}."
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
    if L < MIN_LAYERS:
        text["shape_text"] = f"With layer 0 left out, a {L}-layer model has no two halves to compare, so there is no verdict on the paper's shape."
    return Findings(numbers=numbers, verdicts={"paper_shape": shape, "cos_turn": cos_turn}, text=text)
