"""§3.2 cost: the skip matrix by the suffix engine vs the paper's way, and logit-lens peak memory.

- `skip_current`, `skip_future`: the full skip matrix (layer effects and output effects) of one
  prompt on a 12-layer, d=256 random Llama with T=128, computed (a) by `effdepth.measures.skip_effects`'s fast
  path (clean run once, variants run only blocks s+1 … L-1, staggered into shared block calls) and
  (b) the paper's way: one traced nnsight forward per skipped layer (× split point) after a clean
  one, every block's write saved and compared with the clean run's. A third contender, (c) one
  plain forward with a PyTorch hook per variant, shows how much of the gap is nnsight overhead.
  Interleaved repetitions, medians, ratios; results must agree to 1e-5 (float32). Goal: fast ≤ 0.6×
  the paper's way.
- `lens_memory`: peak resident memory added by `logit_lens` on one 128-token prompt with a 128k
  vocabulary, at several depths L: streamed per layer and position chunk it does not grow with L
  (a naive [L+1, T, V] float32 logits tensor is shown for scale).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys

import numpy as np
import torch

from effdepth.access.model import wrap_module
from effdepth.bench import interleaved
from effdepth.measures.logit_lens import logit_lens
from effdepth.measures.skip_effects import EPS, position_masks, prompt_effects, split_points
from effdepth.store import Store
from effdepth.testing import char_tokenizer, tiny_model

N_LAYERS, D_MODEL, T = 12, 256, 128


def _model(n_layers=N_LAYERS, d_model=D_MODEL, vocab_size=None, seed=0):

    tok = char_tokenizer()
    hf = tiny_model(
        "llama",
        seed=seed,
        n_layers=n_layers,
        d_model=d_model,
        vocab_size=vocab_size or len(tok),
        intermediate_size=688 if d_model == 256 else 2 * d_model,
    )
    return wrap_module(hf, tok, spec=f"bench:llama-{n_layers}l")


def _ids(model, n=T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, min(model.vocab_size, 80), (n,), generator=g)


def paper_way(model, ids, inter, meas, hooks: bool = False) -> dict:
    """One clean forward, then one full forward per (skipped layer × split point): block s's output
    is set to its input at the intervened positions; every block's write Δ̄_l is read and compared
    with the clean Δ_l. Through nnsight traces (the paper's tooling) or plain hooks (hooks=True)."""

    L, J = model.n_layers, inter.shape[0]
    blocks_hf = model.adapter.layer_modules(model.hf)

    def forward(skip=None, mask=None):
        if hooks:
            ins, outs = [], []

            def pre(m, a, k):
                ins.append((a[0] if a else k["hidden_states"])[0])

            def post(i):
                def f(m, a, k, o):
                    x = a[0] if a else k["hidden_states"]
                    if i == skip:
                        o = torch.where(mask[None, :, None], x, o)
                    outs.append(o[0])
                    return o

                return f

            hs = [b.register_forward_pre_hook(pre, with_kwargs=True) for b in blocks_hf]
            hs += [b.register_forward_hook(post(i), with_kwargs=True) for i, b in enumerate(blocks_hf)]
            try:
                with torch.no_grad():
                    logits = model.hf(input_ids=ids[None], use_cache=False).logits[0]
            finally:
                for h in hs:
                    h.remove()
            return [o - i for i, o in zip(ins, outs)], logits
        deltas = []
        with torch.no_grad(), model.trace(ids[None]):
            for l, block in enumerate(model.adapter.layer_modules(model.nn)):
                inp, out = block.input, block.output
                if l == skip:
                    out = torch.where(mask[None, :, None], inp, out)
                    block.output = out
                deltas.append((out - inp)[0].save())
            logits = model.nn.output.logits[0].save()
        return deltas, logits

    clean_d, clean_logits = forward()
    clean_n = [d.float().norm(dim=-1).clamp_min(EPS) for d in clean_d]
    y = torch.softmax(clean_logits.float(), -1)
    E, O = np.zeros((L, J, L)), np.zeros((L, J))
    for s in range(L):
        for j in range(J):
            d_bar, logits = forward(s, inter[j])
            m = meas[j]
            for l in range(s, L):
                E[s, j, l] = ((d_bar[l].float() - clean_d[l].float()).norm(dim=-1) / clean_n[l])[m].max()
            O[s, j] = (torch.softmax(logits.float(), -1) - y).norm(dim=-1)[m].max()
    return {"max_layer": E.max(1), "max_output": O.max(1)}


def skip_matrix(mode: str = "current", repeats: int = 5) -> dict:
    """Fast path vs the paper's way (nnsight) vs plain hooks, one prompt, interleaved medians."""

    model = _model()
    ids = _ids(model)
    splits = split_points(T, 4, seed=0, key="bench") if mode == "future" else [0]
    inter, meas = position_masks(T, mode, splits)
    results = {}

    def run(name, fn):
        def call():
            results[name] = fn()

        return call

    med = interleaved(
        {
            "fast": run("fast", lambda: prompt_effects(model, ids, mode, splits, "fast")),
            "paper_nnsight": run("paper_nnsight", lambda: paper_way(model, ids, inter, meas)),
            "paper_hooks": run("paper_hooks", lambda: paper_way(model, ids, inter, meas, hooks=True)),
        },
        repeats=repeats,
    )
    diff = max(
        float(np.abs(results["fast"][k] - results[other][k]).max())
        for other in ("paper_nnsight", "paper_hooks")
        for k in ("max_layer", "max_output")
    )
    L, J = model.n_layers, len(splits)
    return {
        "benchmark": f"skip_matrix_{mode}",
        "setting": f"llama L={L} d={D_MODEL} T={T}, {J} split point(s), {L * J} variants, CPU threads={torch.get_num_threads()}",
        "fast_s": round(med["fast"], 4),
        "paper_nnsight_s": round(med["paper_nnsight"], 4),
        "paper_hooks_s": round(med["paper_hooks"], 4),
        "ratio": round(med["fast"] / med["paper_nnsight"], 3),
        "ratio_vs_hooks": round(med["fast"] / med["paper_hooks"], 3),
        "max_abs_diff": diff,
        "forward_equivalents_fast": round(1 + J * (L - 1) / 2, 1),  # clean run + blocks s+1 … L-1 per variant
        "forward_equivalents_paper": 1 + L * J,
        "goal": "ratio <= 0.6, max_abs_diff <= 1e-5",
    }


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux)
        return True
    except OSError:
        return False


def _lens_memory_one(L: int, vocab: int) -> dict:

    model = _model(n_layers=L, vocab_size=vocab)
    prompt = "".join("abcdefghij klmnop"[i % 17] for i in range(T - 1))  # + BOS = 128 tokens
    store = Store(enabled=False)
    logit_lens(model, [prompt[:20]], store=store)  # warm up (kernels, first allocations)
    gc.collect()
    base = _rss_kib()
    ok = _reset_peak()
    res = logit_lens(model, [prompt], store=store)
    peak = _peak_kib() - base
    n_tok = len(model.encode(prompt))
    return {
        "benchmark": "lens_peak_memory",
        "setting": f"llama L={L} d={D_MODEL} T={n_tok} V={vocab}",
        "peak_added_MiB": round(peak / 1024, 1) if ok else None,
        "naive_L_T_V_logits_MiB": round((L + 1) * n_tok * vocab * 4 / 2**20, 1),
        "model_MiB": round(sum(p.numel() * p.element_size() for p in model.hf.parameters()) / 2**20, 1),
        "final_kl": float(res.final_kl),
    }


def lens_memory(depths=(4, 12, 24), vocab: int = 131072) -> list[dict]:
    """Peak RSS added by `logit_lens` (one prompt, T=128, V=128k) at several depths.

    Each depth runs in a fresh process with a fixed malloc mmap threshold, so freed buffers go
    back to the OS and the resident-set high-water mark (reset through /proc/self/clear_refs after
    loading the model) measures what the lens itself holds at its peak."""

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", TQDM_DISABLE="1")
    rows = []
    for L in depths:
        code = f"import json; from effdepth.bench.skipping import _lens_memory_one as f; print(json.dumps(f({L}, {vocab})))"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


BENCHMARKS = {
    "skip_current": lambda: [skip_matrix("current")],
    "skip_future": lambda: [skip_matrix("future", repeats=3)],
    "lens_memory": lens_memory,
}


def run_benchmarks(names=None) -> list[dict]:
    """Run the named benchmarks (default: all): skip_current, skip_future, lens_memory."""
    rows = []
    for name in names or BENCHMARKS:
        if name not in BENCHMARKS:
            raise ValueError(f"no benchmark '{name}' in skipping; available: {', '.join(BENCHMARKS)}")
        rows.extend(BENCHMARKS[name]())
    return rows


if __name__ == "__main__":  # python -m effdepth.bench.skipping [names…]
    for row in run_benchmarks(sys.argv[1:] or None):
        print(row)
