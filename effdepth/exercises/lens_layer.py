"""Exercise set (c), §3.2: the logit lens for one layer, without materialising [L, T, V].

The student writes `fn(model, prompt, b) -> {"kl", "overlap"}` for residual index b (the input of
block b; h_0 = the embeddings): decode h_b as the model decodes its last residual (final norm, then
unembedding), p_b = softmax, and return the means over all positions of KL(p_b ‖ p_final) and of the
top-5 overlap |top5(p_b) ∩ top5(p_final)| / 5. Only one layer's [T, V] logits need to exist. The
reference is `effdepth.logit_lens` (its per-prompt columns).
"""

from __future__ import annotations

import numpy as np
import torch

from effdepth.engine import decode
from effdepth.exercises._capture import capture
from effdepth.exercises._check import Case, cached_cases, judge
from effdepth.exercises._models import reference_model, unembedding
from effdepth.measures.logit_lens import logit_lens
from effdepth.store import Store

NAMES = ("kl", "overlap")
K = 5
PROMPTS = ("The quick brown fox jumps over the lazy dog.",)
RESIDUALS = (1, 3)
HINTS = {
    "kl_reversed": "Your KL is reversed: you computed KL(p_final ‖ p_b). The lens measures KL(p_b ‖ p_final) = Σ p_b (log p_b − log p_final), the expectation under the layer's own distribution p_b.",
    "no_final_norm": "You unembedded h_b without the final norm. Decode every residual the way the model decodes its last one: final norm first, then the unembedding.",
    "block_output": "You decoded the output of block b (h_{b+1}). Residual index b is the input of block b (h_0 = the embeddings); read it with a forward pre-hook on model.layers[b].",
    "overlap_count": "Your overlap counts shared tokens (0 … 5); it is a fraction: |top5(p_b) ∩ top5(p_final)| / 5.",
    "position_0_left_out": "You left position 0 out of the mean; the lens averages over all positions of the prompt.",
    "log_base_2": "Your KL is in bits (log base 2); the paper uses natural logarithms (nats).",
}


def _stats(
    logits_b: torch.Tensor,
    logits_f: torch.Tensor,
    first: int = 0,
    reverse: bool = False,
    base2: bool = False,
    divide: bool = True,
):
    lb, lf = torch.log_softmax(logits_b.double(), -1)[first:], torch.log_softmax(logits_f.double(), -1)[first:]
    p, q = (lf, lb) if reverse else (lb, lf)
    kl = (p.exp() * (p - q)).sum(-1)
    if base2:
        kl = kl / np.log(2)
    tb, tf = lb.topk(K, -1).indices, lf.topk(K, -1).indices
    ov = (tb[:, :, None] == tf[:, None, :]).any(-1).sum(-1).double() / (K if divide else 1)
    return {"kl": np.asarray(kl.mean().item()), "overlap": np.asarray(ov.mean().item())}


@torch.no_grad()
def variants(model, prompt, b) -> dict[str, dict[str, np.ndarray]]:
    h, _, _, logits = capture(model, model.encode(prompt))
    zb, zf = decode(model, h[b]), logits
    return {
        "kl_reversed": _stats(zb, zf, reverse=True),
        "no_final_norm": _stats(unembedding(model)(h[b]), zf),
        "block_output": _stats(decode(model, h[b + 1]), zf),
        "overlap_count": _stats(zb, zf, divide=False),
        "position_0_left_out": _stats(zb, zf, first=1),
        "log_base_2": _stats(zb, zf, base2=True),
    }


def reference(model, prompt, b) -> dict[str, np.ndarray]:

    res = logit_lens(model, [prompt], k=K, method="fast", store=Store(enabled=False))
    return {"kl": np.asarray(res.example_kl[0, b]), "overlap": np.asarray(res.example_topk_overlap[0, b])}


def check_lens_layer(fn, model=None):
    """Check `fn(model, prompt, b) -> {"kl", "overlap"}` (means over positions) against
    `effdepth.logit_lens` for two residual indices of a tiny model."""
    model = reference_model(model)
    cases = cached_cases(
        f"lens_layer:{model.spec}:{model.revision}",
        lambda: [
            Case(f"residual {b} of {p!r}", (model, p, b), reference(model, p, b), variants(model, p, b))
            for p in PROMPTS
            for b in RESIDUALS
        ],
    )
    return judge("logit lens of one layer (§3.2)", fn, cases, HINTS, NAMES)
