"""§3.2 logit-lens cost: `logit_lens` (local path) vs one plain HF forward over the same prompts.

The model has SmolLM2-135M's shape (30 layers, d=576, 9/3 heads, d_ff=1536, 49 152-token vocabulary)
with random weights, so the benchmark needs no download and times the same arithmetic. The lens has
to decode L+1 residuals per position against W_out, 2·(L+1)·T·d·V FLOPs: about 6.5× a forward
(which decodes only the last residual) for this shape, the floor the ratio is judged against.
Goal (issue 13): ratio ≤ 8. Interleaved rounds, median of per-round ratios.
"""

from __future__ import annotations

import statistics

import torch

from effdepth.access.model import wrap_module
from effdepth.bench import interleaved, paired_ratio
from effdepth.measures.logit_lens import logit_lens
from effdepth.store import Store
from effdepth.testing import char_tokenizer, tiny_model

SMOLLM2 = dict(
    n_layers=30,
    d_model=576,
    vocab_size=49152,
    intermediate_size=1536,
    num_attention_heads=9,
    num_key_value_heads=3,
    tie_word_embeddings=True,
)


def lens_vs_forward(shape: dict | None = None, n_prompts: int = 3, T: int = 64, repeats: int = 5) -> dict:

    shape = dict(SMOLLM2 if shape is None else shape)
    hf = tiny_model("llama", **shape)
    model = wrap_module(hf, char_tokenizer(), spec="bench:lens")
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, shape["vocab_size"], (T,), generator=g) for _ in range(n_prompts)]
    model.encode = lambda ids, **kw: ids  # the "prompts" are token ids already
    L, d, V = shape["n_layers"], shape["d_model"], shape["vocab_size"]

    def plain():
        with torch.no_grad():
            for ids in prompts:
                hf(input_ids=ids[None], use_cache=False)

    off = Store(enabled=False)

    def lens():
        logit_lens(model, prompts, method="fast", store=off)

    times = interleaved({"hf_forward": plain, "lens": lens}, repeats=repeats, raw=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = paired_ratio(times, "lens", "hf_forward")
    n_params = sum(p.numel() for p in hf.parameters())
    forward_flops = (
        2 * (n_params - (0 if shape.get("tie_word_embeddings") else V * d)) * T
    )  # every weight once per token
    floor = 2 * (L + 1) * T * d * V / forward_flops
    return {
        "benchmark": "logit_lens_vs_forward",
        "setting": f"llama L={L} d={d} V={V}, {n_prompts} prompts x {T} tokens, CPU threads={torch.get_num_threads()}",
        "hf_forward_s": round(med["hf_forward"], 3),
        "lens_s": round(med["lens"], 3),
        "ratio": round(ratio["median"], 2),
        "ratio_iqr": [round(ratio["q1"], 2), round(ratio["q3"], 2)],
        "unembedding_floor": round(floor, 2),
        "goal": "ratio <= 8",
    }


def run_benchmarks(names=None) -> list[dict]:
    return [lens_vs_forward()]
