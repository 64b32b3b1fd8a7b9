"""Shared statistics behind every verdict of the book.

Each function returns numbers and, where it decides something, a short verdict key; the chapters
turn those keys into sentences. The rules, stated once (book/methods.md repeats them):

- `mean_ci`: Student-t interval of the MEAN of per-example scores (proper coverage for i.i.d. examples).
- `bootstrap_max_ci`: the paper's statistic (max over examples) with a percentile bootstrap; this
  interval is known to under-cover (about 84 % for a nominal 95 % in simulation), so it is reported
  beside `mean_ci`, never alone.
- `slope_equivalence`: OLS slope with a TOST equivalence test: "flat" only when the (1-2α) interval
  lies inside ±margin; "rising"/"falling" when the (1-α) interval excludes 0; else "undetermined".
- `sign_test` / `direction_verdict`: one-sided exact binomial test over independent signs (seeds).
- `differs_from_control`: the trained value lies beyond every control and beyond the controls' mean
  by more than k spreads, in the stated direction (`prediction_k(n)` makes this a 97.5 % prediction
  bound for one more control seed).
- `change_point`: knee of a depth curve by a continuous two-segment (hinge) least-squares fit, with
  layer 0 left out when it dominates the curve.
- `halves`: first- vs second-half comparison of a skip matrix over equal numbers of entries per skipped
  layer (the next k layers), with a permutation null of the same matrix.
"""

from __future__ import annotations

from math import comb

import numpy as np
from scipy import stats as _st

FLAT, RISING, FALLING, UNDETERMINED = "flat", "rising", "falling", "undetermined"
CONSISTENT, OPPOSITE, CHANCE = "consistent", "opposite", "not distinguishable from chance"


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of per-example scores and its Student-t interval at `level`.

    Non-finite values are dropped. With fewer than two values the bounds are NaN (no interval).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    v = _finite(values)
    if v.size == 0:
        raise ValueError("mean_ci needs at least one finite value (got none).")
    m = float(v.mean())
    if v.size < 2:
        return m, float("nan"), float("nan")
    se = float(v.std(ddof=1) / np.sqrt(v.size))
    h = float(_st.t.ppf(0.5 + level / 2, v.size - 1)) * se
    return m, m - h, m + h


def bootstrap_max_ci(values, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(max, lo, hi): THE PAPER'S statistic, the max over examples, with a percentile bootstrap.

    The bootstrap of a maximum under-covers (about 84 % for a nominal 95 % in simulation): report it
    next to `mean_ci`, as the paper's number, never as the interval a verdict rests on.
    """
    v = _finite(values)
    if v.size == 0:
        raise ValueError("bootstrap_max_ci needs at least one finite value (got none).")
    rng = np.random.default_rng(seed)
    boots = v[rng.integers(0, v.size, size=(n_boot, v.size))].max(axis=1)
    a = (1 - level) / 2
    return float(v.max()), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def slope_equivalence(x, y, margin: float, alpha: float = 0.05) -> dict:
    """OLS slope of y on x with an equivalence test (TOST) against ±`margin`.

    Returns dict(slope, se, lo, hi, tost_lo, tost_hi, n, margin, verdict): (lo, hi) is the (1-α) interval,
    (tost_lo, tost_hi) the (1-2α) interval. verdict: "flat" when the (1-2α) interval lies inside
    ±margin (equivalence shown at level α); otherwise "rising"/"falling" when the (1-α) interval
    excludes 0; otherwise "undetermined" (not distinguishable from flat with this sample).
    """
    if not margin > 0:
        raise ValueError(f"margin must be a positive slope (units of y per unit of x), not {margin}")
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length (got {x.size} and {y.size}).")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = x.size
    nan = float("nan")
    out = dict(
        slope=nan,
        se=nan,
        lo=nan,
        hi=nan,
        tost_lo=nan,
        tost_hi=nan,
        n=int(n),
        margin=float(margin),
        verdict=UNDETERMINED,
    )
    if n < 3 or np.ptp(x) == 0:
        return out
    xc = x - x.mean()
    sxx = float((xc**2).sum())
    b = float((xc * (y - y.mean())).sum() / sxx)
    resid = y - y.mean() - b * xc
    se = float(np.sqrt((resid**2).sum() / (n - 2) / sxx))
    t1 = float(_st.t.ppf(1 - alpha / 2, n - 2))
    t2 = float(_st.t.ppf(1 - alpha, n - 2))
    out.update(slope=b, se=se, lo=b - t1 * se, hi=b + t1 * se, tost_lo=b - t2 * se, tost_hi=b + t2 * se)
    if -margin < out["tost_lo"] and out["tost_hi"] < margin:
        out["verdict"] = FLAT
    elif out["lo"] > 0:
        out["verdict"] = RISING
    elif out["hi"] < 0:
        out["verdict"] = FALLING
    return out


def sign_test(diffs) -> dict:
    """One-sided exact binomial test that differences are positive more often than chance.

    Zeros and non-finite values are dropped. Returns dict(n_pos, n, p) with p = P(X ≥ n_pos),
    X ~ Binomial(n, 1/2): 3 positive of 3 gives p = 1/8.
    """
    d = _finite(diffs)
    d = d[d != 0]
    n, k = int(d.size), int((d > 0).sum())
    p = float(sum(comb(n, i) for i in range(k, n + 1)) / 2**n) if n else 1.0
    return dict(n_pos=k, n=n, p=p)


def direction_verdict(diffs, expected: int = 1, alpha: float = 0.05) -> dict:
    """Do the signs of `diffs` (one per independent seed/model) follow the `expected` sign (+1 or -1)?

    verdict "consistent" when the sign test in the expected direction has p < alpha, "opposite"
    when it does in the other direction, else "not distinguishable from chance" (3 of 3 seeds is
    p = 1/8: chance). Returns dict(n_expected, n, p, p_opposite, verdict).
    """
    if expected not in (1, -1):
        raise ValueError(f"expected must be +1 or -1, not {expected}")
    d = expected * _finite(diffs)
    fwd, back = sign_test(d), sign_test(-d)
    verdict = CONSISTENT if fwd["p"] < alpha else OPPOSITE if back["p"] < alpha else CHANCE
    return dict(n_expected=fwd["n_pos"], n=fwd["n"], p=fwd["p"], p_opposite=back["p"], verdict=verdict)


def _sign(direction) -> int:
    if direction in (1, "greater", "higher", "more", ">"):
        return 1
    if direction in (-1, "less", "lower", "fewer", "<"):
        return -1
    raise ValueError(f"direction must be 'greater' (+1) or 'less' (-1), not {direction!r}")


def control_bound(control_values, direction, k: float = 2.0, spread: float | None = None) -> float:
    """The value a trained model must pass to differ from its controls in `direction`.

    For 'greater': max(max(controls), mean(controls) + k·spread); for 'less' the mirror image.
    `spread` defaults to the standard deviation across control seeds (0 with one seed); pass the
    spread across prompts (e.g. the control's standard error) when there is one control.
    """
    c = _finite(control_values)
    if c.size == 0:
        raise ValueError("control_bound needs at least one finite control value.")
    s = _sign(direction)
    if spread is None:
        spread = float(c.std(ddof=1)) if c.size > 1 else 0.0
    if not np.isfinite(spread) or spread < 0:
        raise ValueError(f"spread must be a finite non-negative number, not {spread}")
    if s > 0:
        return float(max(c.max(), c.mean() + k * spread))
    return float(min(c.min(), c.mean() - k * spread))


def prediction_k(n_controls: int, level: float = 0.975) -> float:
    """The `k` that makes `control_bound` a one-sided `level` prediction bound for one more control seed
    (normal seeds): t_{n−1, level} · sqrt(1 + 1/n), n = number of control seeds (3 seeds: 4.97). A
    further random-init seed then passes the bound only 1 − level of the time, where k = 2 with 3
    seeds lets about 1 in 9 through."""
    n = int(n_controls)
    if n < 2:
        raise ValueError(
            f"prediction_k needs at least 2 control seeds (got {n}); with one, pass the prompt spread and k=2."
        )
    return float(_st.t.ppf(level, n - 1) * np.sqrt(1 + 1 / n))


def reachable(bound: float, direction, limits: tuple[float, float]) -> bool:
    """Can any value of a statistic confined to `limits` (lo, hi) pass `bound` in `direction`? A
    control bound outside the statistic's range (a distance that must fall below −0.13, a score in
    [−1, 1] that must exceed 4.6) means the controls' spread is too wide for any result to count:
    the rule is then not testable, never "no"."""
    lo, hi = limits
    if not np.isfinite(bound):
        return False
    return bool(bound < hi) if _sign(direction) > 0 else bool(bound > lo)


def differs_from_control(value, control_values, direction, k: float = 2.0, spread: float | None = None) -> bool:
    """True only when `value` lies strictly beyond `control_bound(...)` in `direction`."""
    if value is None or not np.isfinite(value):
        return False
    bound = control_bound(control_values, direction, k=k, spread=spread)
    return bool(value > bound) if _sign(direction) > 0 else bool(value < bound)


def _dominant_first(c: np.ndarray) -> bool:
    """Layer 0 dominates when it lies outside the range of the rest by more than that range."""
    rest = c[1:]
    lo, hi = float(rest.min()), float(rest.max())
    return bool(abs(c[0] - np.clip(c[0], lo, hi)) > (hi - lo))


def change_point(curve, x=None, exclude_first="auto", min_segment: int = 2) -> dict:
    """The knee of a depth curve: the best two-segment least-squares fit.

    The curve is split into a first and a second segment (each at least `min_segment` points, fewer
    only when the curve is too short to allow it), each
    fitted by its own straight line (so a step and a bend both fit exactly); the split with the least
    total squared error wins, and the knee is the FIRST point of the second segment: the depth from
    which the curve follows its second regime. On a curve flat until 2/3 depth and falling after, the
    knee is at 2/3 depth (where the fall starts), not at its steepest point or half-range crossing; on
    a step from high to low it is the first low point. A corner point lies on both lines and noise
    decides which segment takes it: where the two lines cross between the segments, the knee is the
    point nearest the crossing. `exclude_first`: True/False, or "auto" = leave
    point 0 out when it dominates (lies outside the range of the remaining points by more than that
    range, as a layer 0 writing onto the bare embedding does).

    Returns dict(index, x, slope_before, slope_after, level_before, level_after, excluded_first):
    `index` is into `curve`; `x` the knee's position (pass relative depths as `x` to compare knees
    of models of different depth); levels are the two fitted lines' values at the knee.
    """
    c = np.asarray(curve, dtype=float).ravel()
    xs = np.arange(c.size, dtype=float) if x is None else np.asarray(x, dtype=float).ravel()
    if xs.shape != c.shape:
        raise ValueError(f"x must have one position per curve point (got {xs.size} for {c.size}).")
    if not np.all(np.isfinite(c)):
        raise ValueError("change_point needs a finite curve (it has NaN or inf values).")
    if exclude_first not in (True, False, "auto"):
        raise ValueError(f"exclude_first must be True, False or 'auto', not {exclude_first!r}")
    drop = bool(exclude_first) if exclude_first != "auto" else (c.size >= 4 and _dominant_first(c))
    idx = np.arange(c.size)[1:] if drop else np.arange(c.size)
    if idx.size < 2:
        raise ValueError(f"change_point needs at least 2 points after exclusions (got {idx.size}).")
    min_segment = max(1, min(int(min_segment), idx.size // 2))  # short curves (a 3-layer model): 1-point segments
    X, Y = xs[idx], c[idx]

    def line(xx, yy):
        A = np.stack([np.ones_like(xx), xx], axis=1)
        coef, *_ = np.linalg.lstsq(A, yy, rcond=None)
        return coef, float(((A @ coef - yy) ** 2).sum())

    best = None
    for j in range(min_segment, idx.size - min_segment + 1):
        c1, e1 = line(X[:j], Y[:j])
        c2, e2 = line(X[j:], Y[j:])
        sse = e1 + e2
        if best is None or sse < best[0] - 1e-12 * max(1.0, abs(best[0])):
            best = (sse, j, c1, c2)
    _, j, c1, c2 = best
    # A corner point lies on both lines, and noise decides which segment takes it; where the two
    # lines cross nearer the last point of the first segment than the first of the second, that
    # point is the knee (the same answer for either assignment).
    if c1[1] != c2[1]:
        cross = (c2[0] - c1[0]) / (c1[1] - c2[1])
        gap = X[j] - X[j - 1]
        if X[j - 1] - gap / 2 <= cross < X[j - 1] + gap / 2:
            j -= 1
    xk = float(X[j])
    return dict(
        index=int(idx[j]),
        x=xk,
        slope_before=float(c1[1]),
        slope_after=float(c2[1]),
        level_before=float(c1[0] + c1[1] * xk),
        level_after=float(c2[0] + c2[1] * xk),
        excluded_first=drop,
    )


def knees_agree(x_a: float, x_b: float, tolerance: float = 0.125) -> bool:
    """Two knees agree when their relative depths (0 = input, 1 = output) differ by at most `tolerance`."""
    return bool(abs(float(x_a) - float(x_b)) <= tolerance)


def next_k_scores(M, k: int, reduce=np.max) -> np.ndarray:
    """The halves score of each scored skipped layer s < L - k: `reduce` (max by default) of its
    effects on the next k layers, M[s, s+1 … s+k]."""
    M = np.asarray(M, dtype=float)
    return np.array([reduce(M[s, s + 1 : s + 1 + k]) for s in range(M.shape[0] - k)])


def halves(matrix, k: int = 1, reduce: str = "max", n_perm: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """First- vs second-half skipped layers of a skip matrix M[s, l] (effect on layer l of skipping s).

    Every skipped layer s is scored over the SAME number of entries: the next `k` layers
    l = s+1 … s+k (reduced by max, the paper's aggregation, or mean), so only s < L−k are scored.
    The scored layers split at L/2: first half s < L/2, second half s ≥ L/2. `diff` = first − second.
    The null permutes, along each diagonal l−s = 1…k independently, which skipped layer each entry
    belongs to (the distance structure is kept), and recomputes `diff`; `p_less` is the one-sided
    p-value that the second half is less. verdict: "second half less" when p_less < alpha,
    "second half more" when the mirror p < alpha, else "not distinguishable".
    """
    M = np.asarray(matrix, dtype=float)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"halves needs a square L×L skip matrix (got shape {M.shape}).")
    L = M.shape[0]
    if not 1 <= k <= L - 2:
        raise ValueError(f"k must be between 1 and L-2 = {L - 2} (got {k}).")
    red = {"max": np.max, "mean": np.mean}.get(reduce)
    if red is None:
        raise ValueError(f"reduce must be 'max' or 'mean', not {reduce!r}")
    S = L - k
    first = np.arange(S) < L / 2
    if first.all():
        raise ValueError(f"With L={L} and k={k} no second-half layer is scored; use a smaller k.")
    scores = next_k_scores(M, k, red)

    def diff_of(sc):
        return float(sc[first].mean() - sc[~first].mean())

    obs = diff_of(scores)
    rng = np.random.default_rng(seed)
    diags = [np.array([M[s, s + d] for s in range(S)]) for d in range(1, k + 1)]
    cols = np.stack([rng.permuted(np.tile(dg, (n_perm, 1)), axis=1) for dg in diags], axis=2)
    null_scores = red(cols, axis=2)  # [n_perm, S]
    null = null_scores[:, first].mean(axis=1) - null_scores[:, ~first].mean(axis=1)
    p_less = float((1 + (null >= obs - 1e-12).sum()) / (1 + n_perm))
    p_more = float((1 + (null <= obs + 1e-12).sum()) / (1 + n_perm))
    verdict = "second half less" if p_less < alpha else "second half more" if p_more < alpha else "not distinguishable"
    return dict(
        first=float(scores[first].mean()),
        second=float(scores[~first].mean()),
        diff=obs,
        p_less=p_less,
        p_more=p_more,
        k=int(k),
        reduce=reduce,
        scores=scores,
        verdict=verdict,
    )
