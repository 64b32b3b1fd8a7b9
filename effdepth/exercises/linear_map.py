"""Exercise set (f), §3.4: the closed-form affine map between two residual streams.

The student writes `fn(X, Y) -> (W, b)`: the least-squares affine map Y ≈ X W + b from the source
residuals X [N, d_src] to the target residuals Y [N, d_tgt] (W [d_src, d_tgt], b [d_tgt]). The check
compares the predictions X' W + b on held-out tokens X' with those of the reference
`effdepth.measures.linear_maps.fit_affine` (exact least squares, λ = 0).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from effdepth.exercises._capture import capture
from effdepth.exercises._check import Case, KnownMistake, cached_cases, judge
from effdepth.exercises._models import reference_model
from effdepth.measures.linear_maps import fit_affine

PROMPTS = (
    "The cat sat on the mat. The dog sat on the log.",
    "Q: 12 + 7 = ? A: 19. Q: 3 * 4 = ? A: 12.",
    "Alice gave the book to Bob because Bob asked for it.",
    "A stitch in time saves nine, or so they say in the north.",
    "Seven swans swimming, six geese laying, five gold rings.",
    "Rain in Spain stays mainly in the plain, she said twice.",
    "0123456789 9876543210 1357924680 2468013579",
    "How much wood would a woodchuck chuck if it could?",
    "Every good boy deserves fudge; every cow eats grass.",
    "The rain fell softly on the quiet village all night long.",
)
PAIRS = ((1, 2), (2, 5))  # (source residual index m, target residual index n)
HINTS = {
    "no_bias": "You forgot the bias of the map (b = 0, or Y ≈ X W fitted without an intercept). Residual streams have large mean components: centre X and Y (or append a column of ones to X) and set b = mean(Y) − mean(X) W.",
    "bias_without_centring": "Your b is mean(Y) − mean(X) W, but W was fitted on the raw, uncentred X and Y; fit W on the centred data (X − mean X, Y − mean Y), then compute b.",
    "transposed": "W maps source to target: Y ≈ X W with W of shape [d_src, d_tgt]; yours is its transpose (or you fitted X from Y).",
}


@lru_cache(maxsize=1)
def residual_streams():
    """(H_src [4, N, 48], H_tgt [7, N, 64]): every residual h_0 … h_L of a 3-layer d=48 tiny model
    and of a 6-layer d=64 one on the same tokens of PROMPTS (position 0 dropped), float64."""
    src, tgt = reference_model(n_layers=3, d_model=48, seed=1), reference_model(n_layers=6, d_model=64, seed=2)
    hs, ht = [], []
    for p in PROMPTS:
        ids = src.encode(p)
        hs.append(capture(src, ids)[0][:, 1:])
        ht.append(capture(tgt, ids)[0][:, 1:])
    return torch.cat(hs, 1).double(), torch.cat(ht, 1).double()


def residual_pair(m: int, n: int, split: float = 0.75):
    """(X_train, Y_train, X_test, Y_test): residual m of the shallow model, residual n of the deep
    one (`residual_streams`), the first `split` of the tokens for training."""
    H_src, H_tgt = residual_streams()
    cut = int(split * H_src.shape[1])
    X, Y = H_src[m], H_tgt[n]
    return X[:cut].clone(), Y[:cut].clone(), X[cut:].clone(), Y[cut:].clone()


def _lstsq(X, Y):
    return torch.linalg.lstsq(X, Y, driver="gelsd").solution


def predictions(W, b, X_test) -> np.ndarray:
    return (
        X_test @ torch.as_tensor(np.asarray(W), dtype=torch.float64)
        + torch.as_tensor(np.asarray(b), dtype=torch.float64)
    ).numpy()


def variants(X, Y, X_test):
    mx, my = X.mean(0), Y.mean(0)
    W0 = _lstsq(X, Y)
    return {
        "no_bias": {"prediction": predictions(W0, torch.zeros(Y.shape[1], dtype=torch.float64), X_test)},
        "bias_without_centring": {"prediction": predictions(W0, my - mx @ W0, X_test)},
    }


def reference(X, Y, X_test):

    W, b, _ = fit_affine(X, Y)
    return {"prediction": predictions(W, b, X_test)}


def check_linear_map(fn):
    """Check `fn(X, Y) -> (W, b)` by its predictions on held-out tokens against `effdepth.measures.linear_maps.fit_affine`
    for two (source, target) residual pairs of two tiny models of different depth and width."""

    def build():
        cases = []
        for m, n in PAIRS:
            X, Y, Xt, _ = residual_pair(m, n)
            cases.append(
                Case(
                    f"source residual {m} (d = 48) → target residual {n} (d = 64)",
                    (X, Y, Xt),
                    reference(X, Y, Xt),
                    variants(X, Y, Xt),
                )
            )
        return cases

    cases = cached_cases("linear_map", build)

    def wrapped(X, Y, X_test):  # the student's map, judged by its predictions on the held-out tokens
        out = fn(X.clone(), Y.clone())
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise KnownMistake("format", f"return (W, b), a pair; got {type(out).__name__}.")
        W, b = (np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64) for x in out)
        if W.shape != (X.shape[1], Y.shape[1]):
            if W.shape == (Y.shape[1], X.shape[1]):
                raise KnownMistake("transposed", HINTS["transposed"])
            raise KnownMistake(
                "shape", f"W has shape {list(W.shape)}, expected [d_src, d_tgt] = [{X.shape[1]}, {Y.shape[1]}]."
            )
        if b.shape not in ((Y.shape[1],), ()):
            raise KnownMistake("shape", f"b has shape {list(b.shape)}, expected [d_tgt] = [{Y.shape[1]}].")
        return predictions(W, b, X_test)

    return judge(
        "closed-form linear map (§3.4)", wrapped, cases, HINTS, ("prediction",), rtol=1e-3, atol=1e-4, student=fn
    )
