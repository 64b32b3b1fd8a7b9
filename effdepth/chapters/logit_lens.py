"""§3.2 reasoning: does the logit lens settle late, at the depth where contributions drop?

Rules (the methods page states them, with their simulated error rates):

- The KL curve is KL(p_b ‖ p_final) for residuals b = 0 … L (b = L, the final residual, is 0), at
  relative depth b/L. Its knee is `stats.change_point` on residuals 1 … L (residual 0 is the bare
  token embedding, which the unembedding was not trained to read).
- **Settles late** (`SETTLES`): per prompt, with early = the mean KL over residuals 1 … L/4,
  `late_settling` = (KL(L/2) − KL(L−1))/early − (early − KL(L/2))/early: how much more of the way
  to the output the second half goes than the first (1: all of it in the second half; −1: all in
  the first; about 0: a steady fall). Threshold 0.25, margin 0.25. A random-init model's lens decodes its own
  near-uniform output (KL ≈ 0 at every depth), so a comparison with it cannot fail: the control is
  compared only where its first-half KL reaches `KL_FLOOR`, else the verdict rests on the threshold
  and the page says why.
- **Knees agree** (`KNEES`): per prompt, the KL knee minus §3.1's contribution knee (both
  `stats.change_point`, relative depth), tested for equivalence within ±`TOLERANCE` (TOST). Not
  testable unless both the lens settles late and §3.1 shows the paper's steady-then-drop shape as in
  the paper (without a drop the contribution knee marks no transition).
"""

from __future__ import annotations

import numpy as np

from effdepth import stats, verdicts
from effdepth.chapters import CONTROL_TOO, NOT_PAPER, NOT_TESTABLE, PAPER, Findings, record
from effdepth.chapters import contributions as contrib

KL_FLOOR = 0.05  # nats: a control whose first-half KL stays below this decodes its own output
TOLERANCE = 0.125  # knees agree within 1/8 of the depth (one layer of an 8-layer model)
MIN_LAYERS = 4
SETTLES = verdicts.Rule(
    name="logit_lens.settles_late",
    statistic="per prompt: (KL(L/2) − KL(L−1))/early − (early − KL(L/2))/early, early = mean KL over residuals 1 … L/4",
    direction=+1,
    threshold=0.25,
    margin=0.25,
    effect="the second half takes the decoded prediction at least a quarter of the way further towards the output than the first half does",
    paper="Llama 3.1 70B (Fig 4): KL stays high to about layer 40 of 80 and falls over the second half",
)
KNEES = verdicts.Rule(
    name="logit_lens.knees_agree",
    statistic="per prompt: KL knee minus §3.1 contribution knee, in relative depth",
    direction=+1,
    threshold=0.0,
    margin=TOLERANCE,
    effect=f"the two knees within ±{TOLERANCE} of the depth of each other (one layer of an 8-layer model)",
    paper="Llama 3.1 70B: the lens starts to settle at the layer where the contributions drop (about layer 40 of 80)",
)


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


def late_settling(result) -> np.ndarray:
    """Per prompt: the SETTLES statistic, (KL(L/2) − KL(L−1))/early − (early − KL(L/2))/early with
    early = the mean KL over residuals 1 … L/4 (a mean, not a max: the max of a noisy curve is biased
    upward). 1: the whole way to the output is gone in the second half; −1: in the first; about 0: a
    steady fall."""
    ex = np.asarray(result.example_kl, float)
    L = ex.shape[1] - 1
    mid = L // 2
    early = ex[:, 1 : max(2, L // 4 + 1)].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(early > 0, (2 * ex[:, mid] - ex[:, L - 1] - early) / early, np.nan)


def settles_verdict(result, controls: list) -> verdicts.Verdict:
    L = len(result.kl)
    if L < MIN_LAYERS:
        return verdicts.decide(SETTLES, [], not_testable=f"a {L}-layer model has no first half to settle in")
    tops = [float(np.nanmean(_first_half(c)[3])) for c in controls]
    degenerate = ""
    if tops and max(tops) < KL_FLOOR:
        degenerate = (
            f"the random-init control's lens decodes its own near-uniform output (first-half KL at most {max(tops):.3f} nats), "
            "so a comparison with it cannot fail; the verdict rests on the threshold alone"
        )
    return verdicts.decide(SETTLES, late_settling(result), [late_settling(c) for c in controls], degenerate=degenerate)


def prompt_knees(result) -> np.ndarray:
    """Per prompt: the KL curve's knee in relative depth (residual 0 left out)."""
    return np.array(
        [
            stats.change_point(row, x=depths(result), exclude_first=True)["x"]
            for row in np.asarray(result.example_kl, float)
        ]
    )


def contribution_prompt_knees(contributions) -> np.ndarray:
    """Per prompt: §3.1's contribution knee in relative depth."""
    v = np.asarray(contributions.arrays["prompt_rel_layer"], float)
    x = np.arange(v.shape[1]) / v.shape[1]
    return np.array([stats.change_point(row, x=x)["x"] for row in v])


def knees_verdict(result, contributions, settles: verdicts.Verdict, shape: verdicts.Verdict) -> verdicts.Verdict:
    why = ""
    if shape.state != PAPER:
        why = f"§3.1's paper shape is {shape.words()} on these prompts, so its knee marks no drop to align with"
    elif settles.state != PAPER:
        why = f"the lens's late settling is {settles.words()}, so its knee marks no settling to align with"
    if len(result.kl) < 8:
        why = why or f"with {len(result.kl)} layers a knee has too few admissible positions to be located"
    kl, ck = prompt_knees(result), contribution_prompt_knees(contributions)
    n = min(len(kl), len(ck))
    return verdicts.decide_equivalence(KNEES, kl[:n] - ck[:n], not_testable=why)


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


def findings(result, controls: list, contributions=None, contribution_controls=None) -> Findings:
    """The §3.2 findings of the lens `result` against its random-init `controls`; with the §3.1
    `contributions` result (and its controls') on the same prompts, the knee agreement."""
    if not controls:
        raise ValueError("logit_lens.findings needs at least one control result (the random-init model).")
    L = len(result.kl)
    kl = kl_curve(result)
    kn, ckn = kl_knee(result), [kl_knee(c) for c in controls]
    share, share_lo, share_hi, _ = _share_stats(result)
    c_means = [_share_stats(c)[0] for c in controls]
    late_fall = float(np.nanmean(late_fall_shares(result)))
    settles = settles_verdict(result, controls)
    ex = np.asarray(result.example_kl, float)
    pk = [stats.change_point(row, x=depths(result), exclude_first=True)["index"] for row in ex]
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
        "mid_share_lo": share_lo,
        "mid_share_hi": share_hi,
        "control_mid_share": float(np.mean(c_means)),
        "control_kl_max": float(np.max([np.nanmean(_first_half(c)[3]) for c in controls])),
        "final_kl": float(result.final_kl),
        "final_overlap": float(result.final_topk_overlap),
        "prompt_knee_median": int(np.median(pk)),
        "prompt_knee_min": int(min(pk)),
        "prompt_knee_max": int(max(pk)),
        "mid_kl_min": float(ex[:, mid].min()),
        "mid_kl_max": float(ex[:, mid].max()),
        "contribution_knee_drawn": float("nan"),
    }
    f = Findings(numbers=numbers)
    record(f, "settles_late", settles, SETTLES)
    settle_sentence = {
        PAPER: "**As in the paper**, the decoded prediction moves towards the output mostly in the second half.",
        CONTROL_TOO: "The decoded prediction settles in the second half, but **the untrained architecture shows it too**.",
        NOT_PAPER: "**Unlike the paper**, the decoded prediction does not settle mostly in the second half here.",
        NOT_TESTABLE: f"Not testable here: {settles.reason}.",
    }.get(settles.state, f"Whether the lens settles late is **{settles.words()}**.")
    if settles.reason and settles.state != NOT_TESTABLE:
        settle_sentence += f" ({settles.reason[0].upper() + settles.reason[1:]}.)"
    f.text.update(
        {
            "curve_text": (
                f"Decoded through the lens, the input of layer 0 is at KL {kl[0]:.2f} from the output (top-k overlap "
                f"{numbers['overlap_first']:.2f}); half-way (layer {mid}) the KL is {kl[mid]:.2f} and the overlap "
                f"{numbers['overlap_mid']:.2f}; the input of the last layer has KL {kl[L - 1]:.2f} and overlap "
                f"{numbers['overlap_last_input']:.2f}. Check: the final residual gives KL {numbers['final_kl']:.1e} and "
                f"overlap {numbers['final_overlap']:.2f}."
            ),
            "settle_text": (
                f"At mid-depth the KL is still **{share:.2f}** of its first-half maximum (95 % interval over prompts "
                f"{share_lo:.2f}–{share_hi:.2f}), and the second half brings it down by a further {late_fall:.2f} of that maximum: "
                f"a late settling of **{settles.effect:.2f}** (second-half fall minus first-half fall, mean over {settles.n} prompts, "
                f"interval {settles.lo:.2f} to {settles.hi:.2f}; the paper's pattern needs at least {SETTLES.threshold:g}). "
                f"In {ctl} the first-half KL reaches only {numbers['control_kl_max']:.3f} nats. {settle_sentence}"
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
    )
    if contributions is not None:
        shape = contrib.shape_verdict(contributions, contribution_controls or [])
        ck = contrib.knee(contributions)
        knees = knees_verdict(result, contributions, settles, shape)
        record(f, "knees_agree", knees, KNEES)
        f.numbers.update(
            contribution_knee=ck["index"], contribution_knee_depth=ck["x"], knee_gap=abs(kn["x"] - ck["x"])
        )
        if shape.state == PAPER:
            f.numbers["contribution_knee_drawn"] = float(ck["index"])
        agree_sentence = {
            PAPER: f"**As in the paper**, the lens settles where the contributions drop: per prompt the two knees are within ±{TOLERANCE:g} of the depth (mean gap {knees.effect:.2f}).",
            NOT_PAPER: f"**Unlike the paper**, the two knees are apart: per prompt the KL knee lies {knees.effect:+.2f} of the depth from the contribution knee (agreement means within ±{TOLERANCE:g}).",
            NOT_TESTABLE: f"Whether the knees agree is **not testable here**: {knees.reason}.",
        }.get(knees.state, f"Whether the knees agree is **{knees.words()}** (mean gap {knees.effect:+.2f}).")
        where = (
            f"layer **{ck['index']}** (relative depth {ck['x']:.2f}; dashed line)"
            if shape.state == PAPER
            else f"relative depth {ck['x']:.2f} (not drawn: without the paper's shape it marks no drop)"
        )
        f.text["agree_text"] = (
            f"On these prompts §3.1's contribution knee is at {where}, the KL knee at relative depth {kn['x']:.2f}. {agree_sentence}"
        )
    return f
