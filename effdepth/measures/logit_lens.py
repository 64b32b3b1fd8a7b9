"""§3.2 logit lens (methods page §3): how close is each layer's input to the model's final prediction?

For every residual index b (the input h_b of block b, and the final residual h_L), decode it the
way the model decodes its last residual — final norm, unembedding, and the final logit
soft-capping where the model has one (Gemma) — p_b = softmax(decode(h_b)), and compare with the
model's output p_final:
- KL(p_b ‖ p_final) = Σ p_b (log p_b − log p_final), mean over positions;
- top-k overlap |topk(p_b) ∩ topk(p_final)| / k, mean over positions.
Per prompt a mean over its positions (position 0 included), then a mean over prompts.

Nothing of size [L, T, V] exists: the local path makes one forward that records the prompt's
residuals h_0 … h_L ([T, L+1, d], as the engine's clean run does), then decodes them in chunks of
positions, all layers of a chunk in one matmul, so that about `max_elems` logits exist at a time
whatever the vocabulary (at least the L+1 rows of one position).
The nnsight path (`method="trace"`, used for remote models) does the same reductions inside one
trace, one residual index at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from effdepth.access.model import choose_method
from effdepth.engine import decode, logits_budget, softcap
from effdepth.results import Result, measure


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


@torch.no_grad()
def _residuals(model, ids: torch.Tensor) -> torch.Tensor:
    """h_0 … h_L of one prompt from one forward (block inputs and the final norm's input), stacked
    position-major: [T, L+1, d] in the model's dtype (logits are kept for the last position only)."""
    a = model.adapter
    blocks = a.layer_modules(model.hf)
    L = len(blocks)
    hs: list = [None] * (L + 1)

    def grab(b):
        def pre(module, args, kwargs):
            hs[b] = (args[0] if args else kwargs["hidden_states"])[0].detach()

        return pre

    handles = [blk.register_forward_pre_hook(grab(b), with_kwargs=True) for b, blk in enumerate(blocks)]
    handles.append(a.module(model.hf, a.final_norm).register_forward_pre_hook(grab(L), with_kwargs=True))
    try:
        try:
            model.hf(input_ids=ids, use_cache=False, logits_to_keep=1)
        except TypeError:
            model.hf(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(hs, 1)


def _topk(z: torch.Tensor, k: int, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(row maxima [N, 1], indices of the k largest entries of each row of z [N, V]) from one pass.

    The k largest entries of a row lie in the k blocks (of `block` consecutive entries) with the
    largest block maxima, so a block-max pass plus a top-k over k·block candidates replaces a full
    top-k over V (the row maximum comes for free). Plain `topk` for small or indivisible V."""
    N, V = z.shape
    if V % block or V < 16 * block or k > V // block:
        return z.amax(-1, keepdim=True), z.topk(k, -1).indices
    zb = z.view(N, V // block, block)
    bmax = zb.amax(-1)  # [N, V/block]
    blocks = bmax.topk(k, -1).indices  # [N, k]
    cand = zb.gather(1, blocks[:, :, None].expand(N, k, block)).reshape(N, k * block)
    j = cand.topk(k, -1).indices
    return bmax.amax(-1, keepdim=True), blocks.gather(1, j // block) * block + j % block


@torch.no_grad()
def _lens_local(model, ids: torch.Tensor, k: int, max_elems: int) -> tuple[np.ndarray, np.ndarray]:
    """Per residual index b = 0 … L: mean over positions of KL(p_b ‖ p_final) and top-k overlap.

    One forward records the L+1 residuals of the prompt (T·(L+1)·d numbers, far fewer than one
    position's logits for every layer when d ≪ V); then, per chunk of positions, all layers' residuals
    are decoded in one matmul against W_out and reduced in float32 with few passes over the logits z:
    with z' = z − max z, e = exp(z'), s = Σ e and f the final row of the same position,
    KL_b = Σ e_b (z'_b − z'_f) / s_b − log s_b + log s_f (exactly 0 for b = f), the sums as row-wise
    dot products. About `max_elems` logits exist at a time (at least one position's L+1 rows)."""
    ids = ids.reshape(1, -1).to(model.device)
    H = _residuals(model, ids)  # [T, L+1, d]
    T, L1 = H.shape[0], H.shape[1]
    V = model.vocab_size
    step = max(1, min(T, max_elems // (L1 * V)))
    kl, overlap = torch.zeros(T, L1, dtype=torch.float64), torch.zeros(T, L1, dtype=torch.float64)
    e = torch.empty(step * L1, V, device=H.device)  # exp(z'), one buffer for every chunk
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        n = t1 - t0
        z = decode(model, H[t0:t1]).float().reshape(n * L1, V)
        zmax, top = _topk(z, k)
        top = top.view(n, L1, k)
        overlap[t0:t1] = (top[:, :, :, None] == top[:, -1:, None, :]).any(-1).sum(-1).double().cpu() / k
        z.sub_(zmax)  # z'
        en = torch.exp(z, out=e[: n * L1])
        log_s = en.sum(-1).double().log().view(n, L1)
        z = z.view(n, L1, V)
        z.sub_(z[:, -1:].clone())  # z'_b − z'_f
        ed = torch.linalg.vecdot(en.view(n, L1, V), z).double()
        kl[t0:t1] = (ed / log_s.exp() - log_s + log_s[:, -1:]).cpu()
        del z
    return kl.mean(0).numpy(), overlap.mean(0).numpy()


def _lens_trace(model, ids: torch.Tensor, k: int, max_elems: int) -> tuple[np.ndarray, np.ndarray]:
    """The same reductions inside one nnsight trace (remote-safe: envoys resolved before the trace,
    plain tensor ops inside it, [L+1] numbers out)."""
    a = model.adapter
    cap = softcap(model)
    T, V = int(ids.shape[-1]), model.vocab_size
    step = max(1, min(T, max_elems // V))
    blocks = list(a.layer_modules(model.nn))
    norm, unembed = a.module(model.nn, a.final_norm), a.module(model.nn, a.unembed)
    with torch.no_grad(), model.trace(ids.reshape(1, -1).to(model.input_device)):
        hs = [blk.input[0] for blk in blocks]
        hs.append(norm.input[0])
        kls, ovs = [], []
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
            kls.append((kl_sum / T).cpu())  # one device for the stack (a sharded model spans several)
            ovs.append((ov_sum / T).cpu())
        kls, ovs = torch.stack(kls).cpu().save(), torch.stack(ovs).cpu().save()
    return kls.double().numpy(), ovs.double().numpy()


def logit_lens(
    model, prompts: list[str], k: int = 5, method: str = "auto", max_elems: int | None = None, store=None
) -> LogitLens:
    """KL(p_b ‖ p_final) and top-k overlap for the input of every layer and the final residual.

    method: 'fast' (plain hooks, local models), 'trace' (nnsight, also remote) or 'auto'.
    max_elems: about how many logits (float32) exist at once (positions are decoded in chunks). The
    default is sized from the device (`engine.logits_budget`): 32 MB on a CPU, which lets the local
    path decode a few positions of all layers of a 49k-vocabulary 30-layer model in one matmul (twice
    as fast as one position at a time); 1/16 of the free memory on a GPU.
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("logit_lens() needs at least one prompt.")
    method = choose_method(model, method)
    if k < 1 or k > model.vocab_size:
        raise ValueError(f"k must be between 1 and the vocabulary size ({model.vocab_size}), not {k}.")
    fn = _lens_local if method == "fast" else _lens_trace
    max_elems = max_elems or logits_budget(model)
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

    return measure(
        LogitLens,
        model,
        prompts,
        params={"k": k, "method": method},
        per_item=per_item,
        aggregate=aggregate,
        store=store,
    )
