"""§3.2 logit lens (SPEC §3): how close is each layer's input to the model's final prediction?

For every residual index b (the input h_b of block b, and the final residual h_L), decode it the
way the model decodes its last residual — final norm, unembedding, and the final logit
soft-capping where the model has one (Gemma) — p_b = softmax(decode(h_b)), and compare with the
model's output p_final:
- KL(p_b ‖ p_final) = Σ p_b (log p_b − log p_final), mean over positions;
- top-k overlap |topk(p_b) ∩ topk(p_final)| / k, mean over positions.
Per prompt a mean over its positions (position 0 included), then a mean over prompts.

Nothing of size [L, T, V] exists, and no more than one residual: the local path makes one forward
to get h_L (logits for the last position only), then a second in which a hook on each block
reduces h_b to T numbers as the forward reaches it, decoding in chunks of positions so that about
`max_elems` logits exist at a time whatever the vocabulary: peak memory does not grow with L.
The nnsight path (`method="trace"`, used for remote models) does the same reductions inside one
trace, one residual index at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .engine import decode, softcap
from .models import choose_method
from .results import Result, measure


class LogitLens(Result):
    """kl [L], topk_overlap [L] for the inputs of blocks 0 … L-1; final_kl, final_topk_overlap for h_L
    (0 and 1 by construction: a check); example_kl, example_topk_overlap [P, L+1] (last column h_L)."""

    measurement = "logit_lens"

    def to_frame(self) -> pd.DataFrame:
        """One row per residual index b = 0 … L (b < L: input of layer b; b = L: final residual)."""
        L = len(self.kl)
        frame = pd.DataFrame(
            {
                "kl": np.append(self.kl, self.final_kl),
                "topk_overlap": np.append(self.topk_overlap, self.final_topk_overlap),
                "residual": [f"input of layer {b}" for b in range(L)] + ["final residual"],
            },
            index=pd.RangeIndex(L + 1, name="b"),
        )
        return frame


class _Reducer:
    """KL and top-k overlap of decoded residuals against p_final, streamed over position chunks."""

    def __init__(self, model, h_final: torch.Tensor, k: int, max_elems: int):
        self.model, self.k = model, k
        T = h_final.shape[0]
        V = model.vocab_size
        self.step = max(1, min(T, max_elems // V))
        self.h_final = h_final
        # cache log p_final when it is small (one [T, V]); otherwise recompute it per chunk
        self.cached = self._lp(h_final) if T * V <= max_elems else None

    def _lp(self, h):
        return torch.log_softmax(decode(self.model, h).float(), -1)

    @torch.no_grad()
    def __call__(self, h: torch.Tensor) -> tuple[float, float]:
        """(mean KL, mean top-k overlap) over the positions of h [T, d]."""
        T = h.shape[0]
        kl, overlap = torch.zeros(T), torch.zeros(T)
        for t0 in range(0, T, self.step):
            t1 = min(T, t0 + self.step)
            lp = self._lp(h[t0:t1])
            lf = self.cached[t0:t1] if self.cached is not None else self._lp(self.h_final[t0:t1])
            kl[t0:t1] = (lp.exp() * (lp - lf)).sum(-1).cpu()
            top_b, top_f = lp.topk(self.k, -1).indices, lf.topk(self.k, -1).indices
            overlap[t0:t1] = (top_b[:, :, None] == top_f[:, None, :]).any(-1).sum(-1).float().cpu() / self.k
            del lp, lf
        return float(kl.double().mean()), float(overlap.double().mean())


@torch.no_grad()
def _lens_local(model, ids: torch.Tensor, k: int, max_elems: int) -> tuple[np.ndarray, np.ndarray]:
    a = model.adapter
    ids = ids.reshape(1, -1).to(model.device)
    norm = a.module(model.hf, a.final_norm)
    got = {}
    handle = norm.register_forward_pre_hook(lambda m, args: got.update(h=args[0][0].detach()))
    try:
        try:
            model.hf(input_ids=ids, use_cache=False, logits_to_keep=1)
        except TypeError:
            model.hf(input_ids=ids, use_cache=False)
    finally:
        handle.remove()
    reduce = _Reducer(model, got["h"], k, max_elems)
    blocks = a.layer_modules(model.hf)
    L = len(blocks)
    kl, ov = np.zeros(L + 1), np.zeros(L + 1)

    def hook(b):
        def pre(module, args, kwargs):
            kl[b], ov[b] = reduce((args[0] if args else kwargs["hidden_states"])[0])

        return pre

    handles = [blk.register_forward_pre_hook(hook(b), with_kwargs=True) for b, blk in enumerate(blocks)]
    try:
        try:
            model.hf(input_ids=ids, use_cache=False, logits_to_keep=1)
        except TypeError:
            model.hf(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    kl[L], ov[L] = reduce(got["h"])
    return kl, ov


def _lens_trace(model, ids: torch.Tensor, k: int, max_elems: int) -> tuple[np.ndarray, np.ndarray]:
    """The same reductions inside one nnsight trace (remote-safe: plain tensor ops, [T] numbers out)."""
    import nnsight

    a = model.adapter
    cap = softcap(model)
    T, V = int(ids.shape[-1]), model.vocab_size
    step = max(1, min(T, max_elems // V))
    dev = "cpu" if model.remote else model.device
    with torch.no_grad(), model.trace(ids.reshape(1, -1).to(dev)):
        blocks = a.layer_modules(model.nn)
        norm, unembed = a.module(model.nn, a.final_norm), a.module(model.nn, a.unembed)
        hs = [blk.input[0] for blk in blocks]
        hs.append(norm.input[0])
        kls, ovs = nnsight.save([]), nnsight.save([])
        for h in hs:
            kl_sum, ov_sum = 0.0, 0.0
            for t0 in range(0, T, step):
                logits = unembed(norm(h[t0 : t0 + step])).float()
                logits_f = unembed(norm(hs[-1][t0 : t0 + step])).float()
                if cap is not None:
                    logits, logits_f = torch.tanh(logits / cap) * cap, torch.tanh(logits_f / cap) * cap
                lp, lf = torch.log_softmax(logits, -1), torch.log_softmax(logits_f, -1)
                kl_sum = kl_sum + (lp.exp() * (lp - lf)).sum(-1).sum()
                tb, tf = lp.topk(k, -1).indices, lf.topk(k, -1).indices
                ov_sum = ov_sum + (tb[:, :, None] == tf[:, None, :]).any(-1).sum().float() / k
            kls.append((kl_sum / T).cpu())
            ovs.append((ov_sum / T).cpu())
    return np.array([float(x) for x in kls]), np.array([float(x) for x in ovs])


def logit_lens(model, prompts: list[str], k: int = 5, method: str = "auto", max_elems: int = 1 << 21, store=None) -> LogitLens:
    """KL(p_b ‖ p_final) and top-k overlap for the input of every layer and the final residual.

    method: 'fast' (plain hooks, local models), 'trace' (nnsight, also remote) or 'auto'.
    max_elems: about how many logits (float32) exist at once (positions are decoded in chunks).
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("logit_lens() needs at least one prompt.")
    method = choose_method(model, method)
    if k < 1 or k > model.vocab_size:
        raise ValueError(f"k must be between 1 and the vocabulary size ({model.vocab_size}), not {k}.")
    fn = _lens_local if method == "fast" else _lens_trace
    for i, p in enumerate(prompts):  # every prompt checked before the first forward pass
        model.encode(p, index=i)

    def per_item(prompt):
        kl, ov = fn(model, model.encode(prompt), k, max_elems)
        return {"kl": kl, "overlap": ov}

    def aggregate(parts):
        kl = np.stack([p["kl"] for p in parts])  # [P, L+1]
        ov = np.stack([p["overlap"] for p in parts])
        return {
            "kl": kl[:, :-1].mean(0),
            "topk_overlap": ov[:, :-1].mean(0),
            "final_kl": np.array(kl[:, -1].mean()),
            "final_topk_overlap": np.array(ov[:, -1].mean()),
            "example_kl": kl,
            "example_topk_overlap": ov,
            "k": np.array(k),
        }

    return measure(LogitLens, model, prompts, params={"k": k, "method": method}, per_item=per_item, aggregate=aggregate, store=store)
