"""Exercise set (d), §3.3: the depth score from effect matrices.

The student writes `fn(E, o) -> {"layer", "logit"}`: E [P, L, L] holds the per-example layer-effect
matrices of one difficulty level (row s = skipped layer, column l = affected layer), o [P, L] the
output effects. Aggregate with the max over the examples; the layer importance is
e_s = Σ_{l>s} E[s, l] / max(L-1-s, 1); the depth score is D = Σ_s s·w_s / Σ_s w_s (layers 0-indexed),
once with w = e ("layer") and once with w = o ("logit"). The reference is `effdepth.measures.depth_score.depth_scores`.
"""

from __future__ import annotations

import numpy as np

from effdepth.exercises._check import Case, judge
from effdepth.measures.depth_score import depth_scores

NAMES = ("layer", "logit")
HINTS = {
    "mean_over_examples": "You averaged over the examples; the paper's statistic is the max over the examples of a level (E = example_E.max(0), o = example_o.max(0)); the mean is a separate, secondary statistic.",
    "max_and_mean_swapped": "Max and mean are swapped: the examples are aggregated with the max, and e_s is the mean over the later layers, Σ_{l>s} E[s, l] / (L-1-s), not their max.",
    "diagonal_included": "You included the diagonal (or earlier layers): only the layers after the skipped one count, l > s (np.triu(E, k=1)).",
    "divided_by_L": "The layer importance divides by the number of later layers, max(L-1-s, 1), not by L (or L-s).",
    "one_indexed": "Your score is one too high: layers are 0-indexed, D = Σ_s s·w_s / Σ_s w_s with s = 0 … L-1.",
    "not_normalised": "You forgot to divide by Σ_s w_s: the depth score is a weighted mean layer index, between 0 and L-1.",
}


def _score(w, s=None):
    s = np.arange(w.shape[-1]) if s is None else s
    return float((w * s).sum() / w.sum())


def _importance(E, k=1, denom=None, agg=np.sum):
    L = E.shape[-1]
    upper = np.triu(np.ones((L, L), dtype=bool), k=k)
    num = np.where(upper, E, 0.0).sum(-1) if agg is np.sum else np.where(upper, E, 0.0).max(-1)
    d = np.maximum(L - 1 - np.arange(L), 1) if denom is None else denom
    return num / d


def variants(E, o) -> dict[str, dict[str, np.ndarray]]:
    L = E.shape[-1]
    Em, om = E.max(0), o.max(0)
    e = _importance(Em)
    out = {
        "mean_over_examples": {"layer": _score(_importance(E.mean(0))), "logit": _score(o.mean(0))},
        "max_and_mean_swapped": {
            "layer": _score(_importance(E.mean(0), denom=1, agg=np.max)),
            "logit": _score(o.mean(0)),
        },
        "diagonal_included": {"layer": _score(_importance(Em, k=0)), "logit": _score(om)},
        "divided_by_L": {"layer": _score(_importance(Em, denom=L)), "logit": _score(om)},
        "one_indexed": {"layer": _score(e, np.arange(1, L + 1)), "logit": _score(om, np.arange(1, L + 1))},
        "not_normalised": {"layer": float((e * np.arange(L)).sum()), "logit": float((om * np.arange(L)).sum())},
    }
    out["divided_by_L_minus_s"] = {"layer": _score(_importance(Em, denom=L - np.arange(L))), "logit": _score(om)}
    return {k: {n: np.asarray(x, dtype=np.float64) for n, x in d.items()} for k, d in out.items()}


HINTS["divided_by_L_minus_s"] = HINTS["divided_by_L"]


def reference(E, o) -> dict[str, np.ndarray]:

    dl, do = depth_scores(E.max(0), o.max(0))
    return {"layer": np.asarray(dl, dtype=np.float64), "logit": np.asarray(do, dtype=np.float64)}


def example_effects(P: int = 5, L: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic (E [P, L, L], o [P, L]) with every entry non-zero (the diagonal and lower triangle
    too, so that a sum over the wrong entries shows), effects shrinking with depth like the paper's."""
    rng = np.random.default_rng(seed)
    decay = np.exp(-np.arange(L) / (L / 3))
    E = rng.uniform(0.05, 1.0, (P, L, L)) * decay[None, :, None]
    o = rng.uniform(0.05, 1.0, (P, L)) * decay[None, ::-1] ** 0.5
    return E, o


def check_depth_score(fn):
    """Check `fn(E [P, L, L], o [P, L]) -> {"layer", "logit"}` against `effdepth.measures.depth_score.depth_scores`
    of the max over examples, on two synthetic levels."""
    cases = []
    for seed, (P, L) in enumerate(((5, 8), (3, 6))):
        E, o = example_effects(P, L, seed)
        cases.append(
            Case(
                f"a level of {P} examples of an {L}-layer model", (E.copy(), o.copy()), reference(E, o), variants(E, o)
            )
        )
    return judge("depth score (§3.3)", fn, cases, HINTS, NAMES)
