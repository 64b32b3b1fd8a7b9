"""§3.1 capture cost: the Gram statistics of `contributions` vs a plain HF forward.

Same model, same batch, interleaved repetitions, median of per-round ratios. Goal (issue 2):
≤ 1.15× on a 12-layer, d=256 Llama with a batch of 8 × 128 tokens on CPU, for the path a local
model takes ('fast': plain hooks). The nnsight path ('trace', what NDIF runs) is timed alongside.
"""

from __future__ import annotations

import statistics

import torch

from effdepth.access.model import wrap_module
from effdepth.bench import interleaved, paired_ratio
from effdepth.measures.contributions import gram_local, gram_trace, token_metrics
from effdepth.testing import char_tokenizer, tiny_model


def capture_vs_forward(n_layers: int = 12, d_model: int = 256, batch: int = 8, T: int = 128, repeats: int = 25) -> dict:

    tok = char_tokenizer()
    hf = tiny_model(
        "llama",
        n_layers=n_layers,
        d_model=d_model,
        vocab_size=len(tok),
        intermediate_size=688 if d_model == 256 else 2 * d_model,
    )
    model = wrap_module(hf, tok, spec="bench:llama")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, len(tok), (batch, T), generator=g)
    mask = torch.ones_like(ids)

    def plain():
        with torch.no_grad():
            hf(input_ids=ids, attention_mask=mask, use_cache=False)

    parallel = model.adapter.parallel_residual
    contenders = {
        "hf_forward": plain,
        "contributions": lambda: token_metrics(gram_local(model, ids, mask), parallel),
        "contributions_trace": lambda: token_metrics(gram_trace(model, ids, mask), parallel),
    }
    times = interleaved(contenders, repeats=repeats, raw=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = paired_ratio(times, "contributions", "hf_forward")  # per-round ratios: robust to drift
    traced = paired_ratio(times, "contributions_trace", "hf_forward")
    return {
        "benchmark": "contributions_capture_vs_forward",
        "setting": f"llama L={n_layers} d={d_model} batch={batch}x{T}, CPU threads={torch.get_num_threads()}",
        "hf_forward_s": round(med["hf_forward"], 4),
        "contributions_s": round(med["contributions"], 4),
        "ratio": round(paired["median"], 3),
        "ratio_iqr": [round(paired["q1"], 3), round(paired["q3"], 3)],
        "trace_ratio": round(traced["median"], 3),
        "trace_ratio_iqr": [round(traced["q1"], 3), round(traced["q3"], 3)],
        "goal": "ratio <= 1.15",
    }


def run_benchmarks(names=None) -> list[dict]:
    return [capture_vs_forward()]
