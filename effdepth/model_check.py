"""`effdepth check`: can this model be measured here? Loading, the identity h_(l+1) = h_l + a_l + m_l
and logit parity on one prompt, one prompt through every measurement (fast path; the trace path too
when remote), and which data sets load here offline. The GPU check (`effdepth.gpucheck`) runs it too.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from effdepth.access.adapters import UnsupportedArchitecture, confirm, identity_error, identity_rtol
from effdepth.access.load import load_model
from effdepth.access.model import resolve_dtype
from effdepth.data import DATASETS, Example, load_examples
from effdepth.errors import ModelNotAvailable
from effdepth.measures.contributions import contributions
from effdepth.measures.depth_score import depth_score
from effdepth.measures.integrated_gradients import integrated_gradients
from effdepth.measures.linear_maps import linear_maps
from effdepth.measures.logit_lens import logit_lens
from effdepth.measures.residual_erasure import residual_erasure
from effdepth.measures.skip_effects import local_effects, skip_effects


def load_or_reason(spec: str, device: str, dtype: str, remote):
    """(the loaded Model, None), or (None, one line saying why it cannot be loaded): the expected
    refusals as they are, anything else (a degenerate config.json: zero layers, missing sizes …)
    named with its type and the spec, never a traceback."""

    try:
        return load_model(spec, device=device, dtype=dtype, remote=remote), None
    except (ModelNotAvailable, UnsupportedArchitecture, ValueError) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        return None, lines[0] + (
            " (the rest of the message: a library's traceback, left out)" if len(lines) > 1 else ""
        )
    except Exception as err:
        return None, (
            f"{spec} cannot be loaded ({type(err).__name__}: {' '.join(str(err).split()[:40])[:200]}); "
            "its config.json is probably degenerate (e.g. zero layers or heads, missing sizes): fix it, then run `effdepth check` again."
        )


CHECK_PROMPT = "Q: 12 + 7 = ? A: 19. The cat sat on the mat."


CHECK_ANSWER = (" The cat sat on the mat.", " 19")


def _measurement_checks(method: str):
    """(name, run(model) -> one-line summary) for every public measurement, on one prompt. Each run
    raises on a failure; the summary names the number that says the measurement read the model."""

    prompt, (q, answer) = CHECK_PROMPT, ("Q: 12 + 7 = ? A:", " 19")

    def finite(name, x):
        """x as floats; NaN marks cells a measurement leaves undefined (position 0, unscored positions),
        so a failure is an infinity or nothing defined at all."""
        x = np.asarray(x, dtype=float)
        if np.isinf(x).any() or np.isnan(x).all():
            raise ValueError(f"{name} is infinite somewhere or undefined everywhere")
        return x

    def contribs(m):
        r = contributions(m, [prompt], method=method)
        rel = finite("relative contribution", r.to_frame().iloc[:, 0].to_numpy())
        return f"{len(rel)} layers, first column max {rel.max():.3g}"

    def skips(m):
        out = []
        for part in ("layer", "attention", "mlp"):
            r = skip_effects(m, [prompt], part=part, method=method)
            e = finite(f"skip_effects({part})", next(iter(v for k, v in r.arrays.items() if v.ndim >= 2)))
            out.append(f"{part} {np.nanmax(e):.3g}")
        return "max effect " + ", ".join(out)

    def local(m):
        r = local_effects(m, [prompt], method=method)
        e = finite("local_effects", next(iter(v for k, v in r.arrays.items() if v.ndim >= 2)))
        return f"max effect {np.nanmax(e):.3g}"

    def lens(m):
        r = logit_lens(m, [prompt], method=method)
        for k, v in r.arrays.items():
            finite(f"logit_lens.{k}", v) if np.issubdtype(np.asarray(v).dtype, np.number) else None
        return f"{len(r.arrays)} arrays"

    def erasure(m):
        r = residual_erasure(m, q, answer, reference_prompts=[prompt], method=method)
        e = finite("erasure effect", r.effect)
        return f"effect [{e.shape[0]}, {e.shape[1]}], max {np.nanmax(e):.3g}"

    def gradients(m):
        r = integrated_gradients(m, q, answer, steps=8, batch_size=8)
        gap = float(np.asarray(r.completeness_gap).max()) if hasattr(r, "completeness_gap") else float("nan")
        finite("attribution", r.attribution)
        return f"completeness gap {gap:.3g} (8 steps)"

    def depth(m):
        exs = {1: [Example(q, answer, 1, {})], 2: [Example(prompt + " " + q, answer, 2, {})]}
        r = depth_score(m, exs, n_boot=10, method=method)
        return f"{len(r.arrays)} arrays"

    def maps(m):
        r = linear_maps(m, m, [prompt * 8], window=16, n_windows=10, progress=False)
        return f"{len(r.arrays)} arrays"

    checks = [
        ("contributions", contribs),
        ("skip_effects", skips),
        ("local_effects", local),
        ("logit_lens", lens),
        ("residual_erasure", erasure),
        ("depth_score", depth),
        ("linear_maps", maps),
    ]
    if method == "fast":
        checks.insert(5, ("integrated_gradients", gradients))
    return checks


def _trace_identity(model, ids) -> float:
    """Worst |h_l + a_l + m_l - h_(l+1)| / max(1, max |h_(l+1)|) over blocks, read in one nnsight trace
    (remote on NDIF for a remote model). Envoys are resolved before the trace; the body is plain tensor ops."""

    a = model.adapter
    blocks = list(a.layer_modules(model.nn))
    parts = [(b, a.module(b, a.attn), a.module(b, a.mlp)) for b in blocks]
    as_tuple = a.attn_is_tuple
    saved = []
    # nnsight reads a trace body's source: each statement stays on one line
    # fmt: off
    with torch.no_grad(), model.trace(ids):
        for block, attn, mlp in parts:
            out = attn.output
            saved.append([block.input.save(), (out[0] if as_tuple else out).save(), mlp.output.save(), block.output.save()])
    # fmt: on

    worst = 0.0
    for h, at, m, out in saved:
        out = out[0] if isinstance(out, tuple) else out
        worst = max(worst, identity_error(h, at, m, out))  # in the tensors' dtype and the block's order of addition
    return worst


def check_model(
    spec: str, device: str = "cpu", dtype: str = "auto", remote=False, model=None
) -> list[tuple[str, bool, str]]:
    """Every check of `effdepth check`: (what, passed, one line). Loading, the identity
    h_(l+1) = h_l + a_l + m_l on one prompt and logit parity, one prompt through every measurement
    (fast path; the trace path too when remote), and which data sets load here offline.
    `model`: an already loaded `Model` (tests)."""

    rows = []
    t0 = time.time()
    if model is None:
        model, why = load_or_reason(spec, device, dtype, remote)
        if model is None:
            return [("load", False, why)]
    rows.append(
        (
            "load",
            True,
            f"{model.adapter.family} family, {model.n_layers} layers, d={model.d_model} ({time.time() - t0:.1f} s)",
        )
    )
    if not model.remote:
        try:
            ids = model.encode(CHECK_PROMPT)[None].to(model.device)
            got = confirm(model.adapter, model.hf, ids)
            rows.append(
                (
                    "identity",
                    True,
                    f"h_(l+1) = h_l + a_l + m_l at every layer to {got['identity']:.1g} of |h|; logits decoded to {got['logits']:.1g}",
                )
            )
        except UnsupportedArchitecture as err:
            rows.append(("identity", False, str(err)))
        except Exception as err:
            rows.append(("identity", False, f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"))
    else:
        try:
            err = _trace_identity(model, model.encode(CHECK_PROMPT)[None])
            ok = err <= max(
                identity_rtol(model.dtype), identity_rtol(resolve_dtype(dtype, "cuda" if remote is True else device))
            )
            rows.append(
                (
                    "identity",
                    ok,
                    f"h_(l+1) = h_l + a_l + m_l through the trace to {err:.1g} of |h|"
                    + ("" if ok else ": the adapter's reads are not the writes"),
                )
            )
        except Exception as err:
            rows.append(("identity", False, f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"))
    identity_ok = all(ok for what, ok, _ in rows if what == "identity")
    methods = ["trace"] if model.remote else ["fast"]
    for method in methods:
        for name, run in _measurement_checks(method):
            if not identity_ok:
                rows.append((f"{name} [{method}]", False, "not run: the adapter's reads are not the residual writes"))
                continue
            try:
                rows.append((f"{name} [{method}]", True, run(model)))
            except Exception as err:  # a check reports every failure, it does not stop at the first
                rows.append((f"{name} [{method}]", False, f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"))

    for name in DATASETS:
        if name == "auto":
            continue
        try:
            n = len(load_examples(name, n=2, seed=0, model_spec=model.spec))
            rows.append((f"data {name}", True, f"available offline ({n} examples drawn)"))
        except Exception as err:
            rows.append((f"data {name}", None, f"not available: {' '.join(str(err).split())[:140]}"))
    return rows
