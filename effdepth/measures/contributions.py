"""§3.1 residual contributions: how much, and in which direction, each layer writes (methods page §1).

For every token and layer l, from h_l (block input), a_l and m_l (adapter-defined writes):
- relative contribution: attention ‖a_l‖/‖h_l‖, MLP ‖m_l‖/‖r_l‖, layer ‖a_l + m_l‖/‖h_l‖, where
  r_l = h_l + a_l is the MLP's own residual (h_l under a parallel residual);
- cosine: cos(a_l, h_l), cos(m_l, r_l), cos(a_l + m_l, h_l), and cos(h_l, h_{l+1});
- norms ‖h_l‖, ‖a_l‖, ‖m_l‖.
Aggregated as token-weighted means over all tokens of all prompts (position 0 included) and maxima.

All of it follows from the 3×3 Gram matrix of (h, a, m) per token, computed as the model runs, in
float32: a handful of [B, T] numbers per layer leave the model, never its activations, so memory
is independent of the number of prompts. Two ways to get the Grams, same numbers:
- 'fast' (local models): plain PyTorch hooks on each block, its attention and its MLP;
- 'trace' (also remote, on NDIF): one nnsight trace with the same tensor ops inside it. Each
  module read in a trace costs a hand-over between nnsight's worker and the model (about half a
  millisecond on a CPU), 3 per layer: noticeable on a small model, nothing on a large one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from effdepth.access.model import choose_method
from effdepth.results import Result, measure

EPS = 1e-6
MEAN_COLUMNS = (
    "rel_layer",
    "rel_attn",
    "rel_mlp",
    "cos_layer",
    "cos_attn",
    "cos_mlp",
    "cos_io",
    "norm_h",
    "norm_attn",
    "norm_mlp",
)
MAX_COLUMNS = ("rel_layer", "rel_attn", "rel_mlp")
PROMPT_COLUMNS = ("rel_layer", "rel_attn", "cos_layer")  # also kept per prompt ([P, L], prompts in batch order)


class Contributions(Result):
    """Per-layer means (`mean_<metric>` [L]) and maxima (`max_<metric>` [L]) over tokens, and the
    token means per prompt of the relative contributions (`prompt_<metric>` [P, L], for intervals)."""

    measurement = "contributions"

    def to_frame(self) -> pd.DataFrame:
        """DataFrame indexed by layer: the token-weighted means, then `max_rel_*` maxima."""
        cols = {c: self.arrays[f"mean_{c}"] for c in MEAN_COLUMNS}
        cols.update({f"max_{c}": self.arrays[f"max_{c}"] for c in MAX_COLUMNS})
        frame = pd.DataFrame(cols)
        frame.index.name = "layer"
        return frame


def token_metrics(gram: torch.Tensor, parallel_residual: bool) -> dict[str, torch.Tensor]:
    """Per-token metrics from the Gram matrix G[..., i, j] = <x_i, x_j> of x = (h, a, m).

    Returns tensors shaped like G[..., 0, 0]. cos_io needs h_{l+1} = h + a + m, also expressible
    through G, so no extra activation is read.
    """
    hh, aa, mm = gram[..., 0, 0], gram[..., 1, 1], gram[..., 2, 2]
    ha, hm, am = gram[..., 0, 1], gram[..., 0, 2], gram[..., 1, 2]
    sqrt = lambda x: x.clamp_min(0).sqrt()  # noqa: E731
    nh, na, nm = sqrt(hh), sqrt(aa), sqrt(mm)
    if parallel_residual:
        nr, mr = nh, hm  # the MLP writes into h_l
    else:
        nr, mr = sqrt(hh + 2 * ha + aa), hm + am  # into h_l + a_l
    nd = sqrt(aa + 2 * am + mm)  # ‖a + m‖
    dh = ha + hm  # <a + m, h>
    nnext = sqrt(hh + aa + mm + 2 * (ha + hm + am))  # ‖h_{l+1}‖
    c = lambda x: x.clamp_min(EPS)  # noqa: E731
    return {
        "rel_layer": nd / c(nh),
        "rel_attn": na / c(nh),
        "rel_mlp": nm / c(nr),
        "cos_layer": dh / (c(nd) * c(nh)),
        "cos_attn": ha / (c(na) * c(nh)),
        "cos_mlp": mr / (c(nm) * c(nr)),
        "cos_io": (hh + dh) / (c(nh) * c(nnext)),
        "norm_h": nh,
        "norm_attn": na,
        "norm_mlp": nm,
    }


def _batches(model, prompts: list[str], batch_size: int):
    """Right-padded batches of token ids (exact for causal models: pads come after every real token)."""
    encoded = [model.encode(p, index=i) for i, p in enumerate(prompts)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield tuple(prompts[i] for i in idx), [encoded[i] for i in idx]


@torch.no_grad()
def gram_local(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[L, B, T, 3, 3] float32 Gram matrices of (h_l, a_l, m_l) per token, from plain hooks on a local model."""
    adapter = model.adapter
    grams, seen = [], {}

    def block_pre(module, args, kwargs):
        seen["h"] = args[0] if args else kwargs["hidden_states"]

    def attn_out(module, args, out):
        seen["a"] = out[0] if adapter.attn_is_tuple else out

    def mlp_out(module, args, out):
        seen["m"] = out

    def block_out(module, args, out):  # after both writes, whatever order the block runs them in
        x = torch.stack([seen["h"], seen["a"], seen["m"]], dim=-2).float()  # [B, T, 3, d]
        grams.append(x @ x.transpose(-1, -2))
        seen.clear()

    handles = []
    for block in adapter.layer_modules(model.hf):
        handles += [
            block.register_forward_pre_hook(block_pre, with_kwargs=True),
            adapter.module(block, adapter.attn).register_forward_hook(attn_out),
            adapter.module(block, adapter.mlp).register_forward_hook(mlp_out),
            block.register_forward_hook(block_out),
        ]
    try:
        try:
            model.hf(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
        except TypeError:  # a model class without logits_to_keep
            model.hf(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(grams).cpu()


def gram_trace(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The same Gram matrices from one nnsight trace (remote-safe: plain tensor ops inside it)."""
    adapter = model.adapter
    # Envoys resolved here: the trace body (what NDIF unpickles) holds only envoys, tensors and builtins.
    sites = [
        (layer, adapter.module(layer, adapter.attn), adapter.module(layer, adapter.mlp))
        for layer in adapter.layer_modules(model.nn)
    ]
    attn_is_tuple = adapter.attn_is_tuple
    with torch.no_grad(), model.trace({"input_ids": ids, "attention_mask": mask}):
        grams = []
        for layer, attn, mlp in sites:
            h = layer.input.float()
            a = attn.output
            a = (a[0] if attn_is_tuple else a).float()
            m = mlp.output.float()
            x = torch.stack([h, a, m], dim=-2)  # [B, T, 3, d]
            grams.append((x @ x.transpose(-1, -2)).cpu())  # one device for the stack (a sharded model spans several)
        grams = torch.stack(grams).save()  # [L, B, T, 3, 3]: the only download
    return grams.cpu()


def contributions(model, prompts: list[str], batch_size: int = 8, method: str = "auto", store=None) -> Contributions:
    """Residual contributions of every layer, aggregated over all tokens of `prompts` (methods page §1).

    A relative contribution of 0.1 means the layer adds a vector one tenth as long as the residual
    it reads; a cosine near 0 means it writes a new direction, < 0 that it erases, > 0 that it
    strengthens what is there.
    method: 'fast' (plain hooks, local models), 'trace' (nnsight, also remote) or 'auto'.
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("contributions() needs at least one prompt.")
    method = choose_method(model, method)
    grams = gram_local if method == "fast" else gram_trace
    parallel = model.adapter.parallel_residual

    def per_batch(item):
        _, encoded = item
        B, T = len(encoded), max(len(e) for e in encoded)
        ids = torch.full((B, T), model.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for i, e in enumerate(encoded):
            ids[i, : len(e)], mask[i, : len(e)] = e, 1
        metrics = token_metrics(grams(model, ids.to(model.input_device), mask.to(model.input_device)), parallel)
        keep = mask.bool()  # [B, T]
        out = {"count": np.array(int(keep.sum()))}
        per_prompt = keep.sum(-1).clamp(min=1).double()  # [B] tokens per prompt
        for name in PROMPT_COLUMNS:  # token means per prompt [B, L]: the spread across prompts
            v = metrics[name].double() * keep
            out[f"prompt_{name}"] = (v.sum(-1) / per_prompt).T.numpy()
        for name, v in metrics.items():  # v: [L, B, T]
            sel = v[:, keep]  # [L, N]
            out[f"sum_{name}"] = sel.double().sum(-1).numpy()
            if name[4:] in ("layer", "attn", "mlp") and name.startswith("rel"):
                out[f"max_{name}"] = sel.max(-1).values.double().numpy()
        return out

    def aggregate(parts):
        n = sum(int(p["count"]) for p in parts)
        out = {"n_tokens": np.array(n)}
        for name in MEAN_COLUMNS:
            out[f"mean_{name}"] = sum(p[f"sum_{name}"] for p in parts) / n
        for name in MAX_COLUMNS:
            out[f"max_{name}"] = np.max([p[f"max_{name}"] for p in parts], axis=0)
        for name in PROMPT_COLUMNS:
            out[f"prompt_{name}"] = np.concatenate([p[f"prompt_{name}"] for p in parts], axis=0)
        return out

    items = list(_batches(model, prompts, batch_size))
    return measure(
        Contributions,
        model,
        items,
        params={"batch_size": batch_size, "method": method, "per_prompt": PROMPT_COLUMNS},
        per_item=per_batch,
        aggregate=aggregate,
        store=store,
        item_id=lambda item: list(item[0]),
    )
