"""§3.3 integrated gradients: which layer's output, at which position, carries the answer? (methods page §4 (integrated gradients))

The target is P = the summed probability of the correct answer tokens, teacher-forced on
prompt + answer (Σ over the answer-predicting positions p of softmax(y_p)[answer token]). For each
layer l, the activation x is the layer's output residual h_{l+1} (part='layer'), its attention write
a_l (part='attention') or its MLP write m_l (part='mlp'); the baseline x' is the mean of x over the
prompt's own positions (one vector, at every position); along the path x' + r (x − x'),
r = k/S for k = 0 … S-1,

    attribution[l, t] = (1/S) Σ_k Σ_d ∂P/∂x[t, d] (x' + r_k (x − x')) · (x − x')[t, d].

Completeness: Σ_t attribution[l, t] ≈ P(x) − P(x') (a left Riemann sum, so the gap is O(1/S));
`completeness_gap` [L] records it. The clean prefix below layer l is computed once (`engine`); each
path batch runs only from block l (or l+1 for part='layer') to the output.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from effdepth.access.model import choose_method
from effdepth.engine import clean_run, decode
from effdepth.measures.residual_erasure import encode_example, token_strings
from effdepth.results import Result, measure

PARTS = ("layer", "attention", "mlp")


class Attribution(Result):
    """Integrated-gradients attribution of one example.

    attribution [L, T]: row l = layer, column t = position. p_input: P(x) of the clean run;
    p_baseline [L]: P(x') with layer l's activation replaced by its baseline; completeness_gap [L]:
    Σ_t attribution[l, t] − (P(x) − P(x')). token_ids, tokens, answer_start as in `Erasure`.
    """

    measurement = "integrated_gradients"

    @property
    def token_list(self) -> list[str]:
        return [str(t) for t in self.arrays["tokens"]]

    def to_frame(self) -> pd.DataFrame:
        """Per layer: the summed attribution, P(x) − P(x') and the completeness gap."""
        return pd.DataFrame(
            {
                "sum_attribution": self.attribution.sum(-1),
                "p_input_minus_baseline": float(self.p_input) - self.p_baseline,
                "completeness_gap": self.completeness_gap,
            }
        ).rename_axis("layer")


@contextmanager
def _sublayer_hook(model, l: int, part: str, state: dict):
    """On block l's attention / MLP write: record it (state['replace'] is None) or replace it."""
    a = model.adapter
    block = a.layer_modules(model.hf)[l]
    sub = a.module(block, a.attn if part == "attention" else a.mlp)
    is_tuple = part == "attention" and a.attn_is_tuple

    def hook(module, inputs, output):
        value = output[0] if is_tuple else output
        if state.get("replace") is None:
            state["captured"] = value.detach()
            return None
        new = state["replace"].to(value.dtype)
        return (new,) + tuple(output[1:]) if is_tuple else new

    handle = sub.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _answer_probability(model, h_final: torch.Tensor, scored: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """P per row [N]: Σ over scored positions of the probability of the next (answer) token."""
    logits = decode(model, h_final[:, scored]).float()  # [N, P, V]
    probs = torch.softmax(logits, -1)
    return probs.gather(-1, targets.expand(probs.shape[0], -1)[..., None])[..., 0].sum(-1)


def _ig_layer(model, run, l: int, part: str, steps: int, batch_size: int, scored, targets):
    """(attribution [T], P(x')) for layer l."""
    L = run.n_layers
    dt = run.h[0].dtype
    state: dict = {}
    if part == "layer":
        x = run.h[l + 1].float()
    else:
        with torch.no_grad(), _sublayer_hook(model, l, part, state):
            run.layer(l, run.h[l])
        x = state["captured"][0].float()  # [T, d]
    x_base = x.mean(0, keepdim=True).expand_as(x)  # the prompt's own mean, at every position
    diff = x - x_base
    total = torch.zeros_like(x)
    p_base = None
    for k0 in range(0, steps, batch_size):
        r = torch.arange(k0, min(steps, k0 + batch_size), dtype=torch.float32, device=x.device) / steps
        path = (x_base[None] + r[:, None, None] * diff[None]).to(dt).requires_grad_(True)
        with torch.enable_grad():
            if part == "layer":
                h, start = path, l + 1
            else:
                state["replace"] = path
                with _sublayer_hook(model, l, part, state):
                    h = run.layer(l, run.h[l].expand(path.shape[0], -1, -1).contiguous(), grad=True)
                start = l + 1
            for i in range(start, L):
                h = run.layer(i, h, grad=True)
            p = _answer_probability(model, h, scored, targets)
            (grad,) = torch.autograd.grad(p.sum(), path)
        total += grad.float().sum(0)
        if k0 == 0:
            p_base = float(p[0].detach())
    return (total * diff).sum(-1) / steps, p_base


def _ig_trace(model, ids, part: str, steps: int, batch_size: int, scored, targets):
    """(attribution [L, T], P(x), P(x') [L]) from nnsight traces (also on NDIF): per layer and batch
    of path points, one trace whose rows all run the prompt; the activation x (row 0, detached) is
    replaced by the path points, and a backward pass inside the trace returns only
    Σ_k Σ_d ∂P/∂x · (x − x') [T] and P of each row. Envoys are resolved before the traces."""
    a = model.adapter
    blocks = list(a.layer_modules(model.nn))
    sites = blocks if part == "layer" else [a.module(b, a.attn if part == "attention" else a.mlp) for b in blocks]
    nn, dev = model.nn, model.input_device
    T = int(ids.shape[0])
    attr, p_base = [], []
    for site in sites:
        total = torch.zeros(T, dtype=torch.float64)
        for k0 in range(0, steps, batch_size):
            r = torch.arange(k0, min(steps, k0 + batch_size), dtype=torch.float32) / steps
            batch = ids.reshape(1, -1).repeat(len(r), 1).to(dev)
            rr = r.to(dev)[:, None, None]
            # nnsight reads a trace body's source: each statement stays on one line
            # fmt: off
            with model.trace(batch):
                out = site.output
                is_tuple = isinstance(out, tuple)
                x = (out[0] if is_tuple else out)[:1].detach().float()  # [1, T, d]: every row is the clean run
                x_base = x.mean(1, keepdim=True)
                diff = x - x_base
                path = (x_base + rr.to(x.device) * diff).to(out[0].dtype if is_tuple else out.dtype).requires_grad_(True)
                site.output = (path,) + tuple(out[1:]) if is_tuple else path
                logits = nn.output.logits
                probs = torch.softmax(logits[:, scored.to(logits.device)].float(), -1)
                p = probs.gather(-1, targets.to(logits.device).expand(probs.shape[0], -1)[..., None])[..., 0].sum(-1)  # [R]
                p_rows = p.detach().cpu().save()
                with p.sum().backward():
                    g = (path.grad.float().sum(0) * diff[0]).sum(-1).double().cpu().save()  # [T]
            # fmt: on
            total += g
            if k0 == 0:
                p_base.append(float(p_rows[0]))
        attr.append(total / steps)
    return torch.stack(attr).numpy(), _clean_probability_trace(model, ids, scored, targets), np.array(p_base)


def _clean_probability_trace(model, ids, scored, targets) -> float:
    """P(x) of the clean run, from one trace."""
    nn = model.nn
    with torch.no_grad(), model.trace(ids.reshape(1, -1).to(model.input_device)):
        logits = nn.output.logits
        probs = torch.softmax(logits[:, scored.to(logits.device)].float(), -1)
        p = probs.gather(-1, targets.to(logits.device)[..., None])[..., 0].sum(-1).cpu().save()
    return float(p[0])


def integrated_gradients(
    model,
    prompt: str,
    answer: str,
    part: str = "layer",
    steps: int = 256,
    batch_size: int = 32,
    method: str = "auto",
    store=None,
) -> Attribution:
    """Integrated gradients of the answer's probability with respect to each layer's output (methods page §4 (integrated gradients)).

    part: 'layer' (the output residual h_{l+1}), 'attention' (a_l) or 'mlp' (m_l). steps: S, the
    number of points on the path (run in batches of `batch_size`). method: 'fast' (engine, local
    models), 'trace' (nnsight traces with a backward pass inside, also NDIF: L·⌈S/batch_size⌉
    traces, each returning [T] numbers) or 'auto'. Returns `.attribution` [L, T] and the
    completeness check (`p_input`, `p_baseline`, `completeness_gap`).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not '{part}'")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    method = choose_method(model, method)
    ids, answer_start = encode_example(model, prompt, answer)
    T = len(ids)
    scored = torch.arange(answer_start - 1, T - 1)

    def per_item(_):
        if method == "trace":
            attribution, p_input, p_base = _ig_trace(model, ids, part, steps, batch_size, scored, ids[scored + 1][None])
            return _arrays(attribution, p_input, p_base)
        run = clean_run(model, ids)
        dev = run.h[0].device
        sc, targets = scored.to(dev), ids[scored + 1].to(dev)[None]
        with torch.no_grad():
            p_input = float(_answer_probability(model, run.h[-1][None], sc, targets)[0])
        attr, p_base = [], []
        for l in range(run.n_layers):
            a, pb = _ig_layer(model, run, l, part, steps, batch_size, sc, targets)
            attr.append(a.cpu())
            p_base.append(pb)
        return _arrays(torch.stack(attr).double().numpy(), p_input, np.array(p_base))

    def _arrays(attribution, p_input, p_base):
        return {
            "attribution": attribution,
            "p_input": np.array(p_input),
            "p_baseline": p_base,
            "completeness_gap": attribution.sum(-1) - (p_input - p_base),
            "token_ids": ids.numpy(),
            "tokens": token_strings(model, ids),
            "answer_start": np.array(answer_start),
        }

    return measure(
        Attribution,
        model,
        [(prompt, answer)],
        params={
            "part": part,
            "steps": steps,
            **({"method": method} if method == "trace" else {}),
        },  # fast results keep their cache keys
        per_item=per_item,
        aggregate=lambda parts: parts[0],
        store=store,
        item_id=lambda it: list(it),
        data_meta={"prompt": prompt, "answer": answer},
        progress=False,
    )
