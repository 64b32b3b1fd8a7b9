"""Run the rest of a model from a residual: the engine behind layer skipping, local effects and
residual erasure.

An intervention at residual index b leaves every block below b exactly as in the clean run, so a
variant only needs blocks b … L-1, started from its own (edited) residual. The engine runs one
clean forward of one prompt with plain PyTorch hooks, records each block's input h_b and the
arguments the model called it with (attention mask, position embeddings, …), and can then call
any block directly on a batch of variant residuals::

    run = clean_run(model, ids)          # ids: [T] token ids of one prompt; one plain forward
    run.h[b]                             # clean residual h_b, b = 0 … L: [T, d] (model dtype)
    run.layer(l, h)                      # block l on residuals h [N, T, d] -> h_{l+1} [N, T, d]
    run.layer(l, h, grad=True)           # the same, differentiable
    run.suffix(b, h)                     # blocks b … L-1 on h (= an edited h_b) -> h_L [N, T, d]
    run.staggered({b: h_b, ...})         # many start points at once, one call per block
    run.decode(h)                        # logits exactly as the model decodes its last residual
    run.output_change(h_L)               # ‖softmax(decode(h_L)) − y_clean‖₂ per row and position

`staggered` is the batched form: variants that start at different residual indices share one call
per block (at block l the batch holds every variant that started at or below l), so the full
L-variant skip matrix costs about L/2 forward passes instead of L. An `on_layer(l, h_in, h_out,
index)` callback sees each block's input and output for the rows in the batch (`index`: the
variants' positions in the concatenation of the groups, in increasing start order) and may return
a replacement output.

Example (residual erasure: replace h_b[t] by a mean vector at one position, run the rest)::

    run = clean_run(model, ids)
    h = run.h[b].expand(T, -1, -1).clone(); h[torch.arange(T), torch.arange(T)] = mean_b
    effect = run.output_change(run.suffix(b, h))        # [T (variant), T (position)]

Works for every adapter family: GPT-2's learned positions are already in h_0 (the block input),
GPT-NeoX's parallel residual lives inside its block, Gemma's per-layer masks and rotary tables are
recorded per block. The batch of the clean run must be one sequence; captured tensors whose first
dimension is that batch (masks, position ids, rotary tables) are expanded to the variants' batch.
Activations stay in the model's dtype; logits are decoded in float32 (`decode`) and effects are
computed in float32.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.func import functional_call

OnLayer = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def _expand(obj, n: int):
    """Expand every tensor whose leading (batch) dimension is 1 to `n` rows (a view, no copy)."""
    if isinstance(obj, torch.Tensor):
        if obj.ndim >= 2 and obj.shape[0] == 1 and n != 1:
            return obj.expand(n, *obj.shape[1:])
        return obj
    if isinstance(obj, tuple):
        return tuple(_expand(o, n) for o in obj)
    if isinstance(obj, list):
        return [_expand(o, n) for o in obj]
    if isinstance(obj, dict):
        return {k: _expand(v, n) for k, v in obj.items()}
    return obj


def softcap(model) -> float | None:
    """The final logit soft-capping of the model (Gemma 2/3), or None."""
    config = model.hf.config
    cap = getattr(config, "final_logit_softcapping", None)
    if cap is None and getattr(config, "text_config", None) is not None:
        cap = getattr(config.text_config, "final_logit_softcapping", None)
    return float(cap) if cap else None


CPU_LOGITS_BUDGET = 1 << 23
"""Float32 logits that may exist at once on a CPU (32 MB): a few positions of all layers of a
49k-vocabulary 30-layer model per matmul in the lens."""
GPU_LOGITS_FRACTION = 1 / 16
"""On a GPU the budget is this fraction of the device's free memory, in float32 logits (the lens holds
about three tensors of that size at once: the logits, their exponentials and a temporary)."""
GPU_LOGITS_MAX = 1 << 30


def logits_budget(model) -> int:
    """About how many float32 logits a measurement may hold at once on `model`'s device: 32 MB worth on
    a CPU (or a remote model), 1/16 of the free GPU memory on a GPU (at least the CPU budget, at most
    2^30 logits). With a 128k vocabulary a GPU with 60 GB free decodes ~7 000 rows per matmul instead
    of 65 (one position of all layers per chunk under the CPU budget)."""
    device = torch.device("cpu") if getattr(model, "remote", False) else model.device
    if device.type != "cuda":
        return CPU_LOGITS_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(GPU_LOGITS_MAX, max(CPU_LOGITS_BUDGET, free * GPU_LOGITS_FRACTION // 4)))


_FP32: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # hf module -> (stamp, norm params, unembed params)


def _fp32_params(module: torch.nn.Module) -> dict:
    """A module's parameters and floating buffers as float32 (the tensors themselves when already float32)."""
    out = {}
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        out[name] = t.detach().float() if t.is_floating_point() else t
    return out


def _decoder_fp32(model):
    """(final norm, unembedding, their float32 parameters), kept per model (one float32 copy of W_out for a
    bf16 model, none for a float32 one) and rebuilt if a weight changed in place (`Tensor._version`)."""
    a = model.adapter
    norm, unembed = a.module(model.hf, a.final_norm), a.module(model.hf, a.unembed)
    tensors = list(norm.parameters()) + list(unembed.parameters())
    stamp = tuple((id(t), t._version, t.dtype, t.device) for t in tensors)
    hit = _FP32.get(model.hf)
    if hit is None or hit[0] != stamp:
        hit = (stamp, _fp32_params(norm), _fp32_params(unembed))
        _FP32[model.hf] = hit
    return norm, unembed, hit[1], hit[2]


def decode(model, h: torch.Tensor) -> torch.Tensor:
    """Logits of residuals `h` [..., d] in float32, decoded as the model decodes its last residual:
    final norm, unembedding, then the final logit soft-capping where the model has one (Gemma).

    The final norm and the unembedding run in float32 whatever the model's dtype (CONTRIBUTING: float32
    arithmetic on activations): the residual is cast to float32 and the two modules are called with
    float32 copies of their parameters (`torch.func.functional_call`), so a bf16 model's probabilities
    are not rounded to bf16's 8 bits. For a float32 model this is exactly the model's own decode.
    Differentiable with respect to `h` (integrated gradients)."""

    norm, unembed, p_norm, p_unembed = _decoder_fp32(model)
    x = h.float()
    logits = functional_call(unembed, p_unembed, (functional_call(norm, p_norm, (x,)),)).float()
    cap = softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


@dataclass
class CleanRun:
    """One prompt's clean forward, recorded so any suffix of the model can be re-run from it."""

    model: object
    ids: torch.Tensor  # [T]
    h: list[torch.Tensor]  # h_0 … h_L, each [T, d] in the model's dtype
    calls: list[tuple[tuple, dict, bool]] = field(repr=False)  # per block: (extra args, kwargs, hidden as kwarg)

    @property
    def n_layers(self) -> int:
        return len(self.calls)

    @property
    def T(self) -> int:
        return int(self.ids.shape[-1])

    def _block(self, l: int):
        return self.model.adapter.layer_modules(self.model.hf)[l]

    def layer(self, l: int, h: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """h_{l+1} = h_l + Δ_l: block l run on residuals h [N, T, d] (or [T, d]) taken as its input
        h_l, with the clean run's other arguments (attention mask, positions, …); returns the
        block's output residual in the same shape. No autograd graph unless grad=True (integrated
        gradients differentiates through the blocks)."""
        with torch.set_grad_enabled(grad):
            squeeze = h.ndim == 2
            if squeeze:
                h = h[None]
            args, kwargs, as_kwarg = self.calls[l]
            n = h.shape[0]
            args, kwargs = _expand(args, n), _expand(kwargs, n)
            block = self._block(l)
            out = block(*args, hidden_states=h, **kwargs) if as_kwarg else block(h, *args, **kwargs)
            out = _first(out)
            return out[0] if squeeze else out

    @torch.no_grad()
    def suffix(
        self, start: int, h: torch.Tensor, stop: int | None = None, on_layer: OnLayer | None = None
    ) -> torch.Tensor:
        """Blocks start … stop-1 (default: to the end) on h, a batch of edited h_start; returns h_stop."""
        return self.staggered({start: h}, stop=stop, on_layer=on_layer)[start]

    @torch.no_grad()
    def staggered(
        self,
        starts: dict[int, torch.Tensor],
        stop: int | None = None,
        on_layer: OnLayer | None = None,
        max_batch: int | None = None,
    ) -> dict[int, torch.Tensor]:
        """Run groups of variants that start at different residual indices, one block call per layer.

        starts: {b: h} with h [n_b, T, d] the variants' residual at index b (they skip blocks < b).
        Returns {b: h_stop [n_b, T, d]}. A group with b >= stop is returned unchanged.
        on_layer(l, h_in, h_out, index) is called after each block call (index: LongTensor [N] of the
        rows' positions in the concatenation of the groups in increasing b); a tensor it returns
        replaces h_out. max_batch bounds the rows of one block call (groups are then run in chunks).
        """
        stop = self.n_layers if stop is None else stop
        order = sorted(starts)
        sizes = [starts[b].shape[0] for b in order]
        offsets = dict(zip(order, torch.tensor([0] + sizes).cumsum(0).tolist()))
        # pieces: (start, first row in group, tensor); chunks of pieces sharing block calls
        pieces = []
        for b in order:
            h = starts[b] if starts[b].ndim == 3 else starts[b][None]
            step = max_batch or h.shape[0] or 1
            for i in range(0, h.shape[0], step):
                pieces.append((b, i, h[i : i + step]))
        chunks, cur, rows = [], [], 0
        for piece in pieces:
            if cur and max_batch and rows + piece[2].shape[0] > max_batch:
                chunks.append(cur)
                cur, rows = [], 0
            cur.append(piece)
            rows += piece[2].shape[0]
        if cur:
            chunks.append(cur)

        results: dict[int, list[torch.Tensor]] = {b: [] for b in order}
        for chunk in chunks:
            out = self._run_chunk(chunk, offsets, stop, on_layer)
            for (b, _, _), h in zip(chunk, out):
                results[b].append(h)
        return {b: torch.cat(results[b]) if results[b] else starts[b] for b in order}

    def _run_chunk(self, chunk, offsets, stop, on_layer):
        """Staggered run of one chunk of pieces; returns each piece's final residual."""
        first = min(b for b, _, _ in chunk)
        done: dict[int, torch.Tensor] = {}
        h = None  # active rows [N, T, d]
        members: list[int] = []  # piece indices of the active rows, in row order
        index = torch.empty(0, dtype=torch.long)
        for l in range(first, stop):
            new = [k for k, (b, _, _) in enumerate(chunk) if b == l]
            if new:
                add = [chunk[k][2] for k in new]
                h = torch.cat(([h] if h is not None else []) + add)
                members += new
                index = torch.cat(
                    [index]
                    + [
                        torch.arange(chunk[k][1], chunk[k][1] + chunk[k][2].shape[0]) + offsets[chunk[k][0]]
                        for k in new
                    ]
                )
            if h is None:
                continue
            out = self.layer(l, h)
            if on_layer is not None:
                replaced = on_layer(l, h, out, index)
                if replaced is not None:
                    out = replaced
            h = out
        row = 0
        for k in members:
            n = chunk[k][2].shape[0]
            done[k] = h[row : row + n]
            row += n
        return [done.get(k, chunk[k][2]) for k in range(len(chunk))]

    @torch.no_grad()
    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of residuals h [..., d] (see `decode`)."""
        return decode(self.model, h)

    @torch.no_grad()
    def output_change(self, h_final: torch.Tensor, max_elems: int | None = None) -> torch.Tensor:
        """‖y − ȳ‖₂ per variant row and position [N, T] (float32): y the clean output distribution,
        ȳ = softmax(decode(h_final)). Streamed over rows and positions so no more than about
        `max_elems` logits exist at once, whatever the vocabulary (default: `logits_budget`)."""
        max_elems = max_elems or logits_budget(self.model)
        if h_final.ndim == 2:
            h_final = h_final[None]
        N, T, _ = h_final.shape
        V = self.model.vocab_size
        out = torch.empty(N, T, dtype=torch.float32)
        pos_step = max(1, min(T, max_elems // V))
        row_step = max(1, max_elems // (V * pos_step))
        for t0 in range(0, T, pos_step):
            t1 = min(T, t0 + pos_step)
            y = torch.softmax(self.decode(self.h[-1][t0:t1]).float(), -1)  # [t, V]
            for r0 in range(0, N, row_step):
                y_bar = torch.softmax(self.decode(h_final[r0 : r0 + row_step, t0:t1]).float(), -1)
                out[r0 : r0 + row_step, t0:t1] = (y_bar - y).norm(dim=-1).cpu()
        return out


@contextmanager
def _hooks(handles):
    try:
        yield
    finally:
        for hd in handles:
            hd.remove()


@torch.no_grad()
def clean_run(model, ids: torch.Tensor) -> CleanRun:
    """One plain forward of one prompt (ids [T] or [1, T]) that records h_0 … h_L and every block's
    call arguments. The model's own logits are not kept (only the last position is computed);
    use `CleanRun.decode(run.h[-1])`."""
    ids = ids.reshape(1, -1).to(model.device)
    blocks = model.adapter.layer_modules(model.hf)
    h: list[torch.Tensor] = []
    calls: list[tuple] = []

    def pre(module, args, kwargs):
        kwargs = dict(kwargs)
        if args:
            hidden, extra, as_kwarg = args[0], tuple(args[1:]), False
        else:
            hidden, extra, as_kwarg = kwargs.pop("hidden_states"), (), True
        calls.append((extra, kwargs, as_kwarg))
        h.append(hidden[0])

    last = {}
    handles = [b.register_forward_pre_hook(pre, with_kwargs=True) for b in blocks]
    handles.append(blocks[-1].register_forward_hook(lambda m, i, o: last.update(h=_first(o)[0])))
    with _hooks(handles):
        try:
            model.hf(input_ids=ids, use_cache=False, logits_to_keep=1)
        except TypeError:  # a model without logits_to_keep
            model.hf(input_ids=ids, use_cache=False)
    if len(calls) != len(blocks):
        raise RuntimeError(
            f"recorded {len(calls)} block calls for {len(blocks)} blocks: the model calls its blocks in an unexpected way"
        )
    h.append(last["h"])
    return CleanRun(model=model, ids=ids[0].cpu(), h=h, calls=calls)
