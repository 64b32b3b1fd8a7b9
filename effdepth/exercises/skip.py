"""Exercise set (b), §3.2: skip one layer at chosen positions and measure the effect on later layers.

The student writes `fn(model, prompt, s, t) -> array [L]`: skip layer s (its output := its input,
h̄_{s+1} = h̄_s) at the positions 1 … t-1 (the future setting, one split point t), run the rest, and
return for every layer l the max over the measured positions t … T-1 of ‖Δ̄_l − Δ_l‖ / ‖Δ_l‖ with
Δ_l = h_{l+1} − h_l (clean) and Δ̄_l the same with the skip. The reference is
`effdepth.measures.skip_effects.prompt_effects` (what `effdepth.skip_effects` aggregates over prompts).
"""

from __future__ import annotations

import numpy as np
import torch

from effdepth.exercises._capture import capture
from effdepth.exercises._check import Case, cached_cases, judge
from effdepth.exercises._models import reference_model
from effdepth.measures.skip_effects import prompt_effects

PROMPTS = ("Alice gave the book to Bob because Bob asked Alice for it.",)
CASES = ((1, 24), (2, 32))  # (skipped layer s, split point t)
EPS = 1e-6
HINTS = {
    "position_0": "You also intervened at position 0. The front position is never intervened on (methods page §2: it acts as an attention sink and changing it changes everything after it): skip the layer at positions 1 … t-1 only.",
    "mean_not_max": "You averaged over the measured positions; the paper takes the max over them (a late layer may matter only at a few positions). Use .max() over positions t … T-1.",
    "denominator_intervened": "You divided by the intervened ‖Δ̄_l‖; the relative change divides by the clean ‖Δ_l‖ (clamped at 1e-6).",
    "measured_everywhere": "You measured at every position; in the future setting only positions t … T-1 (after the split point) are measured. At the intervened positions the skipped layer's own change is 1 by construction.",
    "zeroed_residual": "You set the layer's output to zero. Skipping a layer sets its output to its input (h̄_{s+1} := h̄_s), i.e. removes its write Δ_s = a_s + m_s.",
    "residuals_not_writes": "You compared the residual streams (‖h̄_{l+1} − h_{l+1}‖ / ‖h_{l+1}‖). The effect on layer l compares what the layer writes, Δ_l = h_{l+1} − h_l, which is what changes in its computation.",
    "wrong_split": "The intervened positions are 1 … t-1 and the measured ones t … T-1; yours are shifted by one (range(1, t) and range(t, T) in Python).",
}


def _skipped(model, ids, s, inter: torch.Tensor, how: str = "identity"):
    """Residuals h [L+1, T, d] of the run that skips layer s at the positions `inter` [T] (bool)."""

    def edit(b, h):  # h_{s+1} is the input of block s+1 (or of the final norm)
        if b == s + 1:
            h_s = held["h_s"]
            h[inter] = h_s[inter] if how == "identity" else 0.0
            return h
        if b == s:
            held["h_s"] = h.clone()
        return None

    held = {}
    return capture(model, ids, edit)[0]


def row(model, ids, s, t, first=1, agg="max", denom="clean", measure_from=None, how="identity", writes=True, end=None):
    """The skip row r[s, :] with the choices a mistake can change (the defaults are right)."""
    T = len(ids)
    h = capture(model, ids)[0]
    inter = torch.zeros(T, dtype=torch.bool)
    inter[first : (t if end is None else end)] = True
    hb = _skipped(model, ids, s, inter, how)
    L = h.shape[0] - 1
    meas = slice(t if measure_from is None else measure_from, T)
    out = np.zeros(L)
    for l in range(L):
        if writes:
            d, db = h[l + 1] - h[l], hb[l + 1] - hb[l]
        else:
            d, db = h[l + 1], hb[l + 1]
        base = d if denom == "clean" else db
        r = ((db - d).norm(dim=-1) / base.norm(dim=-1).clamp_min(EPS))[meas]
        out[l] = float(r.max() if agg == "max" else r.mean())
    return out


def variants(model, prompt, s, t) -> dict[str, dict[str, np.ndarray]]:
    ids = model.encode(prompt)
    v = {
        "position_0": row(model, ids, s, t, first=0),
        "mean_not_max": row(model, ids, s, t, agg="mean"),
        "denominator_intervened": row(model, ids, s, t, denom="intervened"),
        "measured_everywhere": row(model, ids, s, t, measure_from=0),
        "zeroed_residual": row(model, ids, s, t, how="zero"),
        "residuals_not_writes": row(model, ids, s, t, writes=False),
        "wrong_split": row(model, ids, s, t, end=t + 1, measure_from=t + 1),
    }
    return {k: {"effect": x} for k, x in v.items()}


def reference(model, prompt, s, t) -> dict[str, np.ndarray]:
    """Row s of the max-aggregated layer-effect matrix of `prompt_effects` (future setting, split t)."""

    return {
        "effect": np.asarray(
            prompt_effects(model, model.encode(prompt), "future", [t], "fast")["max_layer"][s], dtype=np.float64
        )
    }


def check_skip_row(fn, model=None):
    """Check `fn(model, prompt, s, t) -> [L]` (effect of skipping layer s at positions 1 … t-1 on
    every layer, max over positions t … T-1) against `effdepth.measures.skip_effects.prompt_effects`."""
    model = reference_model(model)
    cases = cached_cases(
        f"skip:{model.spec}:{model.revision}",
        lambda: [
            Case(
                f"skipping layer {s} before t = {t} in {p!r}",
                (model, p, s, t),
                reference(model, p, s, t),
                variants(model, p, s, t),
            )
            for p in PROMPTS
            for s, t in CASES
        ],
    )
    return judge("skip a layer (§3.2)", fn, cases, HINTS, ("effect",))
