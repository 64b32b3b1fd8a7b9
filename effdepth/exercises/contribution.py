"""Exercise set (a), §3.1: the relative contribution and the cosine of one layer, from forward hooks.

The student writes `fn(model, prompt, layer) -> {"rel_attn", "rel_mlp", "rel_layer", "cos_layer"}`:
token means (all positions of the prompt, position 0 included) of ‖a_l‖/‖h_l‖, ‖m_l‖/‖h_l + a_l‖,
‖a_l + m_l‖/‖h_l‖ and cos(a_l + m_l, h_l). The reference is `effdepth.contributions`.
"""

from __future__ import annotations

import numpy as np
import torch

from effdepth.exercises._capture import capture
from effdepth.exercises._check import Case, cached_cases, judge
from effdepth.exercises._models import reference_model
from effdepth.measures.contributions import contributions
from effdepth.store import Store

NAMES = ("rel_attn", "rel_mlp", "rel_layer", "cos_layer")
PROMPTS = ("The cat sat on the mat and looked at the door.", "Q: 12 + 7 = ? A: 19. Q: 3 * 4 = ? A: 12.")
LAYERS = (1, 2)
HINTS = {
    "denominator_output": "You divided by the residual after the layer (h_{l+1} = h_l + a_l + m_l). A relative contribution divides by the residual the sublayer reads: h_l for attention and the whole layer, h_l + a_l for the MLP.",
    "mlp_denominator_input": "The MLP reads the residual after attention has written into it, so its relative contribution is ‖m_l‖ / ‖h_l + a_l‖, not ‖m_l‖ / ‖h_l‖.",
    "ratio_of_means": "You took the ratio of mean norms (mean ‖a‖ / mean ‖h‖). The paper averages the per-token ratio: compute ‖·‖/‖·‖ for every token, then take the mean.",
    "max_not_mean": "You took the max over tokens; this number is the mean over tokens (the max is a separate statistic).",
    "position_0_left_out": "You left position 0 out of the mean. §3.1 averages over all tokens, position 0 included (position 0 is excluded only from interventions).",
    "squared": "You used squared norms (or dot products) in the ratio; the relative contribution is a ratio of L2 norms ‖·‖.",
    "off_by_one_layer": "These are the numbers of a neighbouring layer: layers are 0-indexed, `layer` is block `model.layers[layer]`, whose input is h_layer.",
    "cos_wrong_pair": "cos_layer compares the layer's write a_l + m_l with its input h_l; you compared with another vector (h_{l+1}, or a_l alone).",
}


def variants(model, prompt: str, layer: int) -> dict[str, dict[str, np.ndarray]]:
    """The wrong outputs each mistake in HINTS gives on this prompt and layer."""
    h, a, m, _ = capture(model, model.encode(prompt))

    def stats(l, agg=torch.mean, first=0):
        hl, al, ml = h[l][first:], a[l][first:], m[l][first:]
        d, r = al + ml, hl + al
        n = lambda x: x.norm(dim=-1)  # noqa: E731
        cos = (d * hl).sum(-1) / (n(d) * n(hl))
        return {
            "rel_attn": agg(n(al) / n(hl)),
            "rel_mlp": agg(n(ml) / n(r)),
            "rel_layer": agg(n(d) / n(hl)),
            "cos_layer": agg(cos),
        }

    n = lambda x: x.norm(dim=-1)  # noqa: E731
    hl, al, ml = h[layer], a[layer], m[layer]
    d, nxt = al + ml, h[layer + 1]
    out = {
        "denominator_output": {
            "rel_attn": n(al) / n(hl + al),
            "rel_mlp": n(ml) / n(nxt),
            "rel_layer": n(d) / n(nxt),
            "cos_layer": (d * nxt).sum(-1) / (n(d) * n(nxt)),
        },
        "mlp_denominator_input": {"rel_mlp": n(ml) / n(hl)},
        "ratio_of_means": {
            "rel_attn": n(al).mean() / n(hl).mean(),
            "rel_mlp": n(ml).mean() / n(hl + al).mean(),
            "rel_layer": n(d).mean() / n(hl).mean(),
        },
        "max_not_mean": {k: v for k, v in stats(layer, agg=lambda x: x.max()).items() if k != "cos_layer"},
        "position_0_left_out": stats(layer, first=1),
        "squared": {
            "rel_attn": n(al) ** 2 / n(hl) ** 2,
            "rel_mlp": n(ml) ** 2 / n(hl + al) ** 2,
            "rel_layer": n(d) ** 2 / n(hl) ** 2,
            "cos_layer": (d * hl).sum(-1),
        },
        "off_by_one_layer": stats(layer + 1) if layer + 1 < len(a) else stats(layer - 1),
        "cos_wrong_pair": {"cos_layer": (al * hl).sum(-1) / (n(al) * n(hl))},
    }
    return {
        k: {name: np.asarray(v.mean() if v.ndim else v, dtype=np.float64) for name, v in d_.items()}
        for k, d_ in out.items()
    }


def reference(model, prompt: str, layer: int) -> dict[str, np.ndarray]:
    """The four numbers from `effdepth.contributions` (one prompt, uncached)."""

    res = contributions(model, [prompt], method="fast", store=Store(enabled=False))
    return {name: np.asarray(res.arrays[f"mean_{name}"][layer], dtype=np.float64) for name in NAMES}


def check_relative_contribution(fn, model=None):
    """Check `fn(model, prompt, layer) -> {"rel_attn", "rel_mlp", "rel_layer", "cos_layer"}` (token
    means) against `effdepth.contributions` on a tiny model, two prompts and two layers."""
    model = reference_model(model)
    cases = cached_cases(
        f"contribution:{model.spec}:{model.revision}",
        lambda: [
            Case(f"layer {l} of {p!r}", (model, p, l), reference(model, p, l), variants(model, p, l))
            for p in PROMPTS
            for l in LAYERS
        ],
    )
    return judge("relative contribution (§3.1)", fn, cases, HINTS, NAMES)
