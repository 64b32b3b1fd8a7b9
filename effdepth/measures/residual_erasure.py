"""§3.3 residual erasure: until which layer is each token's information still used? (methods page §4 (residual erasure))

For every residual index b = 0 … L and every position t, replace h_b[t] by an uninformative vector
h̃_b, run the rest of the model, and record the largest change of the output distribution over the
positions that predict the answer (teacher forcing on prompt + answer):

    effect[b, t] = max_{p ∈ answer-predicting positions} ‖ softmax(ȳ_p) − softmax(y_p) ‖₂

h̃_b is, by default, the mean of h_b over all positions of a set of reference prompts; any explicit
vector per residual index can be given instead (e.g. the mean over the positions of one
counterfactual example, §3.5: `mean_residuals(model, [counterfactual])`).

The (L+1)·T variants share the clean run below the erased residual: the `engine` starts each
variant at block b from its edited h_b and runs the variants that started at different b together,
one call per block (about (L+1)·T/2 block-rows per block instead of (L+1)·T full forwards). Position
0 is never erased (the project's rule; its column is NaN) unless `front=True`; erasing a position
after the last answer-predicting one cannot change any prediction (causality) and is 0 by
construction without running it. `method="trace"` is the batched nnsight form (one trace per batch
of variants, the clean run as row 0), which also runs on NDIF.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from effdepth.access.model import choose_method
from effdepth.data import DatasetNotAvailable, load_prompts
from effdepth.engine import clean_run, logits_budget
from effdepth.prompts import check_length
from effdepth.results import Result, measure
from effdepth.store import digest


class Erasure(Result):
    """Residual-erasure heatmap of one example.

    effect [L+1, T]: row b = erased residual index (0 = embeddings, L = last residual), column t =
    erased position; NaN at position 0 unless front=True. token_ids [T], tokens [T] (each id
    decoded alone), answer_start (index of the first answer token), predicting [P] (positions whose
    prediction is scored: answer_start-1 … T-2). With per_position=True also position_effect
    [L+1, T, P]: the change at each scored position separately.
    """

    measurement = "residual_erasure"

    @property
    def token_list(self) -> list[str]:
        return [str(t) for t in self.arrays["tokens"]]

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per (residual index, position) with its token."""
        eff = self.effect
        b, t = np.meshgrid(np.arange(eff.shape[0]), np.arange(eff.shape[1]), indexing="ij")
        toks = np.asarray(self.arrays["tokens"])
        return pd.DataFrame(
            {"residual": b.ravel(), "position": t.ravel(), "token": toks[t.ravel()], "effect": eff.ravel()}
        )


def encode_example(model, prompt: str, answer: str, index=None) -> tuple[torch.Tensor, int]:
    """Token ids of prompt + answer (answer tokenised on its own, no specials) and the answer start;
    refused (`prompts.PromptError`, naming `index`) when empty or together past the model's context."""

    p = model.encode(prompt, index=index)
    a = model.encode(answer, add_special_tokens=False)
    if len(a) == 0:
        raise ValueError(f"The answer {answer!r} has no tokens.")
    check_length(model, len(p) + len(a), index, " (prompt + answer)")
    return torch.cat([p, a]), len(p)


def token_strings(model, ids) -> np.ndarray:
    """Each id decoded on its own (what a heatmap's x axis shows)."""
    return np.array([model.tokenizer.decode([int(i)]) for i in ids], dtype=str)


@torch.no_grad()
def mean_residuals(model, prompts: list[str], method: str = "auto") -> torch.Tensor:
    """h̃_b for b = 0 … L: the mean of h_b over all positions of all `prompts`, float32 [L+1, d].
    method: 'fast' (engine, local models), 'trace' (one nnsight trace per prompt, also NDIF: only
    the [L+1, d] sums come back) or 'auto'."""
    method = choose_method(model, method)
    prompts = list(prompts)
    if not prompts:
        raise ValueError("mean_residuals() needs at least one prompt.")
    total, count = None, 0
    for ids in [model.encode(p, index=i) for i, p in enumerate(prompts)]:  # every prompt checked before the first run
        s = (
            _residual_sums_trace(model, ids)
            if method == "trace"
            else torch.stack([h.float().sum(0) for h in clean_run(model, ids).h]).cpu()
        )
        total = s if total is None else total + s
        count += len(ids)
    return total / count


def _residual_sums_trace(model, ids: torch.Tensor) -> torch.Tensor:
    """Σ_t h_b[t] for b = 0 … L [L+1, d] from one trace (h_L: the final norm's input); the run
    stops at the final norm."""
    a = model.adapter
    blocks = list(a.layer_modules(model.nn))
    norm = a.module(model.nn, a.final_norm)
    # nnsight reads a trace body's source: each statement stays on one line
    # fmt: off
    with torch.no_grad(), model.trace(ids.reshape(1, -1).to(model.input_device)) as tracer:
        sums = [blk.input[0].float().sum(0).cpu() for blk in blocks]  # one device for the stack (a sharded model spans several)
        sums.append(norm.input[0].float().sum(0).cpu())
        sums = torch.stack(sums).save()
        tracer.stop()
    # fmt: on
    return sums


def _scored(T: int, answer_start: int) -> torch.Tensor:
    return torch.arange(max(answer_start - 1, 0), T - 1)


@torch.no_grad()
def _erase_fast(model, ids, answer_start, vectors, front, per_position, batch_size, max_elems=None):
    run = clean_run(model, ids)
    L, T = run.n_layers, run.T
    scored = _scored(T, answer_start)
    first = 0 if front else 1
    positions = list(range(first, int(scored[-1]) + 1))  # later positions cannot change a scored prediction
    dev, dt = run.h[0].device, run.h[0].dtype
    vec = vectors.to(dev, dt)
    y = torch.softmax(run.decode(run.h[-1][scored]).float(), -1)  # [P, V]
    V = y.shape[-1]
    effect = torch.full((L + 1, T), float("nan"))
    effect[:, first:] = 0.0
    pos_effect = torch.full((L + 1, T, len(scored)), float("nan")) if per_position else None
    if per_position:
        pos_effect[:, first:] = 0.0
    if not positions:
        return effect, pos_effect
    d = run.h[0].shape[-1]
    bytes_per = torch.finfo(dt).bits // 8
    # positions per chunk: keep the chunk's residuals ((L+1)·k rows of [T, d]) near 512 MiB
    k = max(1, min(len(positions), (512 << 20) // max(1, (L + 1) * T * d * bytes_per)))
    rows_per_decode = max(1, (max_elems or logits_budget(model)) // max(1, V * len(scored)))
    for c0 in range(0, len(positions), k):
        ts = torch.tensor(positions[c0 : c0 + k])
        n = len(ts)
        starts = {}
        for b in range(L + 1):
            h = run.h[b].expand(n, T, d).clone()
            h[torch.arange(n), ts.to(dev)] = vec[b]
            starts[b] = h
        finals = run.staggered(starts, max_batch=batch_size)
        for b in range(L + 1):
            hf = finals[b][:, scored]  # [n, P, d]
            for r0 in range(0, n, rows_per_decode):
                y_bar = torch.softmax(run.decode(hf[r0 : r0 + rows_per_decode]).float(), -1)
                diff = (y_bar - y).norm(dim=-1).cpu()  # [r, P]
                tt = ts[r0 : r0 + rows_per_decode]
                effect[b, tt] = diff.amax(-1)
                if per_position:
                    pos_effect[b, tt] = diff
    return effect, pos_effect


def _erase_trace(model, ids, answer_start, vectors, front, per_position, batch_size):
    """Batched nnsight form: row 0 of every trace is the clean run; each other row erases one
    (b, t). Also runs remotely (plain tensor ops inside the trace)."""
    adapter = model.adapter
    L, T = model.n_layers, int(ids.shape[0])
    scored = _scored(T, answer_start)
    first = 0 if front else 1
    positions = list(range(first, int(scored[-1]) + 1))
    dev = model.input_device
    blocks = list(adapter.layer_modules(model.nn))  # envoys resolved before the traces (NDIF-safe bodies)
    norm, nn = adapter.module(model.nn, adapter.final_norm), model.nn
    variants = [(b, t) for b in range(L + 1) for t in positions]
    effect = torch.full((L + 1, T), float("nan"))
    effect[:, first:] = 0.0
    pos_effect = torch.full((L + 1, T, len(scored)), float("nan")) if per_position else None
    if per_position:
        pos_effect[:, first:] = 0.0
    step = batch_size or 16
    for v0 in range(0, len(variants), step):
        chunk = variants[v0 : v0 + step]
        R = len(chunk) + 1
        masks = {}
        for b in range(L + 1):
            m = torch.zeros(R, T, 1, dtype=torch.bool)
            for r, (bb, t) in enumerate(chunk, start=1):
                if bb == b:
                    m[r, t] = True
            if m.any():
                masks[b] = m.to(dev)
        vec = vectors.to(dev)
        batch = ids.reshape(1, -1).repeat(R, 1).to(dev)
        with torch.no_grad(), model.trace(batch):
            for b in range(L):
                if b in masks:
                    inp = blocks[b].input  # mask and vector moved to this block's device
                    blocks[b].input = torch.where(masks[b].to(inp.device), vec[b].to(inp.device, inp.dtype), inp)
            if L in masks:
                inp = norm.input
                norm.input = torch.where(masks[L].to(inp.device), vec[L].to(inp.device, inp.dtype), inp)
            logits = nn.output.logits
            p = torch.softmax(logits[:, scored.to(logits.device)].float(), -1)
            diff = (p[1:] - p[:1]).norm(dim=-1).cpu().save()
        for r, (b, t) in enumerate(chunk):
            effect[b, t] = diff[r].max()
            if per_position:
                pos_effect[b, t] = diff[r]
    return effect, pos_effect


def residual_erasure(
    model,
    prompt: str,
    answer: str,
    reference_prompts: list[str] | None = None,
    vectors: torch.Tensor | np.ndarray | None = None,
    n_reference: int = 10,
    seed: int = 0,
    front: bool = False,
    per_position: bool = False,
    method: str = "auto",
    batch_size: int | None = 256,
    store=None,
) -> Erasure:
    """Residual erasure of one teacher-forced example (methods page §4 (residual erasure)): `.effect` [L+1, T].

    reference_prompts: h̃_b is the mean of h_b over all their positions; default: `n_reference`
    prompts of the model's own distribution (`effdepth.data.load_prompts('auto', …, seed)`).
    vectors: explicit erasing vectors [L+1, d] instead (e.g. `mean_residuals(model, [one_example])`).
    front: also erase position 0. per_position: keep the change at every scored position.
    method: 'fast' (engine, local models), 'trace' (nnsight, also NDIF) or 'auto'. batch_size:
    rows per block call (fast) or variants per trace (trace).
    """
    method = choose_method(model, method)
    ids, answer_start = encode_example(model, prompt, answer)
    if vectors is None:
        if reference_prompts is None:
            try:
                reference_prompts = load_prompts("auto", n_reference, seed, model_spec=model.spec)
            except DatasetNotAvailable as err:
                raise DatasetNotAvailable(
                    f"{err} Or pass reference_prompts=[...] (or vectors=) to residual_erasure."
                ) from err
        reference_prompts = list(reference_prompts)
        vectors = mean_residuals(model, reference_prompts, method)
        source = {"reference_prompts": digest(reference_prompts), "n_reference": len(reference_prompts)}
    else:
        vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        if vectors.shape != (model.n_layers + 1, model.d_model):
            raise ValueError(
                f"vectors must be [L+1, d] = [{model.n_layers + 1}, {model.d_model}], got {list(vectors.shape)}."
            )
        source = {"vectors": digest(vectors.numpy().round(6).tolist())}

    def per_item(_):
        fn = _erase_fast if method == "fast" else _erase_trace
        effect, pos = fn(model, ids, answer_start, vectors, front, per_position, batch_size)
        out = {
            "effect": effect.double().numpy(),
            "token_ids": ids.numpy(),
            "tokens": token_strings(model, ids),
            "answer_start": np.array(answer_start),
            "predicting": _scored(len(ids), answer_start).numpy(),
            "erasing_vectors_norm": vectors.norm(dim=-1).double().numpy(),
        }
        if per_position:
            out["position_effect"] = pos.double().numpy()
        return out

    params = {"front": front, "per_position": per_position, "method": method, **source}
    return measure(
        Erasure,
        model,
        [(prompt, answer)],
        params=params,
        per_item=per_item,
        aggregate=lambda parts: parts[0],
        store=store,
        item_id=lambda it: list(it),
        data_meta={"prompt": prompt, "answer": answer, **source},
        progress=False,
    )
