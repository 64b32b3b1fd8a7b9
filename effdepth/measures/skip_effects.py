"""§3.2 layer skipping (methods page §2) and local (direct) effects (methods page §2 (local effects)).

Skip layer s: its output is set to its input (h̄_{s+1} := h̄_s) at the intervened positions, the rest
of the model runs on. The effect on a later layer l is r[s, l] = ‖Δ̄_l − Δ_l‖ / ‖Δ_l‖ per position
(Δ_l = h_{l+1} − h_l, clean; Δ̄_l intervened), the effect on the output o[s] = ‖ȳ − y‖₂ of the
probability vectors. Settings:

- current: intervene at 1 … T-1, measure at every position: r[s, s] = 1 and r[s, l<s] = 0;
- future: for split points t, intervene at [1, t) and measure at [t, T): does layer s matter for
  tokens that come later? Here r[s, s] = 0.

Aggregation: max over the measured positions, then over split points, then over prompts (a late
layer may matter only rarely); means and per-example matrices are kept too.

Local effects remove only the direct path of layer s: each later block i > s reads its clean input
minus the clean Δ_s at the intervened positions, and nothing propagates further; a bright entry
(s, i) means block i reads what block s wrote.

Two implementations give the same numbers:
- `method="fast"` (local models): the `engine` runs only the blocks an intervention can change;
  the variants that skip different layers share block calls (about L/2 forward passes per split
  point instead of L);
- `method="trace"`: the plain batched nnsight form, one trace per batch of variants with the clean
  run as row 0 and every reduction done inside the trace, so it also runs on NDIF
  (`remote=True`, or `remote="local"` in tests).
"""

from __future__ import annotations

import warnings
import zlib
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from effdepth.access.model import choose_method
from effdepth.engine import clean_run
from effdepth.results import Result, measure

EPS = 1e-6
CLIP = 1.0  # relative changes are clipped to [0, CLIP] per position, as the paper's colour scale
MODES = ("current", "future")
PARTS = ("layer", "attention", "mlp")


class SkipEffects(Result):
    """Skip-test result (methods page §2).

    layer_effect [L, L]: rows = skipped layer s, columns = affected layer l, max-aggregated;
    mean_layer_effect [L, L]; output_effect [L] and mean_output_effect [L];
    example_layer_effect [P, L, L], example_output_effect [P, L] (max over positions and splits);
    example_mean_layer_effect [P, L, L], example_mean_output_effect [P, L] (mean over positions and
    splits). Every layer effect is a relative change clipped to [0, 1] per position (`CLIP`).
    split_points [P, n_splits] (-1 = none; current setting: 0); n_tokens [P].
    With positions=True also position_layer_effect [P, L, L, T_max] and position_output_effect
    [P, L, T_max] (NaN where not measured or past the prompt's end) and token_ids [P, T_max] (-1 pad).
    """

    measurement = "skip_effects"

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per (skipped, target): target 'layer' with its index, or 'output'."""
        L = self.layer_effect.shape[0]
        s, l = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        layers = pd.DataFrame(
            {
                "skipped": s.ravel(),
                "target": "layer",
                "layer": pd.array(l.ravel(), dtype="Int64"),
                "effect": self.layer_effect.ravel(),
                "mean_effect": self.mean_layer_effect.ravel(),
            }
        )
        out = pd.DataFrame(
            {
                "skipped": np.arange(L),
                "target": "output",
                "layer": pd.array([pd.NA] * L, dtype="Int64"),
                "effect": self.output_effect,
                "mean_effect": self.mean_output_effect,
            }
        )
        return pd.concat([layers, out], ignore_index=True)


class LocalEffects(SkipEffects):
    """Local (direct-path) effects (methods page §2 (local effects)); same arrays as `SkipEffects`."""

    measurement = "local_effects"


# -- positions ---------------------------------------------------------------------------------


def split_points(
    n_tokens: int, n_splits: int = 4, seed: int = 0, key: str = "", step: int = 8, margin: int = 4
) -> list[int]:
    """methods page §2 split points of one prompt: multiples of `step` with step ≤ t < T - margin, shuffled
    with a generator seeded by (seed, key) and the first `n_splits` kept (returned sorted)."""
    candidates = list(range(step, n_tokens - margin, step))
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
    return sorted(int(t) for t in rng.permutation(candidates)[:n_splits]) if candidates else []


def position_masks(T: int, mode: str, splits: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(intervened [J, T], measured [J, T]) boolean masks, one row per split point (current: J = 1).
    Position 0 is never intervened."""
    if mode == "current":
        inter = torch.ones(1, T, dtype=torch.bool)
        inter[:, 0] = False
        return inter, torch.ones(1, T, dtype=torch.bool)
    inter = torch.zeros(len(splits), T, dtype=torch.bool)
    meas = torch.zeros(len(splits), T, dtype=torch.bool)
    for j, t in enumerate(splits):
        inter[j, 1:t] = True
        meas[j, t:] = True
    return inter, meas


# -- per-variant bookkeeping -------------------------------------------------------------------


class _Collector:
    """Reduces per-position effects of V = L × J variants (variant k = s·J + j) as they arrive."""

    def __init__(self, L: int, meas: torch.Tensor, positions: bool):
        self.L, self.J, self.T = L, meas.shape[0], meas.shape[1]
        V = L * self.J
        self.meas = meas.repeat(L, 1).float()  # [V, T]
        self.count = self.meas.sum(-1).clamp_min(1)
        self.max = torch.zeros(V, L)
        self.mean = torch.zeros(V, L)
        self.out_max = torch.zeros(V)
        self.out_mean = torch.zeros(V)
        unmeasured = torch.where(self.meas.bool(), 0.0, torch.nan)  # [V, T]; layers below s stay 0
        self.pos = unmeasured[:, None, :].repeat(1, L, 1) if positions else None
        self.out_pos = torch.full((V, self.T), float("nan")) if positions else None

    def layer(self, l: int, r: torch.Tensor, index: torch.Tensor) -> None:
        """r [N, T] effects on layer l of the variants `index` [N], clipped to [0, 1] (the paper's colour
        scale: a relative change above 1 only says that ‖Δ_l‖ was tiny at that position, and one such
        position would otherwise drive every mean and halves score)."""
        m = self.meas[index]
        r = r.float().cpu().clamp(0.0, CLIP) * m
        self.max[index, l] = r.amax(-1)
        self.mean[index, l] = r.sum(-1) / self.count[index]
        if self.pos is not None:
            self.pos[index, l] = torch.where(m.bool(), r, torch.nan)

    def output(self, o: torch.Tensor) -> None:
        m = self.meas
        o = o.float().cpu() * m
        self.out_max, self.out_mean = o.amax(-1), o.sum(-1) / self.count
        if self.out_pos is not None:
            self.out_pos = torch.where(m.bool(), o, torch.nan)

    def arrays(self) -> dict:
        L, J = self.L, self.J
        out = {
            "max_layer": self.max.view(L, J, L).amax(1).double().numpy(),
            "mean_layer": self.mean.view(L, J, L).mean(1).double().numpy(),
            "max_output": self.out_max.view(L, J).amax(1).double().numpy(),
            "mean_output": self.out_mean.view(L, J).mean(1).double().numpy(),
        }
        if self.pos is not None:
            out["pos_layer"] = _nanmax(self.pos.view(L, J, L, self.T), 1).numpy()
            out["pos_output"] = _nanmax(self.out_pos.view(L, J, self.T), 1).numpy()
        return out


def _nanmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    filled = torch.where(torch.isnan(x), torch.tensor(-torch.inf), x).amax(dim)
    return torch.where(torch.isinf(filled), torch.nan, filled)


def _ratio(d_bar: torch.Tensor, d: torch.Tensor, d_norm: torch.Tensor) -> torch.Tensor:
    """‖Δ̄ − Δ‖ / max(‖Δ‖, eps) per position, float32."""
    return (d_bar.float() - d.float()).norm(dim=-1) / d_norm


# -- fast path (engine) ------------------------------------------------------------------------


@contextmanager
def _zeroed_sublayer(model, layer: int, part: str, keep: torch.Tensor):
    """Multiply the output of block `layer`'s attention (a_l) or MLP (m_l) write by keep [N, T, 1]."""
    a = model.adapter
    block = a.layer_modules(model.hf)[layer]
    sub = a.module(block, a.attn if part == "attention" else a.mlp)
    tuple_out = part == "attention" and a.attn_is_tuple

    def hook(module, inputs, output):
        if tuple_out:
            return (output[0] * keep.to(output[0].dtype),) + tuple(output[1:])
        return output * keep.to(output.dtype)

    handle = sub.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _fast_skip(model, ids, inter, meas, part, positions, batch_size) -> dict:
    run = clean_run(model, ids)
    L, J, dev = run.n_layers, inter.shape[0], model.device
    col = _Collector(L, meas, positions)
    delta = lambda l: run.h[l + 1].float() - run.h[l].float()  # noqa: E731  (clean Δ_l, made when needed)
    d_norm = [delta(l).norm(dim=-1).clamp_min(EPS) for l in range(L)]
    inter_d = inter.to(dev)[:, :, None]  # [J, T, 1]
    starts = {}
    for s in range(L):
        if part == "layer":
            h_bar = torch.where(inter_d, run.h[s], run.h[s + 1])  # [J, T, d]
        else:
            with _zeroed_sublayer(model, s, part, (~inter_d)):
                h_bar = run.layer(s, run.h[s].expand(J, -1, -1))
        col.layer(s, _ratio(h_bar.float() - run.h[s].float(), delta(s), d_norm[s]), torch.arange(s * J, (s + 1) * J))
        starts[s + 1] = h_bar

    def on_layer(l, h_in, h_out, index):
        col.layer(l, _ratio(h_out.float() - h_in.float(), delta(l), d_norm[l]), index)

    finals = run.staggered(starts, on_layer=on_layer, max_batch=batch_size or 64)
    col.output(run.output_change(torch.cat([finals[s + 1] for s in range(L)])))
    return col.arrays()


def _fast_local(model, ids, inter, meas, positions, batch_size) -> dict:
    run = clean_run(model, ids)
    L, J, dev = run.n_layers, inter.shape[0], model.device
    col = _Collector(L, meas, positions)
    inter_d = inter.to(dev)[:, :, None].to(run.h[0].dtype)  # [J, T, 1]
    delta = lambda l: run.h[l + 1] - run.h[l]  # noqa: E731  (clean Δ_l in the model's dtype, made when needed)
    d_norm = [delta(l).float().norm(dim=-1).clamp_min(EPS) for l in range(L)]

    def removed(k0, k1):  # what variants k0 … k1-1 (k = s·J + j) remove from every later residual
        return torch.stack([inter_d[k % J] * delta(k // J) for k in range(k0, k1)])

    for s in range(L):  # the skipped layer itself: Δ̄_s = 0 at the intervened positions
        d = delta(s).float()
        col.layer(s, _ratio(d * (1 - inter_d.float()), d, d_norm[s]), torch.arange(s * J, (s + 1) * J))
    step = batch_size or 64
    for i in range(1, L):  # block i, for every variant that skipped a layer s < i
        for k0 in range(0, i * J, step):
            k1 = min(i * J, k0 + step)
            h_in = run.h[i] - removed(k0, k1)
            h_out = run.layer(i, h_in)
            col.layer(i, _ratio(h_out.float() - h_in.float(), delta(i).float(), d_norm[i]), torch.arange(k0, k1))
    col.output(
        torch.cat([run.output_change(run.h[L] - removed(k0, min(L * J, k0 + step))) for k0 in range(0, L * J, step)])
    )
    return col.arrays()


# -- nnsight path (local or NDIF) --------------------------------------------------------------


def _trace_variants(model, ids, inter, meas, part, positions, batch_size, local: bool) -> dict:
    """One nnsight trace per batch of variants; row 0 of every batch is the clean run. Envoys are
    resolved before each trace; its body holds only envoys, tensors and builtins (NDIF-safe)."""
    adapter = model.adapter
    L, J, T = model.n_layers, inter.shape[0], inter.shape[1]
    dev = model.input_device
    col = _Collector(L, meas, positions)
    V = L * J
    step = batch_size or 8
    blocks = list(adapter.layer_modules(model.nn))
    subs = (
        [adapter.module(b, adapter.attn if part == "attention" else adapter.mlp) for b in blocks]
        if part in ("attention", "mlp")
        else [None] * L
    )
    tuple_out = part == "attention" and adapter.attn_is_tuple
    norm, nn = adapter.module(model.nn, adapter.final_norm), model.nn
    eps = EPS
    outputs = []
    for v0 in range(0, V, step):
        index = torch.arange(v0, min(V, v0 + step))
        R = len(index) + 1
        skipped = torch.cat([torch.tensor([-1]), index // J])  # row -> skipped layer (-1: clean)
        rows_inter = torch.cat([torch.zeros(1, T, dtype=torch.bool), inter[index % J]])  # [R, T]
        # per layer l, the rows skipping l at their intervened positions (absent: no such row)
        masks = {}
        for l in range(L):
            sel = (skipped == l)[:, None] & rows_inter
            if sel.any():
                masks[l] = sel[:, :, None].to(dev)
        sub = {s: m.float() for s, m in masks.items()}  # local: rows that remove row 0's clean Δ_s
        batch = ids.reshape(1, -1).repeat(R, 1).to(dev)
        # nnsight reads a trace body's source: each statement stays on one line
        # fmt: off
        with torch.no_grad(), model.trace(batch):
            rs = []
            deltas = []
            for l in range(L):
                block, sl = blocks[l], subs[l]
                inp = block.input
                if local and l > 0:  # every tensor moved to this block's device (a sharded model spans several)
                    removal = sum(sub[s].to(inp.device) * deltas[s].to(inp.device) for s in range(l) if s in sub)
                    inp = (inp[:1] - removal).to(inp.dtype).expand(R, -1, -1)
                    block.input = inp
                if sl is not None and l in masks and not local:
                    keep = (~masks[l]).float().to(inp.device)
                    if tuple_out:
                        o = sl.output
                        sl.output = (o[0] * keep.to(o[0].dtype),) + tuple(o[1:])
                    else:
                        sl.output = sl.output * keep.to(sl.output.dtype)
                out = block.output
                if (part == "layer" or local) and l in masks:
                    out = torch.where(masks[l].to(out.device), inp, out)
                    if not local:
                        block.output = out
                d = (out - inp).float()
                if local:
                    deltas.append((out - inp)[:1])
                rs.append(((d[1:] - d[:1]).norm(dim=-1) / d[:1].norm(dim=-1).clamp_min(eps)).cpu())  # one device for the stack
            if local:
                h_last = norm.input
                removal = sum(sub[s].to(h_last.device) * deltas[s].to(h_last.device) for s in range(L) if s in sub)
                norm.input = (h_last[:1] - removal).to(h_last.dtype).expand(R, -1, -1)
            p = torch.softmax(nn.output.logits.float(), -1)
            rs = torch.stack(rs).cpu().save()  # [L, R-1, T]
            o = (p[1:] - p[:1]).norm(dim=-1).cpu().save()
        # fmt: on
        for l in range(L):
            r = rs[l].clone()
            r[(index // J) > l] = 0  # a layer below the skipped one is untouched, by construction
            col.layer(l, r, index)
        outputs.append(o)
    col.output(torch.cat(outputs))
    return col.arrays()


# -- drivers -----------------------------------------------------------------------------------


def prompt_effects(
    model,
    ids: torch.Tensor,
    mode: str,
    splits: list[int],
    method: str,
    part: str = "layer",
    local: bool = False,
    positions: bool = False,
    batch_size: int | None = None,
) -> dict:
    """The skip test (local=True: the local effects) of one tokenised prompt, uncached.

    ids [T]; mode and splits as in `position_masks`; method 'fast' (local models) or 'trace'
    (nnsight, also remote); part, positions and batch_size as in `skip_effects`. Returns the arrays
    `skip_effects` aggregates over prompts, each reduced over the measured positions, then the split
    points: 'max_layer' and 'mean_layer' [L, L] (skipped s × affected l), 'max_output' and
    'mean_output' [L]; with positions=True also 'pos_layer' [L, L, T] and 'pos_output' [L, T] (max
    over split points, NaN where not measured).
    """
    inter, meas = position_masks(len(ids), mode, splits)
    if method == "fast":
        return (
            _fast_local(model, ids, inter, meas, positions, batch_size)
            if local
            else _fast_skip(model, ids, inter, meas, part, positions, batch_size)
        )
    if method == "trace":
        return _trace_variants(model, ids, inter, meas, part, positions, batch_size, local)
    raise ValueError(f"method must be 'fast' or 'trace', not '{method}'")


def _run(cls, model, prompts, mode, part, n_splits, seed, split_step, method, batch_size, positions, store, local):
    prompts = list(prompts)
    if not prompts:
        raise ValueError(f"{cls.measurement}() needs at least one prompt.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not '{mode}'")
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not '{part}'")
    method = choose_method(model, method)

    items = []
    for i, p in enumerate(prompts):
        T = len(model.encode(p, index=i))
        splits = split_points(T, n_splits, seed, key=p, step=split_step) if mode == "future" else [0]
        items.append((i, p, T, splits))
    if mode == "future":
        short = [i for i, _, _, s in items if not s]
        if len(short) == len(items):
            raise ValueError(f"No prompt is long enough for a split point (needs more than {split_step + 4} tokens).")
        if short:
            warnings.warn(
                f"{len(short)} prompt(s) too short for a split point are left out of the future setting.", stacklevel=3
            )

    L = model.n_layers

    def per_item(item):
        _, prompt, _, splits = item
        if not splits:
            return {"valid": np.array(0)}
        out = prompt_effects(
            model,
            model.encode(prompt),
            mode,
            splits,
            method,
            part=part,
            local=local,
            positions=positions,
            batch_size=batch_size,
        )
        out["valid"] = np.array(1)
        return out

    def aggregate(parts):
        P = len(parts)
        T_max = max(it[2] for it in items)
        nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
        ex_layer, ex_out = nan(P, L, L), nan(P, L)
        mean_layer, mean_out = nan(P, L, L), nan(P, L)
        for k, part_ in enumerate(parts):
            if int(part_["valid"]):
                ex_layer[k], ex_out[k] = part_["max_layer"], part_["max_output"]
                mean_layer[k], mean_out[k] = part_["mean_layer"], part_["mean_output"]
        splits = np.full((P, max(n_splits, 1)), -1)
        for k, it in enumerate(items):
            splits[k, : len(it[3])] = it[3]
        out = {
            "layer_effect": np.nanmax(ex_layer, 0),
            "mean_layer_effect": np.nanmean(mean_layer, 0),
            "output_effect": np.nanmax(ex_out, 0),
            "mean_output_effect": np.nanmean(mean_out, 0),
            "example_layer_effect": ex_layer,
            "example_output_effect": ex_out,
            "example_mean_layer_effect": mean_layer,
            "example_mean_output_effect": mean_out,
            "split_points": splits,
            "n_tokens": np.array([it[2] for it in items]),
        }
        if positions:
            pos_layer, pos_out = nan(P, L, L, T_max), nan(P, L, T_max)
            tokens = np.full((P, T_max), -1)
            for k, (part_, it) in enumerate(zip(parts, items)):
                tokens[k, : it[2]] = model.encode(it[1]).numpy()
                if int(part_["valid"]):
                    pos_layer[k, :, :, : it[2]] = part_["pos_layer"]
                    pos_out[k, :, : it[2]] = part_["pos_output"]
            out.update(position_layer_effect=pos_layer, position_output_effect=pos_out, token_ids=tokens)
        return out

    params = {
        "mode": mode,
        "n_splits": n_splits,
        "seed": seed,
        "split_step": split_step,
        "method": method,
        "positions": positions,
        "clip": CLIP,
    }
    if not local:
        params["part"] = part
    return measure(
        cls,
        model,
        items,
        params=params,
        per_item=per_item,
        aggregate=aggregate,
        store=store,
        item_id=lambda it: [it[1], it[3]],
        data_meta={"split_points": [it[3] for it in items]},
    )


def skip_effects(
    model,
    prompts: list[str],
    mode: str = "current",
    part: str = "layer",
    n_splits: int = 4,
    seed: int = 0,
    split_step: int = 8,
    method: str = "auto",
    batch_size: int | None = None,
    positions: bool = False,
    store=None,
) -> SkipEffects:
    """How much skipping layer s changes every later layer's computation and the output (methods page §2).

    mode: 'current' (intervene at 1 … T-1, measure everywhere) or 'future' (intervene before a
    split point, measure after it; `n_splits` split points per prompt, multiples of `split_step`,
    drawn with `seed`). part: 'layer' (h̄_{s+1} := h_s), 'attention' (a_s := 0) or 'mlp' (m_s := 0)
    at the intervened positions. method: 'fast' (local models), 'trace' (nnsight, also remote) or
    'auto'. batch_size: rows per block call (fast) or variants per trace (trace). positions=True
    also keeps the per-position effects (for the interactive view).
    """
    return _run(
        SkipEffects,
        model,
        prompts,
        mode,
        part,
        n_splits,
        seed,
        split_step,
        method,
        batch_size,
        positions,
        store,
        local=False,
    )


def local_effects(
    model,
    prompts: list[str],
    mode: str = "current",
    n_splits: int = 4,
    seed: int = 0,
    split_step: int = 8,
    method: str = "auto",
    batch_size: int | None = None,
    positions: bool = False,
    store=None,
) -> LocalEffects:
    """Direct effect of layer s on each later layer (methods page §2 (local effects)): every block i > s reads its clean
    input minus the clean Δ_s at the intervened positions; nothing propagates further. The
    diagonal is the skipped layer's own change (1 in the current setting, 0 in the future one);
    `output_effect` is the direct effect on the output (h_L − Δ_s decoded). Arguments as in
    `skip_effects`."""
    return _run(
        LocalEffects,
        model,
        prompts,
        mode,
        "layer",
        n_splits,
        seed,
        split_step,
        method,
        batch_size,
        positions,
        store,
        local=True,
    )
