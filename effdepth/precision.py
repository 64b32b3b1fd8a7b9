"""What a measurement can resolve in the model's dtype: the noise floor of a null intervention.

A bf16 model stores every residual with an 8-bit mantissa, so an effect smaller than what a change of
one unit in the last place (ulp) of the residual produces cannot be told from rounding. The *null
intervention* is exactly that change: a run of the model in which every residual h_0 … h_L is moved
by one ulp of its own dtype (each entry to its upper or lower neighbour, `torch.nextafter`, with a
recorded seed) at every position but the front, which is never intervened on (methods page §2). Its effect,
measured in the units of each measurement, is the floor below which a bf16 number is not signal:

- `layer_effect`: max over layers and positions of ‖Δ'_l − Δ_l‖ / ‖Δ_l‖ (the unit of skip and local
  effects, methods page §2);
- `output_effect`: max over positions of ‖y' − y‖₂ (skip output effects, residual erasure);
- `relative_contribution`: max over layers of the change of the token-mean ‖Δ_l‖/‖h_l‖ (§3.1);
- `kl`, `topk_overlap`: max over residual indices of the change of the position-mean lens KL and
  top-5 overlap (§3.2 logit lens);
- `probability`: max over positions of the change of the probability of the token the model predicts
  (the unit of the answer probability of integrated gradients).

`noise_floor(model, prompts)` returns the maxima over the prompts. In float32 every entry is ~1e-6 or
less; in bf16 it is what `effdepth bench --device cuda` and the chapters report as "below this, bf16
rounding". The logits themselves are always decoded in float32 (`engine.decode`), so the floor is the
rounding of the residual stream, not of the softmax.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from effdepth.access.model import wrap_module
from effdepth.engine import clean_run, decode, logits_budget
from effdepth.measures.contributions import contributions
from effdepth.measures.integrated_gradients import integrated_gradients
from effdepth.measures.logit_lens import logit_lens
from effdepth.measures.residual_erasure import residual_erasure
from effdepth.measures.skip_effects import local_effects, skip_effects

KEYS = ("layer_effect", "output_effect", "relative_contribution", "kl", "topk_overlap", "probability")
EPS = 1e-6


def one_ulp(h: torch.Tensor, generator: torch.Generator, front: bool = False) -> torch.Tensor:
    """`h` with every entry moved to a random neighbour in its own dtype (one ulp up or down), except
    position 0 of a [..., T, d] tensor unless `front` (the front is never intervened on)."""
    up = torch.rand(h.shape, generator=generator, device="cpu").to(h.device) < 0.5
    target = torch.where(up, torch.full_like(h, float("inf")), torch.full_like(h, float("-inf")))
    moved = torch.nextafter(h, target)
    if not front:
        moved[..., 0, :] = h[..., 0, :]
    return moved


def _lens_stats(model, H: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Position-mean KL(p_b ‖ p_L) and top-k overlap for residuals H [L+1, T, d] (float32 logits)."""
    L1, T = H.shape[0], H.shape[1]
    V = model.vocab_size
    step = max(1, logits_budget(model) // max(1, L1 * V))
    kl, ov = torch.zeros(L1, dtype=torch.float64), torch.zeros(L1, dtype=torch.float64)
    for t0 in range(0, T, step):
        z = torch.log_softmax(decode(model, H[:, t0 : t0 + step]), -1)  # [L+1, t, V]
        kl += (z.exp() * (z - z[-1:])).sum(-1).sum(-1).double().cpu()
        top = z.topk(k, -1).indices
        ov += (top[:, :, :, None] == top[-1:, :, None, :]).any(-1).sum(-1).sum(-1).double().cpu() / k
    return kl / T, ov / T


@torch.no_grad()
def _one_prompt(model, ids: torch.Tensor, generator: torch.Generator) -> dict:
    run = clean_run(model, ids)
    L = run.n_layers
    h_null = [one_ulp(run.h[0], generator)]
    for l in range(L):
        h_null.append(one_ulp(run.layer(l, h_null[-1]), generator))
    clean = torch.stack(run.h).float()  # [L+1, T, d]
    null = torch.stack(h_null).float()
    d, d_null = clean[1:] - clean[:-1], null[1:] - null[:-1]  # [L, T, d]
    d_norm = d.norm(dim=-1).clamp_min(EPS)
    layer_effect = ((d_null - d).norm(dim=-1) / d_norm)[:, 1:]
    rel = (d_norm / clean[:-1].norm(dim=-1).clamp_min(EPS)).mean(-1)
    rel_null = (d_null.norm(dim=-1) / null[:-1].norm(dim=-1).clamp_min(EPS)).mean(-1)
    y, y_null = torch.softmax(decode(model, run.h[-1]), -1), torch.softmax(decode(model, h_null[-1]), -1)
    pred = y.argmax(-1, keepdim=True)
    kl, ov = _lens_stats(model, torch.stack(run.h))
    kl_null, ov_null = _lens_stats(model, torch.stack(h_null))
    return {
        "layer_effect": float(layer_effect.max()) if layer_effect.numel() else 0.0,
        "output_effect": float((y_null - y).norm(dim=-1).max()),
        "relative_contribution": float((rel_null - rel).abs().max()),
        "kl": float((kl_null - kl).abs().max()),
        "topk_overlap": float((ov_null - ov).abs().max()),
        "probability": float((y_null.gather(-1, pred) - y.gather(-1, pred)).abs().max()),
    }


def noise_floor(model, prompts: list[str], seed: int = 0, n_null: int = 3) -> dict:
    """The effect of a null intervention (every residual moved by one ulp of the model's dtype), per
    measurement unit (`KEYS`), the max over `prompts` and `n_null` null runs (seeds seed, seed+1, …: the
    top-k overlap is discrete, one null run can miss the one swap bf16 allows); plus 'dtype',
    'n_prompts', 'n_null' and 'seed'. See the module doc."""
    prompts = list(prompts)
    if not prompts:
        raise ValueError("noise_floor() needs at least one prompt.")
    parts = []
    for j in range(max(1, int(n_null))):
        g = torch.Generator().manual_seed(int(seed) + j)
        parts += [_one_prompt(model, model.encode(p, index=i), g) for i, p in enumerate(prompts)]
    out = {k: max(p[k] for p in parts) for k in KEYS}
    return out | {
        "dtype": str(model.dtype).replace("torch.", ""),
        "n_prompts": len(prompts),
        "n_null": int(n_null),
        "seed": int(seed),
    }


def upcast(model, dtype=torch.float32):
    """The same weights in another dtype, as a new `Model` (a bf16 model's float32 twin: every weight the
    bf16 value exactly, so bf16 vs this twin differ only by bf16 arithmetic, which the noise floor bounds)."""

    hf = copy.deepcopy(model.hf).to(dtype)
    return wrap_module(hf, model.tokenizer, spec=f"{model.spec} ({str(dtype).replace('torch.', '')} copy)")


def max_difference(a, b) -> float:
    """max |a - b| over the finite entries both have (NaN marks undefined cells: position 0 and the like)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[ok] - b[ok]).max()) if ok.any() else 0.0


# (measurement, array, unit of the noise floor it is judged against)
COMPARED = (
    ("contributions", "mean_rel_layer", "relative_contribution"),
    ("contributions", "mean_rel_attn", "relative_contribution"),
    ("contributions", "mean_rel_mlp", "relative_contribution"),
    ("skip_effects", "layer_effect", "layer_effect"),
    ("skip_effects", "output_effect", "output_effect"),
    ("skip_effects(future)", "layer_effect", "layer_effect"),
    ("skip_effects(future)", "output_effect", "output_effect"),
    ("local_effects", "layer_effect", "layer_effect"),
    ("logit_lens", "kl", "kl"),
    ("logit_lens", "topk_overlap", "topk_overlap"),
    ("residual_erasure", "effect", "output_effect"),
    ("integrated_gradients", "p_input", "probability"),
    ("integrated_gradients", "attribution", "probability"),
)


def measure_all(model, prompts: list[str], question: str, answer: str, ig_steps: int = 8) -> dict:
    """Every measurement of the book on `model` (one call each, the fast path): {name: Result}."""

    return {
        "contributions": contributions(model, prompts),
        "skip_effects": skip_effects(model, prompts),
        "skip_effects(future)": skip_effects(model, prompts, mode="future", n_splits=2),
        "local_effects": local_effects(model, prompts),
        "logit_lens": logit_lens(model, prompts),
        "residual_erasure": residual_erasure(model, question, answer, reference_prompts=prompts),
        "integrated_gradients": integrated_gradients(model, question, answer, steps=ig_steps, batch_size=ig_steps),
    }


def compare_dtypes(
    model, prompts: list[str], question: str, answer: str, reference=None, floor: dict | None = None, ig_steps: int = 8
) -> list[dict]:
    """bf16 (or any low-precision `model`) against `reference` (default: the same weights in float32,
    `upcast`): per compared array (`COMPARED`) the max |difference|, the noise floor of its unit in the
    model's dtype (`noise_floor` on `prompts`), and their ratio. A ratio near or below 1 means the two
    runs agree as well as bf16's own resolution allows."""
    reference = reference if reference is not None else upcast(model)
    floor = floor or noise_floor(model, prompts)
    low, high = (
        measure_all(model, prompts, question, answer, ig_steps),
        measure_all(reference, prompts, question, answer, ig_steps),
    )
    rows = []
    for name, array, unit in COMPARED:
        diff = max_difference(low[name].arrays[array], high[name].arrays[array])
        rows.append(
            {
                "measurement": name,
                "array": array,
                "unit": unit,
                "max_diff": diff,
                "floor": floor[unit],
                "ratio": diff / floor[unit] if floor[unit] > 0 else (0.0 if diff == 0 else float("inf")),
            }
        )
    return rows
