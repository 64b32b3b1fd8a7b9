"""§3.2 reasoning: does the logit lens settle late, at the depth where contributions drop, unlike an
untrained model?

Rules (book/methods/logit_lens-rules.md states them for the reader):

- The KL curve is KL(p_b ‖ p_final) for residuals b = 0 … L (b = L, the final residual, is 0), at
  relative depth b/L. Its knee is `stats.change_point` (two-segment least squares, a line per segment)
  on residuals 1 … L: residual 0 is the bare token embedding, which the unembedding was not trained
  to read (its KL is typically far above the rest; on SmolLM2-135M keeping it moves the knee from
  residual 18 to 17 of 30).
- `mid_share` (per prompt, then its mean and t-interval): KL at the input of layer L/2 divided by the
  largest KL among residuals 1 … L/2 (residual 0 left out, as for the knee). Near 1: the first half has not moved the decoded prediction
  towards the output; near 0: the prediction is settled by mid-depth.
- "settles_late": the trained model shows the paper's pattern when mid_share ≥ 0.5 AND the second
  half does the falling: `late_fall` (per prompt, then its mean and t-interval) = (KL at the input of
  layer L/2 − KL at the input of the last layer) / the largest KL among residuals 1 … L/2 has a mean
  of at least 0.25 and an interval above 0 (a KL that stays flat until the final residual and only
  then drops is not the paper's gradual settling). It is the paper's ("yes")
  only when the lower end of mid_share's 95 % interval also exceeds the controls' bound (the largest
  control mean, and their mean plus `k` spreads (`chapters.control_k`: 4.97 for 3 seeds, 2 with one control); the spread is the standard deviation across control
  seeds, or with one control its per-prompt standard error).
- "knees_agree": the KL knee and §3.1's contribution knee agree when their relative depths differ by
  at most `tolerance` (0.125 = one layer of an 8-layer model; a 2-layer model's neighbours do not
  agree). Knees of two shallow curves agree by chance often (3 in 8 for random knees in 8 layers), so
  the agreement is the paper's ("yes") only when both knees mark learned features: "settles_late"
  and §3.1's "paper_shape" are both "yes", and no control's two knees agree at the same depth
  (within `tolerance` of the trained KL knee). "not distinguishable from the control" when the knees
  agree but one of these fails; "no" when they do not agree.
"""

from __future__ import annotations

import numpy as np

from .. import stats
from . import NOT_PAPER, PAPER, SAME_AS_CONTROL, Findings, control_k, paper_verdict
from . import contributions as contrib

SHARE_THRESHOLD = 0.5
LATE_FALL_THRESHOLD = 0.25


def kl_curve(result) -> np.ndarray:
    """KL for residuals 0 … L (the last is the final residual, 0 by construction)."""
    return np.append(np.asarray(result.kl, float), float(result.final_kl))


def depths(result) -> np.ndarray:
    L = len(result.kl)
    return np.arange(L + 1) / L


def kl_knee(result) -> dict:
    """stats.change_point of the KL curve (residuals 1 … L; residual 0, the bare embedding, is always left out)."""
    return stats.change_point(kl_curve(result), x=depths(result), exclude_first=True)


def overlap_knee(result) -> dict:
    ov = np.append(np.asarray(result.topk_overlap, float), float(result.final_topk_overlap))
    return stats.change_point(-ov, x=depths(result), exclude_first=True)


def _first_half(result):
    """Per-prompt KL rows [P, L+1], L, L // 2, and each prompt's largest KL among residuals 1 … L/2
    (residual 0, the bare embedding, left out as for the knee: on SmolLM2-135M its KL is 13 against
    ≈ 7 for residuals 2 … 18, so it would halve every share)."""
    ex = np.asarray(result.example_kl, float)  # [P, L+1]
    L = ex.shape[1] - 1
    mid = L // 2
    top = ex[:, min(1, mid) : mid + 1].max(axis=1)
    return ex, L, mid, top


def mid_shares(result) -> np.ndarray:
    """Per prompt: KL at the input of layer L/2 over the largest KL among residuals 1 … L/2."""
    ex, L, mid, top = _first_half(result)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, ex[:, mid] / top, np.nan)


def late_fall_shares(result) -> np.ndarray:
    """Per prompt: (KL at the input of layer L/2 − KL at the input of the last layer) / max KL over residuals 1 … L/2."""
    ex, L, mid, top = _first_half(result)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, (ex[:, mid] - ex[:, L - 1]) / top, np.nan)


def _share_stats(result) -> tuple[float, float, float, float]:
    s = mid_shares(result)
    m, lo, hi = stats.mean_ci(s)
    ok = s[np.isfinite(s)]
    se = float(ok.std(ddof=1) / np.sqrt(ok.size)) if ok.size > 1 else 0.0
    return m, lo, hi, se


def _range(values) -> str:
    v = np.asarray(values, dtype=float)
    lo, hi = f"{v.min():.2f}", f"{v.max():.2f}"
    return lo if lo == hi else f"{lo}–{hi}"


def findings(result, controls: list, contributions=None, contribution_controls=None, k: float | None = None, tolerance: float = 0.125) -> Findings:
    """The §3.2 findings of the lens `result` against its random-init `controls`; with the §3.1
    `contributions` result (and its controls') on the same prompts, the knee agreement."""
    if not controls:
        raise ValueError("logit_lens.findings needs at least one control result (the random-init model).")
    k = control_k(len(controls), k)
    L = len(result.kl)
    kl = kl_curve(result)
    kn, ckn = kl_knee(result), [kl_knee(c) for c in controls]
    share, share_lo, share_hi, _ = _share_stats(result)
    c_share = [_share_stats(c) for c in controls]
    c_means = [c[0] for c in c_share]
    spread = float(np.std(c_means, ddof=1)) if len(controls) > 1 else c_share[0][3]
    bound = stats.control_bound(c_means, "greater", k=k, spread=spread)
    late_fall, late_fall_lo, _ = stats.mean_ci(late_fall_shares(result))
    shows = bool(share >= SHARE_THRESHOLD and late_fall >= LATE_FALL_THRESHOLD and late_fall_lo > 0)
    settles = paper_verdict(shows, bool(np.isfinite(share_lo) and share_lo > bound))

    ex = np.asarray(result.example_kl, float)
    prompt_knees = [stats.change_point(row, x=depths(result), exclude_first=True)["index"] for row in ex]
    mid = L // 2
    ovk = overlap_knee(result)
    n = len(controls)
    ctl = f"the random-init control{'s' if n > 1 else ''} ({n} seed{'s' if n > 1 else ''})"
    numbers = {
        "n_layers": L,
        "kl_first": float(kl[0]),
        "kl_mid": float(kl[mid]),
        "kl_last_input": float(kl[L - 1]),
        "overlap_first": float(result.topk_overlap[0]),
        "overlap_mid": float(result.topk_overlap[mid]),
        "overlap_last_input": float(result.topk_overlap[-1]),
        "kl_knee": kn["index"],
        "kl_knee_depth": kn["x"],
        "overlap_knee": ovk["index"],
        "control_kl_knee_depth": float(np.mean([c["x"] for c in ckn])),
        "mid_share": share,
        "late_fall": late_fall,
        "late_fall_lo": late_fall_lo,
        "mid_share_lo": share_lo,
        "mid_share_hi": share_hi,
        "control_mid_share": float(np.mean(c_means)),
        "control_bound": bound,
        "final_kl": float(result.final_kl),
        "final_overlap": float(result.final_topk_overlap),
        "prompt_knee_median": int(np.median(prompt_knees)),
        "prompt_knee_min": int(min(prompt_knees)),
        "prompt_knee_max": int(max(prompt_knees)),
        "mid_kl_min": float(ex[:, mid].min()),
        "mid_kl_max": float(ex[:, mid].max()),
    }
    settle_sentence = {
        PAPER: (
            "As in the paper, the first half leaves the decoded prediction far from the output, and training "
            f"made this: the interval lies above the bound {bound:.2f} of {ctl}."
        ),
        SAME_AS_CONTROL: (
            "The first half leaves the decoded prediction far from the output, but this is not distinguishable "
            f"from {ctl} (share {_range(c_means)}, bound {bound:.2f})."
        ),
        NOT_PAPER: (
            f"Unlike the paper's Llama, the lens does not settle gradually over the second half: either the prediction "
            f"is largely settled by mid-depth (share below {SHARE_THRESHOLD:g}) or the layers of the second half before "
            f"the last bring the KL down by less than {LATE_FALL_THRESHOLD:g} of its early level (here {late_fall:.2f})."
        ),
    }[settles]
    text = {
        "curve_text": (
            f"Decoded through the lens, the input of layer 0 is at KL {kl[0]:.2f} from the output (top-k overlap "
            f"{numbers['overlap_first']:.2f}); half-way (layer {mid}) the KL is {kl[mid]:.2f} and the overlap "
            f"{numbers['overlap_mid']:.2f}; the input of the last layer has KL {kl[L - 1]:.2f} and overlap "
            f"{numbers['overlap_last_input']:.2f}. Check: the final residual gives KL {numbers['final_kl']:.1e} and "
            f"overlap {numbers['final_overlap']:.2f}."
        ),
        "settle_text": (
            f"At mid-depth the KL is still **{share:.2f}** of its first-half maximum (95 % interval over prompts "
            f"{share_lo:.2f}–{share_hi:.2f}); in {ctl} it is {_range(c_means)}. {settle_sentence}"
        ),
        "knee_text": (
            f"A two-segment fit to the KL curve puts its knee at residual **{kn['index']}** (relative depth "
            f"{kn['x']:.2f}); the overlap curve's knee is at {ovk['index']}; in {ctl} the KL knee is at relative depth "
            f"{_range([c['x'] for c in ckn])}."
        ),
        "prompt_text": (
            f"At layer {mid} the KL ranges from {numbers['mid_kl_min']:.2f} to {numbers['mid_kl_max']:.2f} across "
            f"prompts; the per-prompt knee is at residual {numbers['prompt_knee_median']} in the median (range "
            f"{numbers['prompt_knee_min']}–{numbers['prompt_knee_max']})."
        ),
    }
    verdicts = {"settles_late": settles}
    if contributions is not None:
        ck = contrib.knee(contributions)
        agree = stats.knees_agree(kn["x"], ck["x"], tolerance)
        c_ck = [contrib.knee(cc) for cc in contribution_controls] if contribution_controls else []
        near_control = any(
            stats.knees_agree(kn["x"], c["x"], tolerance) and (not c_ck or stats.knees_agree(kn["x"], cc["x"], tolerance))
            for c, cc in zip(ckn, c_ck or ckn)
        )
        learned = settles == PAPER and bool(c_ck) and contrib.findings(contributions, contribution_controls, k=k).verdicts["paper_shape"] == PAPER
        verdicts["knees_agree"] = paper_verdict(agree, learned and not near_control)
        numbers.update(contribution_knee=ck["index"], contribution_knee_depth=ck["x"], knee_gap=abs(kn["x"] - ck["x"]))
        control_pairs = ""
        if contribution_controls:
            pairs = [f"{c['x']:.2f}/{contrib.knee(cc)['x']:.2f}" for c, cc in zip(ckn, contribution_controls)]
            control_pairs = f" (KL / contribution knee depths in {ctl}: {', '.join(pairs)})"
        agree_sentence = {
            PAPER: "As in the paper, the logit lens settles at the depth where the contributions drop, and not where the untrained model's lens does.",
            SAME_AS_CONTROL: (
                "The two knees agree, but that is not evidence of anything learned: agreement counts only when the lens "
                "settles late and the contributions drop unlike in the control, and no control's knees meet at the same "
                "depth; here at least one of these fails."
            ),
            NOT_PAPER: f"Unlike the paper's finding, the two knees are {abs(kn['x'] - ck['x']):.2f} of the depth apart in this model (agreement means within {tolerance:g}).",
        }[verdicts["knees_agree"]]
        text["agree_text"] = (
            f"§3.1's contribution knee is at layer **{ck['index']}** (relative depth {ck['x']:.2f}; dashed line), the "
            f"KL knee at relative depth {kn['x']:.2f}{control_pairs}. {agree_sentence}"
        )
    return Findings(numbers=numbers, verdicts=verdicts, text=text)
