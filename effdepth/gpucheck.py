"""`effdepth bench --device cuda` (`make gpu-check`): the prepared GPU check, one 10-minute window, no Hub.

1. `effdepth check` of every hand-written family (tiny random models) in bfloat16 and float32;
2. bf16 vs float32 (same weights) of every measurement against the bf16 noise floor
   (`precision.compare_dtypes`), on every hand-written family and on the big model;
3. each chapter's measurement work at a run profile (`paper` on a GPU) on a random-init
   Llama-3.1-8B-shaped model (32 layers, d=4096, 14336 MLP, 32/8 heads, 128 256 vocabulary) with its
   random-init controls built on the GPU: time (`torch.cuda.synchronize` around it) and peak GPU memory
   (`torch.cuda.max_memory_allocated`, reset per chapter).

A chapter's work is a list of items (one measurement call on one prompt for one model or control, in
the order the notebook makes them, at the profile's sizes: `running.chapter_defaults` + `profiles`). Each
chapter runs items until its time budget is spent and reports the measured time and the projected
time of all its items (measured / done × all), so the whole check fits its window whatever the card.
On a machine without a GPU it runs at `small` size on a scaled-down shape and reports host time (and
the process's peak resident memory instead of GPU memory).
"""

from __future__ import annotations

import os
import resource
import time

import torch

from effdepth.access import controls
from effdepth.access.adapters import ADAPTERS, adapter_for
from effdepth.access.controls import control_revision, controls_of, init_weights
from effdepth.access.model import Model, check_device, wrap_module
from effdepth.data import Example
from effdepth.measures.contributions import contributions
from effdepth.measures.depth_score import depth_score
from effdepth.measures.integrated_gradients import integrated_gradients
from effdepth.measures.linear_maps import linear_maps
from effdepth.measures.logit_lens import logit_lens
from effdepth.measures.residual_erasure import residual_erasure
from effdepth.measures.skip_effects import local_effects, skip_effects
from effdepth.model_check import check_model
from effdepth.precision import compare_dtypes
from effdepth.profiles import profile_values
from effdepth.running import chapter_defaults
from effdepth.testing import char_tokenizer, tiny_model

LLAMA_31_8B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=131072,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
SMALL_SHAPE = dict(
    hidden_size=128,
    intermediate_size=448,
    num_hidden_layers=8,
    num_attention_heads=4,
    num_key_value_heads=1,
    vocab_size=4096,
    max_position_embeddings=4096,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
"""Llama-3.1-8B's shape divided by 32 in width (same depth ratio of heads to kv heads, MLP ratio 3.5)."""

TEXT = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? She sold 48 / 2 = 24 clips in May, "
    "so 48 + 24 = 72 clips in all. The final answer is 72. "
)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device) -> float:
    """Peak GPU memory (GB) since the last reset; on the CPU the process's peak resident set (GB)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def big_model(device: str, dtype=torch.bfloat16, shape: dict | None = None, seed: int = 1234):
    """The random-init Llama-3.1-8B-shaped model (or `shape`), built on `device`, with a character
    tokenizer (no Hub); its revision hashes config + seed."""
    from nnsight import TransformersModel
    from transformers import LlamaConfig

    config = LlamaConfig(**(shape or LLAMA_31_8B), bos_token_id=1, eos_token_id=2, pad_token_id=0)
    hf = init_weights(config, seed, dtype, device)
    tok = char_tokenizer()
    nn = TransformersModel(hf, task="text-generation", tokenizer=tok)
    name = (
        "random-init Llama-3.1-8B shape"
        if shape is None or shape == LLAMA_31_8B
        else "random-init Llama-3.1-8B shape / 32"
    )
    return Model(
        spec=name,
        nn=nn,
        tokenizer=nn.tokenizer,
        adapter=adapter_for(config),
        revision=control_revision(config, seed, dtype, device),
    )


def prompts(n: int, n_tokens: int, seed: int = 0) -> list[str]:
    """`n` distinct prompts of about `n_tokens` characters (= tokens of the character tokenizer)."""
    long = TEXT * (n_tokens // len(TEXT) + 2)
    return [long[(7 * i + seed) % len(TEXT) :][: n_tokens - 1] for i in range(n)]


def sizes(profile: str) -> dict[str, dict]:
    """{chapter: {parameter: value}}: the notebook defaults with the profile's values (pretrained kind)."""

    values = profile_values(profile, "pretrained")
    out = {}
    for chapter in ("contributions", "skipping", "logit_lens", "complexity", "linear_maps"):
        d = {k: v for k, v in chapter_defaults(chapter).items() if isinstance(v, (int, float, list, bool, type(None)))}
        for k, v in values.items():
            scope, _, name = k.rpartition(".")
            if (scope in ("", chapter)) and name in d:
                d[name] = v
        out[chapter] = d
    return out


def chapter_items(model, size: dict[str, dict], n_tokens: int) -> dict[str, list]:
    """Per chapter, its measurement calls (closures), in the notebook's order, at `size`."""

    def models(n_controls):
        cs = controls_of(model, range(n_controls))
        return [lambda: model] + [lambda i=i: cs[i] for i in range(len(cs))]

    items: dict[str, list] = {}
    sc, ss, sl, sx, sm = (size[c] for c in ("contributions", "skipping", "logit_lens", "complexity", "linear_maps"))
    items["contributions"] = [
        lambda g=g, p=p: contributions(g(), [p])
        for g in models(sc["n_controls"])
        for p in prompts(sc["n_examples"], n_tokens)
    ]
    cur, fut, det = (
        prompts(ss["n_examples"], n_tokens),
        prompts(ss["n_examples_future"], n_tokens, 1),
        prompts(ss["detail_examples"], n_tokens, 2),
    )
    ms = models(ss["n_controls"])
    items["skipping"] = (
        [lambda g=g, p=p: skip_effects(g(), [p]) for g in ms for p in cur]
        + [lambda g=g, p=p: skip_effects(g(), [p], mode="future", n_splits=ss["n_splits"]) for g in ms for p in fut]
        + [
            lambda g=g, p=p, part=part: skip_effects(g(), [p], part=part)
            for g in ms[:2]
            for part in ("attention", "mlp")
            for p in cur
        ]
        + [
            lambda g=g, p=p, mode=mode: local_effects(g(), [p], mode=mode)
            for g in ms[:2]
            for mode in ("current", "future")
            for p in det
        ]
    )
    items["logit_lens"] = [
        lambda g=g, p=p: logit_lens(g(), [p])
        for g in models(sl["n_controls"])
        for p in prompts(sl["n_examples"], n_tokens)
    ]

    levels = 5
    exs = [
        Example(p[: n_tokens // 2], p[n_tokens // 2 :][:40], 1 + i % levels, {})
        for i, p in enumerate(prompts(sx["n_per_level"] * levels, n_tokens))
    ]
    ref = prompts(sx["n_reference"], n_tokens, 3)
    mc = models(sx["n_controls"])
    items["complexity"] = (
        [lambda g=g, e=e: depth_score(g(), {e.level: [e]}, n_splits=sx["n_splits"], n_boot=10) for g in mc for e in exs]
        + [
            lambda g=g, e=e: residual_erasure(g(), e.prompt, e.answer, reference_prompts=ref)
            for g in mc[:2]
            for e in exs[:levels]
        ]
        + [
            lambda e=e: integrated_gradients(
                model, e.prompt, e.answer, steps=sx["ig_steps"], batch_size=min(32, sx["ig_steps"])
            )
            for e in exs[:2]
        ]
    )
    texts = prompts(1, sm["window"] * sm["n_windows"] + 1)
    items["linear_maps"] = [
        lambda: linear_maps(
            model, model, texts, window=sm["window"], n_windows=sm["n_windows"], progress=False, device=model.device
        )
    ]
    return items


def run_chapters(model, size: dict[str, dict], n_tokens: int, budget_s: float, log=print) -> list[dict]:
    """Each chapter's items until `budget_s` is spent: measured time, projected time for all items, peak memory."""

    rows = []
    device = model.device
    for chapter, todo in chapter_items(model, size, n_tokens).items():
        controls.release()
        _sync(device)
        _peak_reset(device)
        t0 = time.perf_counter()
        done, error = 0, ""
        for item in todo:
            try:
                item()
            except Exception as err:  # a check reports, it does not stop
                error = f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"
                break
            done += 1
            _sync(device)
            if time.perf_counter() - t0 > budget_s:
                break
        _sync(device)
        took = time.perf_counter() - t0
        row = {
            "chapter": chapter,
            "items": len(todo),
            "done": done,
            "seconds": round(took, 2),
            "projected_seconds": round(took / max(done, 1) * len(todo), 1),
            "peak_gb": round(_peak(device), 2),
        }
        if error:
            row["error"] = error
        rows.append(row)
        log(
            f"[gpu-check] {chapter}: {done}/{len(todo)} items in {took:.1f} s (all: ~{row['projected_seconds']:.0f} s), "
            f"peak {'GPU' if device.type == 'cuda' else 'host RSS'} {row['peak_gb']:.2f} GB"
            + (f"; {error}" if error else "")
        )
    controls.release()
    return rows


def family_checks(device: str, log=print) -> list[dict]:
    """`check_model` of every hand-written family in bf16 and fp32 on `device`."""

    rows = []
    tok = char_tokenizer()
    for family in [a.family for a in ADAPTERS]:
        for dtype in (torch.bfloat16, torch.float32):
            t0 = time.perf_counter()
            hf = tiny_model(family, vocab_size=len(tok)).to(device=device, dtype=dtype)
            checks = check_model(f"tiny:{family}", model=wrap_module(hf, char_tokenizer(), spec=f"tiny:{family}"))
            failed = [f"{w}: {line}" for w, ok, line in checks if ok is False]
            identity = next((line for w, ok, line in checks if w == "identity"), "")
            rows.append(
                {
                    "family": family,
                    "dtype": str(dtype).replace("torch.", ""),
                    "ok": not failed,
                    "failed": failed,
                    "identity": identity,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            log(
                f"[gpu-check] check {family:9s} {rows[-1]['dtype']:8s} {'ok  ' if not failed else 'FAIL'} {identity[:90]}"
                + (f" {failed}" if failed else "")
            )
    return rows


def dtype_agreement(device: str, big=None, log=print) -> list[dict]:
    """bf16 vs float32 (same weights) of every measurement, with the bf16 noise floor, per hand-written
    family (tiny) and for `big` when given."""

    tok = char_tokenizer()
    ps = prompts(2, 64)
    q, a = "Q: 12 + 7 = ? A:", " 19"
    rows = []
    subjects = [
        (
            f.family,
            lambda f=f: wrap_module(
                tiny_model(f.family, vocab_size=len(tok)).to(device=device, dtype=torch.bfloat16),
                tok,
                spec=f"tiny:{f.family}",
            ),
        )
        for f in ADAPTERS
    ]
    if big is not None:
        subjects.append((big.spec, lambda: big))
    for name, make in subjects:
        t0 = time.perf_counter()
        got = compare_dtypes(make(), ps, q, a)
        worst = max(got, key=lambda r: r["ratio"])
        rows.append(
            {"model": name, "rows": got, "worst_ratio": worst["ratio"], "seconds": round(time.perf_counter() - t0, 2)}
        )
        log(
            f"[gpu-check] bf16 vs fp32 {name}: worst {worst['measurement']}.{worst['array']} diff {worst['max_diff']:.3g} "
            f"= {worst['ratio']:.2f} x its noise floor ({worst['unit']} {worst['floor']:.3g})"
        )
    return rows


def run(device: str = "cuda", size: str | None = None, budget_s: float | None = None, log=None) -> dict:
    """The whole check; returns a JSON-able dict. size: 'paper' (default on a GPU: the 8B shape at the
    paper profile) or 'small' (default elsewhere: the scaled-down shape at the small profile)."""

    log = log or (lambda line: print(line, flush=True))
    check_device(device)
    os.environ["EFFDEPTH_NO_CACHE"] = "1"  # everything measured afresh, nothing written to the cache
    on_gpu = torch.device(device).type == "cuda"
    size = size or ("paper" if on_gpu else "small")
    budget_s = budget_s if budget_s is not None else (55.0 if on_gpu else 15.0)
    t0 = time.perf_counter()
    out = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if on_gpu else "",
        "size": size,
        "torch": torch.__version__,
    }
    log(f"[gpu-check] {device} ({out['gpu'] or 'host CPU'}), size {size}")
    out["checks"] = family_checks(device, log)
    shape = LLAMA_31_8B if size == "paper" else SMALL_SHAPE
    n_tokens = 256 if size == "paper" else 48
    _peak_reset(device)
    big = big_model(device, torch.bfloat16, shape)
    out["model"] = {
        "shape": shape,
        "dtype": "bfloat16",
        "params_b": round(sum(p.numel() for p in big.hf.parameters()) / 1e9, 3),
        "weights_gb": round(_peak(device), 2),
    }
    fits_fp32_twin = (
        not on_gpu or torch.cuda.mem_get_info(device)[0] > 2.6 * sum(p.numel() for p in big.hf.parameters()) * 2
    )
    out["agreement"] = dtype_agreement(device, big if fits_fp32_twin else None, log)
    out["chapters"] = run_chapters(big, sizes(size), n_tokens, budget_s, log)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["ok"] = (
        all(r["ok"] for r in out["checks"])
        and all(r["worst_ratio"] <= 1 for r in out["agreement"])
        and not any("error" in r for r in out["chapters"])
    )
    log(f"[gpu-check] {'all passed' if out['ok'] else 'FAILED'} in {out['seconds']:.0f} s")
    return out
