"""Fig 1 / App. B: what the frozen (or live) table of open base models says about depth and score.

Rules (stated on the methods page): the paper's finding (depth significant at p < 0.0001 over 132
models, in score ~ layers + d_model + d_ff) is "as in the paper" only when the multiple regression's
depth coefficient is positive with p < 0.0001; "unlike the paper" when it is negative with p < 0.05;
otherwise "inconclusive at n = <models>" (a positive coefficient with 0.0001 ≤ p < 0.05 is named
as pointing the paper's way, not counted as the paper's finding).
"""

from __future__ import annotations

from effdepth import verdicts
from effdepth.chapters import AS_PAPER, INCONCLUSIVE, UNLIKE, Findings, record

RULE = verdicts.Rule(
    name="benchmarks.depth",
    statistic="depth coefficient of score ~ layers + d_model + d_ff_eff (points per layer), OLS over the table's models",
    direction=+1,
    threshold=0.0,
    margin=0.0,
    effect="a positive depth coefficient at the paper's p < 0.0001",
    paper="132 Open LLM Leaderboard base models (Fig 1, App. B): deeper models score better, depth significant at p < 0.0001",
)

PAPER_P = 1e-4
ALPHA = 0.05


def depth_verdict(coef: float, p: float) -> str:
    if coef > 0 and p < PAPER_P:
        return "reproduced"
    if coef > 0 and p < ALPHA:
        return "in the paper's direction"
    if coef < 0 and p < ALPHA:
        return "opposite to the paper"
    return "not distinguishable from zero with this table"


def score_label(note: str) -> str:
    """The score axis's label: MMLU when the table's note says its scores are MMLU (the frozen table),
    else the live leaderboard's average."""
    return "MMLU (5-shot, %)" if "MMLU" in note else "Leaderboard average score"


def made_by(df) -> str:
    """Who made the depth-score figure (its caption's model slot): the table's models."""
    return f"{len(df)} open base models"


def findings(df, fit, reg, note: str) -> Findings:
    """Numbers and sentences of the chapter from the table, the simple fit (score ~ layers) and the
    multiple regression (score ~ layers + d_model + d_ff_eff)."""
    n = len(df)
    slope, p_slope = float(fit.params["layers"]), float(fit.pvalues["layers"])
    coef, p = float(reg.params["layers"]), float(reg.pvalues["layers"])
    verdict = depth_verdict(coef, p)
    lo, hi = (float(x) for x in reg.conf_int(alpha=0.05).loc["layers"])
    state = AS_PAPER if verdict == "reproduced" else UNLIKE if verdict == "opposite to the paper" else INCONCLUSIVE
    v = verdicts.Verdict(RULE.name, state, n, effect=coef, lo=lo, hi=hi)
    numbers = {
        "n_models": n,
        "n_families": int(df["family"].nunique()),
        "slope": round(slope, 3),
        "slope_p": float(f"{p_slope:.2g}"),
        "r2": round(float(fit.rsquared), 3),
        "depth_coef": round(coef, 3),
        "depth_p": float(f"{p:.2g}"),
        "reg_r2": round(float(reg.rsquared), 3),
    }
    simple = (
        f"Over these {n} models, each extra layer goes with {slope:+.2f} points of score "
        f"(p = {p_slope:.2g}, R² = {fit.rsquared:.2f}) when depth is the only predictor."
    )
    multiple = (
        f"Holding d_model and d_ff fixed, the depth coefficient is {coef:+.2f} points per layer (p = {p:.2g}; "
        f"R² of the regression {reg.rsquared:.2f}): **{verdict}** (the paper: depth significant at p < 0.0001 over 132 "
        f"leaderboard models). With {n} rows from {numbers['n_families']} families, depth, width and release generation "
        f"are entangled (bigger models of a family are deeper and wider and were trained on similar data), so this "
        f"table cannot separate them the way a large sample might."
    )
    f = Findings(
        numbers=numbers,
        verdicts={"depth_words": verdict},
        text={
            "source_text": f"The rows of this page come from {note}.",
            "simple_text": simple,
            "regression_text": multiple,
        },
    )
    record(f, "depth", v, RULE, unit="points of score per layer")
    return f
