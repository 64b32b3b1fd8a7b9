"""§3.3 cost: the residual-erasure heatmap by the suffix engine vs one traced forward per variant.

One teacher-forced example (prompt + answer, T tokens) on a random Llama; the (L+1)·(T-1) variants
(erase h_b[t] for b = 0 … L, t = 1 … T-1) computed

- (a) by `effdepth.residual_erasure` (method='fast'): the clean run once, each variant starts at
  block b from its edited residual, variants that start at different b share block calls;
- (b) one nnsight trace per variant (the straightforward way): the clean output distribution from
  one trace, then per (b, t) a full traced forward with h_b[t] overwritten (block b's input, or the
  final norm's input for b = L) and ‖y − ȳ‖₂ reduced at the answer-predicting positions.

Interleaved repetitions, medians, ratio; the two heatmaps must agree to 1e-5 (float32).
"""

from __future__ import annotations

import numpy as np
import torch

from effdepth.access.model import wrap_module
from effdepth.bench import interleaved
from effdepth.measures.residual_erasure import _erase_fast, encode_example, mean_residuals
from effdepth.testing import char_tokenizer, tiny_model

N_LAYERS, D_MODEL = 6, 128
PROMPT, ANSWER = "F: q>d a>b b>e d>c Q: a 2 hops? A:", " e"


def _model(n_layers=N_LAYERS, d_model=D_MODEL, seed=0):

    tok = char_tokenizer()
    hf = tiny_model("llama", seed=seed, n_layers=n_layers, d_model=d_model, vocab_size=len(tok))
    return wrap_module(hf, tok, spec=f"bench:llama-{n_layers}l")


def one_trace_per_variant(model, ids: torch.Tensor, answer_start: int, vectors: torch.Tensor) -> np.ndarray:
    """effect [L+1, T] by one full nnsight trace per (b, t) (position 0 left NaN, as the fast path)."""
    adapter = model.adapter
    L, T = model.n_layers, len(ids)
    scored = torch.arange(answer_start - 1, T - 1)
    x = ids[None]
    with torch.no_grad(), model.trace(x):
        clean = torch.softmax(model.nn.output.logits[0, scored].float(), -1).save()
    effect = np.full((L + 1, T), np.nan)
    for b in range(L + 1):
        for t in range(1, T):
            with torch.no_grad(), model.trace(x):
                module = adapter.layer_modules(model.nn)[b] if b < L else adapter.module(model.nn, adapter.final_norm)
                module.input[0, t] = vectors[b].to(module.input.dtype)
                p = torch.softmax(model.nn.output.logits[0, scored].float(), -1)
                d = (p - clean).norm(dim=-1).max().save()
            effect[b, t] = float(d)
    return effect


def erasure_vs_one_trace_per_variant(repeats: int = 3) -> dict:

    model = _model()
    ids, a0 = encode_example(model, PROMPT, ANSWER)
    vectors = mean_residuals(model, ["Q: 5+7-5+3 A: 10", "F: a>b b>c Q: a 2 hops? A: c", "The cat sat on the mat."])
    out = {}

    def fast():
        out["fast"] = (
            _erase_fast(model, ids, a0, vectors, front=False, per_position=False, batch_size=256)[0].double().numpy()
        )

    def per_variant():
        out["per_variant"] = one_trace_per_variant(model, ids, a0, vectors)

    med = interleaved({"fast": fast, "one_trace_per_variant": per_variant}, repeats=repeats, warmup=0)
    diff = float(np.nanmax(np.abs(out["fast"] - out["per_variant"])))
    L, T = model.n_layers, len(ids)
    return {
        "benchmark": "erasure_vs_one_trace_per_variant",
        "setting": f"llama L={L} d={D_MODEL} T={T} ({(L + 1) * (T - 1)} variants), CPU threads={torch.get_num_threads()}",
        "fast_s": round(med["fast"], 4),
        "one_trace_per_variant_s": round(med["one_trace_per_variant"], 4),
        "ratio": round(med["fast"] / med["one_trace_per_variant"], 4),
        "speedup": round(med["one_trace_per_variant"] / med["fast"], 1),
        "max_abs_diff": diff,
        "agree_1e-5": diff <= 1e-5,
        "goal": "agree_1e-5 and ratio < 1",
    }


BENCHMARKS = {"erasure": erasure_vs_one_trace_per_variant}


def run_benchmarks(names=None) -> list[dict]:
    return [BENCHMARKS[n]() for n in (names or BENCHMARKS)]
