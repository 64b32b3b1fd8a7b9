"""Model solutions of the exercises, written as a student would (plain hooks and tensor code, no
effdepth measurement function); the notebooks show them collapsed (`show_solution`), the tests
prove each passes its check."""

from __future__ import annotations

import html
import inspect

import numpy as np
import torch

from effdepth.exercises._models import block_parts, final_norm, unembedding
from effdepth.measures.residual_erasure import encode_example


def show_solution(fn, title: str = "Solution"):
    """A collapsed block (HTML <details>) with the source of `fn`, for a notebook's solution cell."""
    from IPython.display import HTML
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    code = highlight(inspect.getsource(fn), PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))
    return HTML(
        f'<details class="effdepth-solution"><summary><b>{html.escape(title)}</b> (click to show)</summary>{code}</details>'
    )


# (a) §3.1 -------------------------------------------------------------------------------------
@torch.no_grad()
def relative_contribution(model, prompt, layer):

    block, attn, mlp = block_parts(model, layer)
    seen = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda mod, args, kwargs: seen.update(h=(args[0] if args else kwargs["hidden_states"])[0]), with_kwargs=True
        ),
        attn.register_forward_hook(lambda mod, args, out: seen.update(a=out[0][0])),
        mlp.register_forward_hook(lambda mod, args, out: seen.update(m=out[0])),
    ]
    try:
        model.hf(input_ids=model.encode(prompt)[None], use_cache=False)
    finally:
        for hk in hooks:
            hk.remove()
    h, a, m = (seen[k].float() for k in "ham")
    d = a + m
    norm = lambda x: x.norm(dim=-1).clamp_min(1e-6)  # noqa: E731
    return {
        "rel_attn": (norm(a) / norm(h)).mean().item(),
        "rel_mlp": (norm(m) / norm(h + a)).mean().item(),  # the MLP reads h + a
        "rel_layer": (norm(d) / norm(h)).mean().item(),
        "cos_layer": ((d * h).sum(-1) / (norm(d) * norm(h))).mean().item(),
    }


# (b) §3.2 -------------------------------------------------------------------------------------
@torch.no_grad()
def residuals(model, ids, skip=None):
    """h_0 … h_L [L+1, T, d] of one prompt; skip = (s, positions): block s's output := its input there."""
    blocks = model.layers()
    hs = []
    hooks = [
        b.register_forward_pre_hook(
            lambda mod, args, kwargs: hs.append((args[0] if args else kwargs["hidden_states"])[0].float()),
            with_kwargs=True,
        )
        for b in blocks
    ]
    if skip is not None:
        s, pos = skip

        def keep_input(mod, args, kwargs, out):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = out[0] if isinstance(out, tuple) else out
            h_out = h_out.clone()
            h_out[:, pos] = h_in[:, pos]
            return (h_out,) + tuple(out[1:]) if isinstance(out, tuple) else h_out

        hooks.append(blocks[s].register_forward_hook(keep_input, with_kwargs=True))
    hooks.append(
        blocks[-1].register_forward_hook(
            lambda mod, args, out: hs.append((out[0] if isinstance(out, tuple) else out)[0].float())
        )
    )
    try:
        model.hf(input_ids=ids[None], use_cache=False)
    finally:
        for hk in hooks:
            hk.remove()
    return torch.stack(hs)


def skip_row(model, prompt, s, t):
    ids = model.encode(prompt)
    T = len(ids)
    h = residuals(model, ids)
    h_bar = residuals(model, ids, skip=(s, torch.arange(1, t)))  # never position 0
    delta, delta_bar = h[1:] - h[:-1], h_bar[1:] - h_bar[:-1]  # [L, T, d]
    r = (delta_bar - delta).norm(dim=-1) / delta.norm(dim=-1).clamp_min(1e-6)  # [L, T]
    return r[:, t:T].amax(-1).numpy()  # max over the measured positions t … T-1


# (c) §3.2 -------------------------------------------------------------------------------------
@torch.no_grad()
def lens_layer(model, prompt, b, k=5):

    seen = {}
    block = model.layers()[b]
    hook = block.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.update(h=(args[0] if args else kwargs["hidden_states"])[0]), with_kwargs=True
    )
    try:
        logits_final = model.hf(input_ids=model.encode(prompt)[None], use_cache=False).logits[0].float()  # [T, V]
    finally:
        hook.remove()
    logits_b = unembedding(model)(final_norm(model)(seen["h"])).float()  # [T, V]: one layer only
    log_p, log_q = torch.log_softmax(logits_b, -1), torch.log_softmax(logits_final, -1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # KL(p_b ‖ p_final) per position
    top_b, top_f = log_p.topk(k, -1).indices, log_q.topk(k, -1).indices
    overlap = (top_b[:, :, None] == top_f[:, None, :]).any(-1).sum(-1).float() / k
    return {"kl": kl.mean().item(), "overlap": overlap.mean().item()}


# (d) §3.3 -------------------------------------------------------------------------------------
def depth_score(E, o):

    E, o = E.max(0), o.max(0)  # max over the examples of the level
    L = E.shape[-1]
    later = np.triu(np.ones((L, L), dtype=bool), k=1)  # l > s
    e = np.where(later, E, 0.0).sum(-1) / np.maximum(L - 1 - np.arange(L), 1)
    s = np.arange(L)
    return {"layer": (s * e).sum() / e.sum(), "logit": (s * o).sum() / o.sum()}


# (e) §3.3 -------------------------------------------------------------------------------------
@torch.no_grad()
def erasure_entry(model, prompt, answer, vectors, b, t):

    ids, start = encode_example(model, prompt, answer)
    where = model.layers()[b] if b < model.n_layers else final_norm(model)  # h_b is what this module reads

    def erase(mod, args, kwargs):
        h = (args[0] if args else kwargs["hidden_states"]).clone()
        h[:, t] = vectors[b].to(h.dtype)
        return ((h,) + tuple(args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    y = torch.softmax(model.hf(input_ids=ids[None], use_cache=False).logits[0].float(), -1)
    hook = where.register_forward_pre_hook(erase, with_kwargs=True)
    try:
        y_bar = torch.softmax(model.hf(input_ids=ids[None], use_cache=False).logits[0].float(), -1)
    finally:
        hook.remove()
    scored = torch.arange(start - 1, len(ids) - 1)  # the positions that predict answer tokens
    return (y_bar[scored] - y[scored]).norm(dim=-1).max().item()


# (f) §3.4 -------------------------------------------------------------------------------------
def linear_map(X, Y):
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    mx, my = X.mean(0), Y.mean(0)
    W = torch.linalg.lstsq(X - mx, Y - my, driver="gelsd").solution  # [d_src, d_tgt]
    return W, my - mx @ W  # the bias: residual streams have large means
