"""Exercise set (e), §3.3: one entry of residual erasure.

The student writes `fn(model, prompt, answer, vectors, b, t) -> float`: teacher-force prompt +
answer (`effdepth.measures.residual_erasure.encode_example`), replace the residual h_b at the single position t by the
uninformative vector vectors[b] (b = 0 … L; b < L is the input of block b, b = L the input of the
final norm), run the rest, and return the max over the answer-predicting positions
answer_start-1 … T-2 of ‖softmax(ȳ_p) − softmax(y_p)‖₂. The reference is
`effdepth.residual_erasure(...).effect[b, t]`.
"""

from __future__ import annotations

import numpy as np
import torch

from effdepth.exercises._capture import capture
from effdepth.exercises._check import Case, cached_cases, judge
from effdepth.exercises._models import reference_model
from effdepth.measures.residual_erasure import encode_example, mean_residuals, residual_erasure
from effdepth.store import Store

PROMPT, ANSWER = "Q: What is 3 plus 4? A:", " 7, seven"
REFERENCE_PROMPTS = ("The sun is a star.", "Birds can fly over the sea.", "Q: 2 + 2? A: 4")
CASES = (
    (0, 23),
    (2, 23),
    (4, 23),
    (1, 12),
)  # (b, t); b = 4 = L is the final residual; t = 23 predicts the first answer token
HINTS = {
    "scored_answer_positions": "You scored the positions of the answer tokens (answer_start … T-1). The prediction of the token at position p is made at position p-1: score answer_start-1 … T-2.",
    "mean_not_max": "You averaged over the answer-predicting positions; the entry is the max over them.",
    "logits_not_probabilities": "You compared logits; the effect is the L2 norm of the difference of probability vectors, ‖softmax(ȳ) − softmax(y)‖₂.",
    "kl_not_l2": "You computed a KL divergence; the effect is the L2 norm of the difference of probability vectors (methods page §4 (residual erasure)), ‖softmax(ȳ) − softmax(y)‖₂.",
    "block_output": "You replaced the output of block b (h_{b+1}). Residual index b is the input of block b (b = 0: the embeddings; b = L: the input of the final norm).",
    "from_t_onwards": "You replaced h_b at t and every later position; erasure replaces one position only, h_b[t].",
    "zero_vector": "You replaced h_b[t] by zero; erasure replaces it by the uninformative vector vectors[b] (the mean residual of reference prompts), which keeps its typical norm.",
}


@torch.no_grad()
def entry(
    model,
    ids,
    answer_start,
    vectors,
    b,
    t,
    scored="predicting",
    agg="max",
    what="probs",
    where=None,
    span=False,
    vector=True,
):
    """One erasure entry with the choices a mistake can change (the defaults are right)."""
    T = len(ids)
    _, _, _, y = capture(model, ids)
    target = b if where is None else where
    vec = vectors[b] if vector else torch.zeros_like(vectors[b])

    def edit(i, h):
        if i == target:
            h[t:] = vec if span else h[t:]
            h[t] = vec
            return h
        return None

    _, _, _, yb = capture(model, ids, edit)
    pos = torch.arange(answer_start - 1, T - 1) if scored == "predicting" else torch.arange(answer_start, T)
    if what == "probs":
        diff = (torch.softmax(yb[pos].double(), -1) - torch.softmax(y[pos].double(), -1)).norm(dim=-1)
    elif what == "logits":
        diff = (yb[pos].double() - y[pos].double()).norm(dim=-1)
    else:  # KL(p̄ ‖ p)
        lp, lq = torch.log_softmax(yb[pos].double(), -1), torch.log_softmax(y[pos].double(), -1)
        diff = (lp.exp() * (lp - lq)).sum(-1)
    return np.asarray(float(diff.max() if agg == "max" else diff.mean()))


def variants(model, ids, answer_start, vectors, b, t):
    L = model.n_layers
    v = {
        "scored_answer_positions": entry(model, ids, answer_start, vectors, b, t, scored="answer"),
        "mean_not_max": entry(model, ids, answer_start, vectors, b, t, agg="mean"),
        "logits_not_probabilities": entry(model, ids, answer_start, vectors, b, t, what="logits"),
        "kl_not_l2": entry(model, ids, answer_start, vectors, b, t, what="kl"),
        "from_t_onwards": entry(model, ids, answer_start, vectors, b, t, span=True),
        "zero_vector": entry(model, ids, answer_start, vectors, b, t, vector=False),
    }
    if b < L:
        v["block_output"] = entry(model, ids, answer_start, vectors, b, t, where=b + 1)
    return {k: {"effect": x} for k, x in v.items()}


def setting(model):
    """(ids, answer_start, vectors [L+1, d]) of the exercise's example on `model`."""

    ids, start = encode_example(model, PROMPT, ANSWER)
    return ids, start, mean_residuals(model, list(REFERENCE_PROMPTS))


def reference_map(model, vectors):
    """The whole [L+1, T] erasure map from `effdepth.residual_erasure` (uncached)."""

    return residual_erasure(model, PROMPT, ANSWER, vectors=vectors, method="fast", store=Store(enabled=False)).effect


def check_erasure_entry(fn, model=None):
    """Check `fn(model, prompt, answer, vectors, b, t) -> float` against entries of
    `effdepth.residual_erasure(...).effect` on a tiny model."""
    model = reference_model(model)

    def build():
        ids, start, vectors = setting(model)
        full = reference_map(model, vectors)
        return [
            Case(
                f"b = {b}, t = {t} of {PROMPT + ANSWER!r}",
                (model, PROMPT, ANSWER, vectors, b, t),
                {"effect": np.asarray(full[b, t], dtype=np.float64)},
                variants(model, ids, start, vectors, b, t),
            )
            for b, t in CASES
        ]

    cases = cached_cases(f"erasure_entry:{model.spec}:{model.revision}", build)
    return judge("one entry of residual erasure (§3.3)", fn, cases, HINTS, ("effect",), rtol=1e-3, atol=1e-6)
