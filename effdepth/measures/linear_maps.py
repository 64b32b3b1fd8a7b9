"""§3.4 Does a deeper model compute something new? Shallow-to-deep linear maps (methods page §5).

For every source residual index m = 0 … L1 of a shallow model and target index n = 0 … L2 of a deep
model sharing its tokenizer, fit an affine map f_{m,n}(h^src_m) ≈ h^tgt_n on the raw residuals
(before any final norm), on the same token windows with position 0 dropped, and score it on held-out
windows by the relative error ‖h^tgt_n − f(h^src_m)‖ / ‖h^tgt_n‖, averaged over tokens.

Method (`method="lstsq"`, the default; methods page §5 **Decision**): exact ridge regression from streamed
sufficient statistics, three passes over disjoint window splits:

1. *train*: run both models once; accumulate, in float64, Σw·x, Σw·xxᵀ (per source layer), Σw·y,
   Σw·‖y‖² (per target layer) and the cross terms Σw·xyᵀ for every pair (one GEMM per batch for all
   pairs). w = 1, or w = 1/‖y‖² with `weighting="relative"` (the least-squares problem closest to
   the relative-error metric: it minimises the mean squared relative error).
2. *validation*: eigendecompose each centred source Gram C = UΛUᵀ once; then every ridge λ costs
   O(d_src²) per pair: with P = Uᵀ C_xy, z = Uᵀ(x − μx) and v = P(y − μy), the held-out squared error
   of W_λ = U (Λ + λ)⁻¹ P is Σ‖ỹ‖² − 2 Σ_i a_i/(λ_i + λ) + Σ_ik H_ik/((λ_i + λ)(λ_k + λ)) with
   a = Σ z∘v and H = (Σ z zᵀ) ∘ (P Pᵀ). λ (relative to the mean eigenvalue) is chosen per pair on
   the validation windows.
3. *test*: one more pass computes the per-token relative error (a mean of per-token ratios is not a
   function of sufficient statistics, hence the pass).

The intercept is not penalised (the maps are fitted on centred data). Activations are shifted by
the first batch's mean before accumulation, so float64 sums do not cancel on residual streams with
large mean components.

Memory (float64, bytes), for a block of B target layers handled together (`target_block`, chosen
automatically from `memory_gb`), M = L1 + 1 source indices, batch of N_b kept tokens, G = 1
(`weighting="none"`) or B (`"relative"`, whose Gram matrices depend on the target):

    peak ≈ 8·M·B·d_src·d_tgt          cross terms Σxyᵀ, later P, later the maps W (in place)
         + 24·M·G·d_src²              Gram, eigenvectors, validation Gram
         + 20·N_b·(M·d_src + B·d_tgt)  one batch of activations (float32 capture, float64 copy,
                                        and its token-major copy for the cross-term GEMM)

Qwen2.5-1.5B → Qwen2.5-14B (d 1536 → 5120, M = 29, 49 targets): the cross terms of all pairs
are 8·29·49·1536·5120 B = 89 GB (115 GB peak with batches of 8 × 512 tokens), so with
`memory_gb=40` the targets are streamed in 4 blocks of ≤ 13 layers (≈ 34 GB peak); each block
re-runs the three passes, the deep model stopping at the block's last layer.

`method="sgd"` keeps the paper's recipe for comparison (AdamW, lr 2.5e-4, weight decay 0.01,
cosine schedule, 200 warm-up steps, gradient-norm clip 0.25, MSE on raw residuals, one parameter
group and clip per source layer as in the paper's one run per source layer); steps and batch size
are parameters (`SGDRecipe`), the paper's are 10,000 steps of 64 windows of 512 tokens.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from effdepth.errors import TokenizerMismatch
from effdepth.prompts import context_limit
from effdepth.results import Result, measure
from effdepth.store import Store, default_store

EPS = 1e-6
# Ridge strengths, relative to the mean eigenvalue of the centred source Gram (0 = pseudo-inverse).
DEFAULT_LAMBDAS = (0.0,) + tuple(float(f"{x:.3g}") for x in np.logspace(-9, 1, 21))
PROBES = (
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "Q: 12 + 7 = ? A: 19\nF: a>b b>c Q: a 2 hops? A: c",
    "  Ünïcödé — tabs\tand   spaces; <|endoftext|> </s> <s> [CLS]",
)
WEIGHTINGS = ("none", "relative")


@dataclass(frozen=True)
class SGDRecipe:
    """The paper's SGD fit (App. C): AdamW, cosine schedule with linear warm-up, gradient clipping.

    `steps` and `batch_windows` are the knobs to scale it down (paper: 10,000 × 64 windows).
    `eval_at`: steps after which the held-out error is measured (for error-versus-time curves; the
    evaluation time is not counted as training time). `cache_activations`: precompute the training
    windows' residuals once instead of re-running the models every step (faster; the paper re-ran).
    `stop_after`: stop after this many steps of the same schedule (to time a variant briefly).
    """

    lr: float = 2.5e-4
    weight_decay: float = 0.01
    warmup: int = 200
    clip: float = 0.25
    steps: int = 10_000
    batch_windows: int = 64
    eval_at: tuple[int, ...] = ()
    cache_activations: bool = False
    seed: int = 0
    stop_after: int | None = None  # train only this many steps of the `steps`-long schedule (timing runs)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - self.warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup) / span)))


PAPER_SGD = SGDRecipe()


# ----------------------------------------------------------------------------------------------
# Tokenizers and windows
# ----------------------------------------------------------------------------------------------


def check_same_tokenizer(src, tgt, probes=PROBES) -> None:
    """Raise `TokenizerMismatch` unless both models tokenize identically (vocabulary and probes)."""
    a, b = src.tokenizer, tgt.tokenizer
    va, vb = a.get_vocab(), b.get_vocab()
    names = f"'{getattr(src, 'spec', 'source')}' and '{getattr(tgt, 'spec', 'target')}'"
    if va != vb:
        only_a = sorted(set(va) - set(vb))[:3]
        only_b = sorted(set(vb) - set(va))[:3]
        moved = [t for t in va if t in vb and va[t] != vb[t]][:3]
        raise TokenizerMismatch(
            f"{names} have different tokenizers ({len(va)} vs {len(vb)} tokens; only in the first: "
            f"{only_a}, only in the second: {only_b}, different ids: {moved}). A linear map between "
            f"residual streams needs both models to read the same tokens at the same positions: "
            f"pick a pair from one family, e.g. Qwen/Qwen2.5-1.5B → Qwen/Qwen2.5-14B, or the zoo pair."
        )
    for p in probes:
        ia = a(p, add_special_tokens=True).input_ids
        ib = b(p, add_special_tokens=True).input_ids
        if list(ia) != list(ib):
            raise TokenizerMismatch(
                f"{names} share a vocabulary but tokenize {p!r} differently ({list(ia)[:12]} … vs "
                f"{list(ib)[:12]} …): the residual streams would not be aligned token by token."
            )


@dataclass
class Windows:
    """Token windows: ids [W, T] (right-padded), lengths [W]; position 0 and pads are never scored."""

    ids: torch.Tensor
    lengths: torch.Tensor
    pad_id: int = 0

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def batch(self, idx):
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        lengths = self.lengths[idx]
        T = int(lengths.max())
        ids = self.ids[idx, :T]
        pos = torch.arange(T)[None]
        mask = (pos < lengths[:, None]).long()
        keep = mask.bool() & (pos >= 1)
        return ids, mask, keep

    def n_tokens(self, idx) -> int:
        """Scored tokens in windows `idx` (positions 1 … length-1)."""
        return int((self.lengths[torch.as_tensor(np.asarray(idx), dtype=torch.long)] - 1).clamp_min(0).sum())


def make_windows(tokenizer, texts, window: int, n_windows: int | None = None) -> Windows:
    """Pack tokenized texts into windows of at most `window` tokens without splitting a text that fits.

    Each text is encoded with the tokenizer's own specials (a BOS where it adds one; an EOS is
    appended when it adds none, so documents stay separated). Texts longer than a window are cut
    into window-sized pieces. Windows shorter than 2 tokens are dropped.
    """
    if window < 2:
        raise ValueError("window must be at least 2 tokens (position 0 is never scored).")
    eos = getattr(tokenizer, "eos_token_id", None)
    pieces = []
    for text in texts:
        ids = list(tokenizer(text, add_special_tokens=True).input_ids)
        bos = getattr(tokenizer, "bos_token_id", None)
        if eos is not None and not (bos is not None and ids[:1] == [bos]):
            ids = ids + [eos]
        for s in range(0, len(ids), window):
            pieces.append(ids[s : s + window])
    rows, cur = [], []
    for p in pieces:
        if cur and len(cur) + len(p) > window:
            rows.append(cur)
            cur = []
        cur = cur + p
    if cur:
        rows.append(cur)
    rows = [r for r in rows if len(r) >= 2]
    if n_windows is not None:
        rows = rows[:n_windows]
    if not rows:
        raise ValueError("No window of at least 2 tokens could be made from the texts.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return Windows(ids=ids, lengths=torch.tensor([len(r) for r in rows]), pad_id=pad)


def split_windows(n: int, split=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded disjoint train / val / test window indices (val and test get at least one window each)."""
    if n < 3:
        raise ValueError(f"Need at least 3 windows (train, validation, test); got {n}.")
    perm = np.random.default_rng(seed).permutation(n)
    tr, va, te = (float(x) for x in split)
    n_test = max(1, int(round(n * te / (tr + va + te))))
    n_val = max(1, int(round(n * va / (tr + va + te)))) if va > 0 else 0
    n_train = n - n_test - n_val
    if n_train < 1:
        raise ValueError(f"Split {split} leaves no training window out of {n}.")
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


# ----------------------------------------------------------------------------------------------
# Residual capture (nnsight)
# ----------------------------------------------------------------------------------------------


def capture_residuals(model, ids: torch.Tensor, mask: torch.Tensor, indices=None) -> torch.Tensor:
    """[len(indices), B, T, d] float32 residuals h_b (b = 0 … L; h_L = last block's output, no final norm).

    One nnsight trace; h_b for b < L is the input of block b. The run stops after the last block
    needed (the unembedding never runs).
    """
    L = model.n_layers
    indices = list(range(L + 1)) if indices is None else sorted({int(i) for i in indices})
    if indices[0] < 0 or indices[-1] > L:
        raise IndexError(f"residual indices must lie in 0 … {L}")
    layers = list(model.adapter.layer_modules(model.nn))
    with torch.no_grad(), model.trace({"input_ids": ids, "attention_mask": mask}) as tracer:
        saved = []
        for i in indices:
            if i < L:
                saved.append(layers[i].input.float().cpu())  # one device for the stack (a sharded model spans several)
            else:
                out = layers[L - 1].output
                saved.append((out[0] if isinstance(out, tuple) else out).float().cpu())
        saved = torch.stack(saved).save()  # bound to a name: only saved names come back from NDIF
        tracer.stop()
    return saved


def _quiet(progress: bool) -> bool:
    """No progress bar when asked, or when $TQDM_DISABLE is set (executed notebooks keep no widgets)."""
    return not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")


class _Pair:
    """Runs source and target on the same windows and returns kept-token residuals."""

    def __init__(self, src, tgt, windows: Windows, device):
        self.src, self.tgt, self.windows, self.device = src, tgt, windows, device
        self.same = src is tgt

    def _run(self, model, ids, mask, indices):
        dev = model.input_device
        return capture_residuals(model, ids.to(dev), mask.to(dev), indices)

    def batch(self, idx, tgt_indices):
        """(X [M, N, d1], Y [B, N, d2]) float32 on self.device, N = kept tokens of windows `idx`."""
        ids, mask, keep = self.windows.batch(idx)
        M = self.src.n_layers + 1
        if self.same:
            H = self._run(self.src, ids, mask, None)
            X, Y = H, H[list(tgt_indices)]
        else:
            X = self._run(self.src, ids, mask, range(M))
            Y = self._run(self.tgt, ids, mask, tgt_indices)
        keep = keep.to(X.device)
        return X[:, keep].to(self.device), Y[:, keep].to(self.device)

    def stream(self, idx, batch_size, tgt_indices, desc=None, progress=False):

        idx = list(idx)
        starts = range(0, len(idx), batch_size)
        for s in tqdm(starts, desc=desc, disable=_quiet(progress) or len(starts) < 2, leave=False):
            yield self.batch(idx[s : s + batch_size], tgt_indices)


# ----------------------------------------------------------------------------------------------
# Closed form: streamed ridge regression for all pairs
# ----------------------------------------------------------------------------------------------


class RidgeAccumulator:
    """Sufficient statistics and ridge solutions of affine maps from M source to B target spaces.

    `add(X, Y)` with X [M, N, d1], Y [B, N, d2] (one batch of N tokens; raw residuals); then
    `factor()`, optionally `add_val(X, Y)` on held-out tokens and `select(lambdas)`, which leaves
    the maps W [M, d1, B, d2] and biases [M, B, d2] in `weights_view()` / `bias`, in the
    coordinates shifted by `shift_x` / `shift_y` (see `predict`). All float64.
    """

    def __init__(self, M: int, d1: int, B: int, d2: int, weighting: str = "none", device="cpu", dtype=torch.float64):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.M, self.d1, self.B, self.d2 = M, d1, B, d2
        self.weighted = weighting == "relative"
        self.G = B if self.weighted else 1
        kw = dict(device=device, dtype=dtype)
        self.kw = kw
        self.sw = torch.zeros(B, **kw)
        self.swx = torch.zeros(M, self.G, d1, **kw)
        self.swxx = torch.zeros(M, self.G, d1, d1, **kw)
        self.swy = torch.zeros(B, d2, **kw)
        self.swyy = torch.zeros(B, **kw)
        self.cross = torch.zeros(M * d1, B * d2, **kw)  # Σ w x yᵀ → P = Uᵀ C_xy → W (in place)
        self.shift_x = self.shift_y = None
        self.n_train = 0
        self.n_val = 0
        self.state = "accumulating"

    # -- helpers -----------------------------------------------------------------------------
    def _g(self, b: int) -> int:
        return b if self.weighted else 0

    def cross_view(self) -> torch.Tensor:
        return self.cross.view(self.M, self.d1, self.B, self.d2)

    weights_view = cross_view

    def _prep(self, X, Y):
        X = X.to(**self.kw)
        Y = Y.to(**self.kw)
        if self.weighted:
            w = 1.0 / (Y * Y).sum(-1).clamp_min(EPS * EPS)  # [B, N], from the raw target
        else:
            w = None
        if self.shift_x is None:
            self.shift_x = X.mean(1)  # [M, d1]
            self.shift_y = Y.mean(1)  # [B, d2]
        return X - self.shift_x[:, None], Y - self.shift_y[:, None], w

    # -- pass 1 -------------------------------------------------------------------------------
    def add(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        assert self.state == "accumulating", "add() after factor()"
        X, Y, w = self._prep(X, Y)
        M, N, d1 = X.shape
        self.n_train += N
        if w is None:
            self.sw += N
            self.swx[:, 0] += X.sum(1)
            self.swxx[:, 0] += X.transpose(1, 2) @ X
            Yw = Y
        else:
            self.sw += w.sum(1)
            for b in range(self.B):
                Xw = X * w[b][None, :, None]
                self.swx[:, b] += Xw.sum(1)
                self.swxx[:, b] += Xw.transpose(1, 2) @ X
            Yw = Y * w[..., None]
        self.swy += Yw.sum(1)
        self.swyy += (Yw * Y).sum((1, 2))
        # all pairs at once: [M·d1, N] @ [N, B·d2]
        self.cross.addmm_(X.permute(1, 0, 2).reshape(N, M * d1).T, Yw.permute(1, 0, 2).reshape(N, self.B * self.d2))

    # -- factorisation --------------------------------------------------------------------------
    def factor(self) -> None:
        """Eigendecompose every centred source Gram; turn the cross terms into P = Uᵀ C_xy."""
        assert self.state == "accumulating"
        M, G, B, d1 = self.M, self.G, self.B, self.d1
        if self.n_train == 0:
            raise ValueError("No training tokens were accumulated.")
        swg = self.sw[:G] if self.weighted else self.sw[:1]  # Σw of each Gram
        self.mu_x = self.swx / swg[None, :, None]  # [M, G, d1]
        self.mu_y = self.swy / self.sw[:, None]  # [B, d2]
        self.evals = torch.empty(M, G, d1, **self.kw)
        self.evecs = torch.empty(M, G, d1, d1, **self.kw)
        for m in range(M):
            for g in range(G):
                C = self.swxx[m, g] - swg[g] * torch.outer(self.mu_x[m, g], self.mu_x[m, g])
                C = 0.5 * (C + C.T)
                s, U = torch.linalg.eigh(C)
                self.evals[m, g], self.evecs[m, g] = s.clamp_min(0), U
        self.scale = self.evals.mean(-1).clamp_min(torch.finfo(self.kw["dtype"]).tiny)  # mean eigenvalue
        del self.swxx
        cv = self.cross_view()
        for m in range(M):
            if not self.weighted:
                # C_xy = Σxyᵀ − n μx μyᵀ for all targets at once, then P = Uᵀ C_xy
                block = self.cross[m * d1 : (m + 1) * d1]  # [d1, B·d2]
                block -= self.sw[0] * torch.outer(self.mu_x[m, 0], self.mu_y.reshape(-1))
                block.copy_(self.evecs[m, 0].T @ block)
            else:
                for b in range(B):
                    c = cv[m, :, b, :] - self.sw[b] * torch.outer(self.mu_x[m, b], self.mu_y[b])
                    cv[m, :, b, :] = self.evecs[m, b].T @ c
        self.val_G = torch.zeros(M, G, d1, d1, **self.kw)
        self.val_a = torch.zeros(M, B, d1, **self.kw)
        self.val_e = torch.zeros(B, **self.kw)
        self.val_w = torch.zeros(B, **self.kw)
        self.state = "factored"

    # -- pass 2 ---------------------------------------------------------------------------------
    def add_val(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """Held-out statistics for choosing λ: Σw, Σw‖ỹ‖², Σw z zᵀ, Σw z∘(P ỹ)."""
        assert self.state == "factored", "add_val() needs factor() first"
        X, Y, w = self._prep(X, Y)
        N = X.shape[1]
        self.n_val += N
        Yc = Y - self.mu_y[:, None]  # [B, N, d2]
        ones = torch.ones(N, **self.kw)
        wb = w if w is not None else ones.expand(self.B, N)
        self.val_w += wb.sum(1)
        self.val_e += (wb * (Yc * Yc).sum(-1)).sum(1)
        cv = self.cross_view()
        for m in range(self.M):
            if not self.weighted:
                z = (X[m] - self.mu_x[m, 0]) @ self.evecs[m, 0]  # [N, d1]
                self.val_G[m, 0] += z.T @ z
                v = torch.bmm(Yc, cv[m].permute(1, 2, 0))  # [B, N, d1] = ỹ Pᵀ
                self.val_a[m] += (v * z[None]).sum(1)
            else:
                for b in range(self.B):
                    z = (X[m] - self.mu_x[m, b]) @ self.evecs[m, b]
                    zw = z * w[b][:, None]
                    self.val_G[m, b] += zw.T @ z
                    v = Yc[b] @ cv[m, :, b, :].T  # [N, d1]
                    self.val_a[m, b] += (zw * v).sum(0)

    # -- selection and solution ---------------------------------------------------------------
    def _inverse(self, s: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """1/(s + λ) [K, d1], zero where s + λ is below the pseudo-inverse threshold."""
        den = s[None] + lam[:, None]
        tol = max(self.d1, 1) * torch.finfo(s.dtype).eps * s.max().clamp_min(torch.finfo(s.dtype).tiny) * 10
        return torch.where(den > tol, 1.0 / den.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(den))

    def select(self, lambdas=DEFAULT_LAMBDAS) -> dict[str, np.ndarray]:
        """Choose λ per pair on the held-out statistics (or take the only λ), and solve for W, bias.

        Returns arrays: lam_rel [M, B], lam [M, B] (absolute), val_fvu [M, B, K] (held-out fraction
        of (weighted) variance unexplained per λ; NaN when there was no validation pass).
        """
        assert self.state == "factored"
        lambdas = torch.tensor([float(x) for x in lambdas], **self.kw)
        K = len(lambdas)
        M, B = self.M, self.B
        use_val = self.n_val > 0 and K > 1
        if K > 1 and self.n_val == 0:
            raise ValueError("Several λ values need held-out tokens (add_val) to choose from.")
        cv = self.cross_view()
        lam_rel = np.zeros((M, B))
        lam_abs = np.zeros((M, B))
        val_fvu = np.full((M, B, K), np.nan)
        self.bias = torch.empty(M, B, self.d2, **self.kw)
        for m in range(M):
            for b in range(B):
                g = self._g(b)
                s = self.evals[m, g]
                lam = lambdas * self.scale[m, g]
                D = self._inverse(s, lam)  # [K, d1]
                P = cv[m, :, b, :]
                if use_val:
                    H = self.val_G[m, g] * (P @ P.T)
                    lin = D @ self.val_a[m, b]
                    quad = ((D @ H) * D).sum(1)
                    sse = self.val_e[b] - 2 * lin + quad
                    fvu = (sse / self.val_e[b].clamp_min(torch.finfo(s.dtype).tiny)).cpu().numpy()
                    val_fvu[m, b] = fvu
                    k = int(np.nanargmin(fvu))
                else:
                    k = 0
                W = self.evecs[m, g] @ (D[k][:, None] * P)  # [d1, d2]
                cv[m, :, b, :] = W
                self.bias[m, b] = self.mu_y[b] - self.mu_x[m, g] @ W
                lam_rel[m, b] = float(lambdas[k])
                lam_abs[m, b] = float(lam[k])
        self.state = "solved"
        for name in ("val_G", "val_a", "evecs"):
            if hasattr(self, name):
                delattr(self, name)
        return {"lam_rel": lam_rel, "lam": lam_abs, "val_fvu": val_fvu}

    def maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W [M, d1, B, d2], b [M, B, d2]) with f(x) = x W + b in raw (unshifted) coordinates."""
        assert self.state == "solved"
        W = self.cross_view()
        b = self.bias + self.shift_y[None] - torch.einsum("md,mdbe->mbe", self.shift_x, W)
        return W, b


def fit_affine(
    X, Y, lam_rel: float = 0.0, weighting: str = "none", X_val=None, Y_val=None, lambdas=None, chunks: int = 1
):
    """Ridge fit of one map Y ≈ X W + b through `RidgeAccumulator` (X [N, d1], Y [N, d2]).

    With `X_val`/`Y_val` and `lambdas`, λ is chosen on them. `chunks` feeds the data in pieces
    (the streamed accumulation must equal the one-shot one). Returns (W [d1, d2], b [d2], info).
    """
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    acc = RidgeAccumulator(1, X.shape[1], 1, Y.shape[1], weighting=weighting)
    for Xc, Yc in zip(torch.tensor_split(X, chunks), torch.tensor_split(Y, chunks)):
        acc.add(Xc[None], Yc[None])
    acc.factor()
    if X_val is not None:
        acc.add_val(
            torch.as_tensor(X_val, dtype=torch.float64)[None], torch.as_tensor(Y_val, dtype=torch.float64)[None]
        )
    info = acc.select(lambdas if lambdas is not None else (lam_rel,))
    W, b = acc.maps()
    return W[0, :, 0, :], b[0, 0], info


# ----------------------------------------------------------------------------------------------
# Held-out evaluation (shared by both methods)
# ----------------------------------------------------------------------------------------------


class _Evaluator:
    """Per-token relative error of maps f(x) = x W + b [M, d1, B, d2] on streamed test tokens."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor, mu_y: torch.Tensor | None = None, chunk_bytes: float = 2**28):
        self.W, self.b = W, b
        self.mu_y = mu_y  # [B, d2] train mean of the targets (the mean-prediction baseline)
        M, d1, B, d2 = W.shape
        self.M, self.B = M, B
        kw = dict(dtype=torch.float64, device=W.device)
        self.rel = torch.zeros(M, B, **kw)
        self.sq = torch.zeros(M, B, **kw)
        self.base_rel = torch.zeros(B, **kw)
        self.base_sq = torch.zeros(B, **kw)
        self.n = 0
        self.chunk = max(1, int(chunk_bytes // (8 * B * d2 * 2)))

    def add(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        X = X.to(self.W)
        Y = Y.to(self.W)  # [B, N, d2]
        N = X.shape[1]
        self.n += N
        Yt = Y.permute(1, 0, 2)  # [N, B, d2]
        ynorm = Yt.norm(dim=-1).clamp_min(EPS)  # [N, B]
        if self.mu_y is not None:
            base = (Yt - self.mu_y[None]).norm(dim=-1)
            self.base_rel += (base / ynorm).sum(0)
            self.base_sq += (base * base).sum(0)
        Wf = self.W.reshape(self.M, self.W.shape[1], -1)  # [M, d1, B·d2]
        bf = self.b.reshape(self.M, -1)
        for s in range(0, N, self.chunk):
            sl = slice(s, s + self.chunk)
            for m in range(self.M):
                pred = torch.addmm(bf[m], X[m, sl], Wf[m]).view(-1, self.B, self.W.shape[-1])
                err = (Yt[sl] - pred).norm(dim=-1)  # [n, B]
                self.rel[m] += (err / ynorm[sl]).sum(0)
                self.sq[m] += (err * err).sum(0)

    def arrays(self) -> dict[str, np.ndarray]:
        n = max(self.n, 1)
        out = {"relative_error": (self.rel / n).cpu().numpy()}
        if self.mu_y is not None:
            out["fvu"] = (self.sq / self.base_sq.clamp_min(1e-300)[None]).cpu().numpy()
            out["baseline_error"] = (self.base_rel / n).cpu().numpy()
        return out


# ----------------------------------------------------------------------------------------------
# SGD (the paper's recipe)
# ----------------------------------------------------------------------------------------------


def _sgd_block(
    pair: _Pair, idx: dict, tgt_idx: list[int], recipe: SGDRecipe, weighting: str, batch_size: int, progress: bool
):
    M, d1, d2 = pair.src.n_layers + 1, pair.src.d_model, pair.tgt.d_model
    B = len(tgt_idx)
    device = pair.device
    gen = torch.Generator().manual_seed(recipe.seed)
    bound = 1 / math.sqrt(d1)  # nn.Linear's default initialisation
    Ws = [((torch.rand(d1, B * d2, generator=gen) * 2 - 1) * bound).to(device).requires_grad_() for _ in range(M)]
    bs = [((torch.rand(B * d2, generator=gen) * 2 - 1) * bound).to(device).requires_grad_() for _ in range(M)]
    opt = torch.optim.AdamW(
        [{"params": [W, b]} for W, b in zip(Ws, bs)], lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    train = np.asarray(idx["train"])
    rng = np.random.default_rng(recipe.seed)
    order, pos = rng.permutation(train), 0
    cache = None
    if recipe.cache_activations:
        cache = {int(w): pair.batch([int(w)], tgt_idx) for w in train}
    ysum = torch.zeros(B, d2, dtype=torch.float64, device=device)
    ycount = 0
    history, evals, eval_seconds, eval_steps = [], [], [], []
    eval_at = sorted({int(s) for s in recipe.eval_at if 0 < s <= recipe.steps})
    trained = 0.0

    n_steps = min(recipe.steps, recipe.stop_after or recipe.steps)
    for step in tqdm(range(n_steps), desc="sgd", disable=_quiet(progress), leave=False):
        t0 = time.perf_counter()
        take = []
        while len(take) < recipe.batch_windows:
            if pos >= len(order):
                order, pos = rng.permutation(train), 0
            take.append(int(order[pos]))
            pos += 1
        if cache is not None:
            X = torch.cat([cache[w][0] for w in take], 1)
            Y = torch.cat([cache[w][1] for w in take], 1)
        else:
            X, Y = pair.batch(take, tgt_idx)
        ysum += Y.double().sum(1)
        ycount += Y.shape[1]
        Yt = Y.permute(1, 0, 2)  # [N, B, d2]
        if weighting == "relative":
            inv = 1.0 / (Yt * Yt).sum(-1).clamp_min(EPS * EPS)  # [N, B]
        for g in opt.param_groups:
            g["lr"] = recipe.lr_at(step)
        total = 0.0
        for m in range(M):
            pred = torch.addmm(bs[m], X[m], Ws[m]).view(-1, B, d2)
            diff = pred - Yt
            if weighting == "relative":
                loss = ((diff * diff).sum(-1) * inv).mean(0).sum()
            else:
                loss = (diff * diff).mean((0, 2)).sum()  # each pair's own MSE
            loss.backward()
            torch.nn.utils.clip_grad_norm_([Ws[m], bs[m]], recipe.clip)
            total += float(loss.detach()) / B
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append(total / M)
        trained += time.perf_counter() - t0
        if step + 1 in eval_at:
            with torch.no_grad():
                W = torch.stack([w.detach().double() for w in Ws]).view(M, d1, B, d2)
                b = torch.stack([x.detach().double() for x in bs]).view(M, B, d2)
                ev = _Evaluator(W, b)
                for Xe, Ye in pair.stream(idx["test"], batch_size, tgt_idx):
                    ev.add(Xe, Ye)
            evals.append(ev.arrays()["relative_error"])
            eval_seconds.append(trained)
            eval_steps.append(step + 1)
    with torch.no_grad():
        W = torch.stack([w.detach().double() for w in Ws]).view(M, d1, B, d2)
        b = torch.stack([x.detach().double() for x in bs]).view(M, B, d2)
    mu_y = ysum / max(ycount, 1)
    extra = {
        "loss_history": np.asarray(history),
        "sgd_eval_steps": np.asarray(eval_steps, dtype=np.int64),
        "sgd_eval_seconds": np.asarray(eval_seconds),
        "sgd_eval_error": np.asarray(evals).reshape(len(evals), M, B),
    }
    return W, b, mu_y, trained, extra


# ----------------------------------------------------------------------------------------------
# The measurement
# ----------------------------------------------------------------------------------------------


class LinearMaps(Result):
    """Held-out relative error of affine maps from every source residual to every target residual.

    Arrays: relative_error [L1+1, L2+1] (mean over test tokens of ‖y − f(x)‖/‖y‖, rows = source
    residual index m, columns = target index n), fvu (fraction of variance unexplained), lam and
    lam_rel (the chosen ridge λ, absolute and relative to the mean Gram eigenvalue), val_fvu [.., K]
    (held-out error per candidate λ), baseline_error [L2+1] (predicting the target's mean),
    n_tokens [3] (train, val, test), n_windows [3], fit_seconds, eval_seconds; for SGD also
    loss_history, sgd_eval_steps, sgd_eval_seconds (training time at each) and sgd_eval_error.
    """

    measurement = "linear_maps"

    @property
    def n_src_layers(self) -> int:
        return self.arrays["relative_error"].shape[0] - 1

    @property
    def n_tgt_layers(self) -> int:
        return self.arrays["relative_error"].shape[1] - 1

    @property
    def tokens(self) -> dict[str, int]:
        return dict(zip(("train", "val", "test"), (int(x) for x in self.arrays["n_tokens"])))

    @property
    def src(self):
        """A stand-in with `.meta` for `plots.model_label` (the source model's identity)."""
        return SimpleNamespace(meta={"model": self.meta.get("src", {})})

    @property
    def tgt(self):
        return SimpleNamespace(meta={"model": self.meta.get("tgt", {})})

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per (source index, target index) with errors, λ and relative depths."""
        err = self.arrays["relative_error"]
        L1, L2 = err.shape[0] - 1, err.shape[1] - 1
        m, n = np.meshgrid(np.arange(L1 + 1), np.arange(L2 + 1), indexing="ij")
        frame = pd.DataFrame(
            {
                "src_layer": m.ravel(),
                "tgt_layer": n.ravel(),
                "src_depth": (m / max(L1, 1)).ravel(),
                "tgt_depth": (n / max(L2, 1)).ravel(),
                "relative_error": err.ravel(),
            }
        )
        for k in ("fvu", "lam", "lam_rel"):
            if k in self.arrays and np.shape(self.arrays[k]) == err.shape:
                frame[k] = np.asarray(self.arrays[k]).ravel()
        return frame

    def best_match(self, first: int = 1) -> pd.DataFrame:
        """For each source layer m ≥ `first`: the target layer with the lowest error, and relative depths."""
        err = self.arrays["relative_error"]
        L1, L2 = err.shape[0] - 1, err.shape[1] - 1
        rows = []
        for m in range(first, L1 + 1):
            n = int(np.argmin(err[m, first:])) + first
            rows.append(
                {
                    "src_layer": m,
                    "best_tgt_layer": n,
                    "src_depth": m / L1,
                    "best_tgt_depth": n / L2,
                    "relative_error": float(err[m, n]),
                    "equal_depth_tgt_layer": int(round(m * L2 / L1)),
                }
            )
        return pd.DataFrame(rows).set_index("src_layer")

    def best_source(self, first: int = 1) -> pd.DataFrame:
        """For each target layer n ≥ `first`: the source layer that predicts it best, and relative depths.

        Unlike `best_match` (best target per source row), this compares sources for a fixed target,
        so it is not biased towards target layers that are easy to predict from anything.
        """
        err = self.arrays["relative_error"]
        L1, L2 = err.shape[0] - 1, err.shape[1] - 1
        rows = []
        for n in range(first, L2 + 1):
            m = int(np.argmin(err[first:, n])) + first
            rows.append(
                {
                    "tgt_layer": n,
                    "best_src_layer": m,
                    "tgt_depth": n / L2,
                    "best_src_depth": m / L1,
                    "relative_error": float(err[m, n]),
                    "equal_depth_src_layer": n * L1 / L2,
                }
            )
        return pd.DataFrame(rows).set_index("tgt_layer")

    def diagonal_error(self) -> np.ndarray:
        """Error along equal relative depth: err[m, round(m·L2/L1)] for m = 0 … L1."""
        err = self.arrays["relative_error"]
        L1, L2 = err.shape[0] - 1, err.shape[1] - 1
        return np.array([err[m, int(round(m * L2 / max(L1, 1)))] for m in range(L1 + 1)])


def _model_identity(model) -> dict:
    ident = dict(model.identity())
    if not ident.get("d_model"):
        ident["d_model"] = model.d_model
    return ident


def _target_blocks(n_targets: int, per_block: int) -> list[list[int]]:
    per_block = max(1, min(per_block, n_targets))
    n_blocks = math.ceil(n_targets / per_block)
    size = math.ceil(n_targets / n_blocks)
    return [list(range(s, min(s + size, n_targets))) for s in range(0, n_targets, size)]


def peak_memory_bytes(
    d_src: int,
    d_tgt: int,
    L1: int,
    L2: int,
    block: int | None = None,
    batch_tokens: int = 4096,
    weighting: str = "none",
    method: str = "lstsq",
) -> float:
    """The peak-memory estimate of the module docstring, for a block of `block` targets (default all)."""
    M, B = L1 + 1, (L2 + 1 if block is None else block)
    G = B if weighting == "relative" else 1
    per_param = 8 if method == "lstsq" else 16  # float64 statistics, or float32 weights + grad + 2 Adam states
    grams = 24 * M * G * d_src**2 if method == "lstsq" else 0
    return per_param * M * B * d_src * d_tgt + grams + 20 * batch_tokens * (M * d_src + B * d_tgt)


def choose_block(
    d_src: int,
    d_tgt: int,
    L1: int,
    L2: int,
    memory_gb: float,
    batch_tokens: int,
    weighting: str = "none",
    method: str = "lstsq",
) -> int:
    """The largest number of target layers per block whose peak-memory estimate fits `memory_gb`."""
    for B in range(L2 + 1, 0, -1):
        if peak_memory_bytes(d_src, d_tgt, L1, L2, B, batch_tokens, weighting, method) <= memory_gb * 2**30:
            return B
    return 1


def linear_maps(
    src_model,
    tgt_model,
    texts,
    method: str = "lstsq",
    *,
    window: int = 128,
    n_windows: int | None = None,
    split=(0.8, 0.1, 0.1),
    seed: int = 0,
    batch_size: int = 8,
    weighting: str = "none",
    lambdas=DEFAULT_LAMBDAS,
    sgd: SGDRecipe | None = None,
    target_block: int | None = None,
    memory_gb: float = 16.0,
    device=None,
    accum_dtype=torch.float64,
    store: Store | None = None,
    progress: bool = True,
) -> LinearMaps:
    """Fit and score affine maps from every residual of `src_model` to every residual of `tgt_model`.

    texts: documents, packed into windows of `window` tokens (the first `n_windows` are used),
    split into train / validation / test windows by `split` with `seed`. Position 0 of every window
    is dropped. method: "lstsq" (exact ridge, λ chosen per pair on the validation windows among
    `lambdas`, multiples of the mean eigenvalue of the centred source Gram; `(0.0,)` is plain least
    squares) or "sgd" (the paper's recipe, `sgd=SGDRecipe(steps=..., batch_windows=...)`).
    weighting: "none" (least squares) or "relative" (each token weighted by 1/‖y‖², i.e. mean squared
    relative error). Target layers are processed in blocks that fit `memory_gb` (see the module
    docstring), or `target_block` at a time. Statistics live on `device` (default: the source model's)
    in `accum_dtype` (float64; float32 only where float64 is slow, e.g. consumer GPUs, and with
    care: Gram matrices of residual streams are ill-conditioned). Models must share a tokenizer
    (`TokenizerMismatch`).

    Returns a `LinearMaps` result; see its docstring for the arrays.
    """
    if method not in ("lstsq", "sgd"):
        raise ValueError(f"method must be 'lstsq' or 'sgd', got {method!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    check_same_tokenizer(src_model, tgt_model)
    for mdl in (src_model, tgt_model):
        limit, _ = context_limit(mdl.config)
        if limit is not None and window > limit:
            raise ValueError(f"window={window} is longer than {mdl.spec}'s context ({limit} positions).")
    windows = make_windows(src_model.tokenizer, list(texts), window, n_windows)
    idx = split_windows(len(windows), split, seed)
    recipe = (sgd or SGDRecipe(steps=1000, batch_windows=8)) if method == "sgd" else None
    if recipe is not None and recipe.seed != seed:
        recipe = replace(recipe, seed=seed)
    lambdas = tuple(float(x) for x in lambdas)
    if device is None:
        device = src_model.input_device
    store = store or default_store()

    L1, L2 = src_model.n_layers, tgt_model.n_layers
    d1, d2 = src_model.d_model, tgt_model.d_model
    batch_tokens = batch_size * windows.ids.shape[1]
    per_block = target_block or choose_block(d1, d2, L1, L2, memory_gb, batch_tokens, weighting, method)
    blocks = _target_blocks(L2 + 1, per_block)

    params = {
        "method": method,
        "window": window,
        "n_windows": len(windows),
        "split": list(split),
        "seed": seed,
        "weighting": weighting,
        "batch_size": batch_size,
        "accum_dtype": str(accum_dtype),
    }
    if method == "lstsq":
        params["lambdas"] = list(lambdas)
    else:
        params["sgd"] = asdict(recipe)
    src_id, tgt_id = _model_identity(src_model), _model_identity(tgt_model)
    identity = {
        "model": f"{src_id['model']} -> {tgt_id['model']}",
        "revision": f"{src_id.get('revision', '')}/{tgt_id.get('revision', '')}",
        "dtype": f"{src_id.get('dtype')}/{tgt_id.get('dtype')}",
    }
    # the windows' tokens are part of the key (`measure` keys the items, here blocks of target layers)
    params["data"] = hashlib.sha256(windows.ids.numpy().tobytes() + windows.lengths.numpy().tobytes()).hexdigest()
    pair = _Pair(src_model, tgt_model, windows, device)
    n_tok = np.array([windows.n_tokens(idx[k]) for k in ("train", "val", "test")])

    def fit_block(tgt_idx):
        t0 = time.perf_counter()
        out = {}
        if method == "lstsq":
            acc = RidgeAccumulator(L1 + 1, d1, len(tgt_idx), d2, weighting, device=device, dtype=accum_dtype)
            for X, Y in pair.stream(idx["train"], batch_size, tgt_idx, "train pass", progress):
                acc.add(X, Y)
            acc.factor()
            if len(lambdas) > 1:
                for X, Y in pair.stream(idx["val"], batch_size, tgt_idx, "validation pass", progress):
                    acc.add_val(X, Y)
            out.update(acc.select(lambdas))
            W, b = acc.maps()
            mu_y = acc.mu_y + acc.shift_y
            fit_seconds = time.perf_counter() - t0
        else:
            W, b, mu_y, fit_seconds, extra = _sgd_block(pair, idx, tgt_idx, recipe, weighting, batch_size, progress)
            out.update(extra)
        t1 = time.perf_counter()
        ev = _Evaluator(W, b, mu_y)
        for X, Y in pair.stream(idx["test"], batch_size, tgt_idx, "test pass", progress):
            ev.add(X, Y)
        out.update(ev.arrays())
        out["fit_seconds"] = np.array(fit_seconds)
        out["eval_seconds"] = np.array(time.perf_counter() - t1)
        return out

    def combine(parts):
        """The blocks' arrays joined along the target layers (each block of target layers is its own
        cache entry in `measure`: an interrupted run resumes per block)."""
        arrays = {}
        for name in parts[0]:
            vals = [p[name] for p in parts]
            if name in ("fit_seconds", "eval_seconds"):
                arrays[name] = np.array(sum(float(v) for v in vals))
            elif name == "baseline_error":
                arrays[name] = np.concatenate(vals)
            elif name in ("relative_error", "fvu", "lam", "lam_rel", "val_fvu"):
                arrays[name] = np.concatenate(vals, axis=1)
            elif name == "sgd_eval_error":
                arrays[name] = np.concatenate(vals, axis=2)
            elif name == "loss_history":
                w = np.array([len(b) for b in blocks], float)
                arrays[name] = sum(v * wi for v, wi in zip(vals, w)) / w.sum()
            elif name == "sgd_eval_seconds":  # blocks are trained one after the other
                arrays[name] = sum(vals)
            else:  # sgd_eval_steps
                arrays[name] = vals[0]
        arrays["n_tokens"] = n_tok
        arrays["n_windows"] = np.array([len(idx[k]) for k in ("train", "val", "test")])
        if method == "lstsq":
            arrays["lambdas_rel"] = np.asarray(lambdas)
        return arrays

    pair_identity = SimpleNamespace(
        identity=lambda: {**identity, "n_layers": f"{L1}/{L2}"}
    )  # "the model" of this result
    data_meta = {
        "src": src_id,
        "tgt": tgt_id,
        "blocks": [[b[0], b[-1]] for b in blocks],
        "window_split": {k: v.tolist() for k, v in idx.items()},
    }
    return measure(
        LinearMaps,
        pair_identity,
        blocks,
        params,
        fit_block,
        combine,
        store=store,
        item_id=lambda b: [int(b[0]), int(b[-1])],
        data_meta=data_meta,
        progress=False,
    )


# -- what the paper's setting would cost (the chapter's projection; effdepth.bench.maps measures this machine) --


PAPER = dict(
    src="Qwen/Qwen2.5-1.5B",
    L1=28,
    d1=1536,
    src_params=1.54e9,
    tgt="Qwen/Qwen2.5-14B",
    L2=48,
    d2=5120,
    tgt_params=14.7e9,
    sgd_gpu_days=80.0,
)


def accumulation_flops(L1: int, d1: int, L2: int, d2: int, n_train: float, n_val: float, n_test: float) -> dict:
    """FLOPs of the closed form's three passes and solves (multiply-add = 2 FLOPs)."""
    M, B = L1 + 1, L2 + 1
    pair = 2.0 * M * B * d1 * d2  # one d1×d2 product per pair and token
    gram = 2.0 * M * d1 * d1
    train = n_train * (pair + gram)
    val = n_val * (pair + 2 * gram)  # v = P ỹ for every pair; z = Uᵀx and Σ z zᵀ per source
    test = n_test * pair
    solve = M * (10.0 * d1**3) + 3 * M * B * 2.0 * d1 * d1 * d2  # eigh per source; P = UᵀC, P Pᵀ, W = U D P per pair
    return {"train": train, "val": val, "test": test, "solve": solve}


def project_paper_setting(
    n_windows: int = 2500,
    window: int = 512,
    split=(0.8, 0.1, 0.1),
    bf16_tflops: float = 400.0,
    fp64_tflops: float = 50.0,
    memory_gb: float = 40.0,
    batch_windows: int = 8,
    measured: dict | None = None,
) -> dict:
    """Estimated time of the closed form in the paper's setting on one H100, from the FLOP count.

    Assumptions: forwards at `bf16_tflops` sustained (2 FLOPs per parameter and token; the paper's
    window of 512 makes attention a few percent on top, ignored); the float64 accumulation GEMMs at
    `fp64_tflops` sustained (H100 SXM float64 tensor-core peak: 67 TFLOP/s); the target layers
    streamed in blocks that fit `memory_gb` of statistics next to the two models' bf16 weights
    (≈ 32 GB), each block re-running the source model and the target up to the block's last layer.
    `measured` (from `zoo_closed_vs_sgd`) adds this machine's measured rates to the text.
    """

    p = PAPER
    tokens = n_windows * (window - 1)
    tr, va, te = (x / sum(split) for x in split)
    n_train, n_val, n_test = tokens * tr, tokens * va, tokens * te
    fl = accumulation_flops(p["L1"], p["d1"], p["L2"], p["d2"], n_train, n_val, n_test)
    block = choose_block(p["d1"], p["d2"], p["L1"], p["L2"], memory_gb, batch_windows * window)
    blocks = _target_blocks(p["L2"] + 1, block)
    # each block runs the source fully and the target up to its last needed layer, on all three splits
    tgt_frac = sum(min(1.0, (b[-1] + 1) / p["L2"]) for b in blocks)
    fwd = 2.0 * tokens * (len(blocks) * p["src_params"] + tgt_frac * p["tgt_params"])
    t_fwd = fwd / (bf16_tflops * 1e12)
    t_acc = (fl["train"] + fl["val"] + fl["test"] + fl["solve"]) / (fp64_tflops * 1e12)
    total = t_fwd + t_acc
    peak = peak_memory_bytes(p["d1"], p["d2"], p["L1"], p["L2"], len(blocks[0]), batch_windows * window)
    all_pairs = peak_memory_bytes(p["d1"], p["d2"], p["L1"], p["L2"], None, batch_windows * window)
    speedup = p["sgd_gpu_days"] * 86400 / total
    out = {
        "setting": f"{p['src']} ({p['L1']} layers, d={p['d1']}) -> {p['tgt']} ({p['L2']} layers, d={p['d2']})",
        "tokens": tokens,
        "train_tokens": n_train,
        "forward_pflop": fwd / 1e15,
        "accumulation_pflop": (fl["train"] + fl["val"] + fl["test"]) / 1e15,
        "solve_pflop": fl["solve"] / 1e15,
        "blocks": len(blocks),
        "targets_per_block": len(blocks[0]),
        "peak_memory_gb": peak / 1e9,
        "all_pairs_memory_gb": all_pairs / 1e9,
        "forward_s": t_fwd,
        "accumulation_s": t_acc,
        "total_s": total,
        "paper_sgd_gpu_days": p["sgd_gpu_days"],
        "speedup_vs_paper": speedup,
        "assumptions": {
            "bf16_tflops": bf16_tflops,
            "fp64_tflops": fp64_tflops,
            "memory_gb": memory_gb,
            "split": list(split),
        },
    }
    cpu = ""
    if measured:
        out["measured"] = measured
        rate = measured.get("cpu_fp64_gflops")
        if rate:
            cpu_days = (fl["train"] + fl["val"] + fl["test"] + fl["solve"]) / (rate * 1e9) / 86400
            out["this_cpu_accumulation_days"] = cpu_days
            cpu = (
                f" On this machine's measured float64 GEMM rate ({rate:.0f} GFLOP/s) the accumulation alone "
                f"would take {cpu_days:.0f} days: a job for a GPU."
            )
        if measured.get("zoo_gemm_share") is not None:
            cpu += (
                f" On the zoo pair the fit ran at {measured['zoo_achieved_gflops']:.1f} GFLOP/s of counted "
                f"float64 work; at d = 128 the passes are dominated by the models' forwards and Python "
                f"overhead, not by the GEMMs the projection counts (they are {100 * measured['zoo_gemm_share']:.0f}% of the "
                f"zoo fit time at this machine's GEMM rate); at d = 1536 → 5120 the GEMMs dominate."
            )
    out["text"] = (
        f"**Projection for the paper's setting** ({out['setting']}, one H100). With {n_windows:,} C4 windows of "
        f"{window} tokens ({tokens / 1e6:.2f} M scored tokens; {n_train / 1e6:.2f} M for training, i.e. "
        f"{n_train / p['d1']:.0f} tokens per source dimension), the closed form needs "
        f"{out['forward_pflop']:.0f} PFLOP of bf16 forwards and {out['accumulation_pflop']:.0f} PFLOP of float64 "
        f"accumulation (every pair's outer product x yᵀ costs as much per token as the 14B forward itself), plus "
        f"{out['solve_pflop']:.2f} PFLOP of solves. The cross terms of all "
        f"{(p['L1'] + 1) * (p['L2'] + 1)} pairs would take {out['all_pairs_memory_gb']:.0f} GB, so the target layers are "
        f"streamed in {out['blocks']} blocks of ≤ {out['targets_per_block']} ({out['peak_memory_gb']:.0f} GB peak each). "
        f"Assuming {bf16_tflops:.0f} TFLOP/s for bf16 forwards and {fp64_tflops:.0f} TFLOP/s for float64 GEMMs "
        f"(H100 SXM float64 tensor-core peak 67), that is about **{total / 60:.0f} minutes** "
        f"({t_fwd / 60:.1f} min forwards, {t_acc / 60:.1f} min accumulation), against the paper's ≈{p['sgd_gpu_days']:.0f} "
        f"GPU-days of SGD: about {float(f'{speedup:.2g}'):,.0f} times less. TF32 accumulation would be faster but its 10-bit mantissa is "
        f"not accurate enough for Gram matrices; the test pass alone could use it.{cpu}"
    )
    return out
