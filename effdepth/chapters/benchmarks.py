"""Fig 1 / App. B: what the frozen (or live) table of open base models says about depth and score.

Rules (stated in book/methods/benchmarks-rules.md): the depth slope of the simple fit and the depth
coefficient of score ~ layers + d_model + d_ff_eff are "significant" at p < 0.05; the paper's
finding (depth significant at p < 0.0001 over 132 models) is "reproduced" only when the multiple
regression's depth coefficient is positive and p < 0.0001, "in the paper's direction" when it is
positive and p < 0.05, and otherwise "not distinguishable from zero with this table".
"""

from __future__ import annotations

from . import Findings

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


def findings(df, fit, reg, note: str) -> Findings:
    """Numbers and sentences of the chapter from the table, the simple fit (score ~ layers) and the
    multiple regression (score ~ layers + d_model + d_ff_eff)."""
    n = len(df)
    slope, p_slope = float(fit.params["layers"]), float(fit.pvalues["layers"])
    coef, p = float(reg.params["layers"]), float(reg.pvalues["layers"])
    verdict = depth_verdict(coef, p)
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
    return Findings(numbers=numbers, verdicts={"depth": verdict}, text={"source_text": f"The rows of this page come from {note}.", "simple_text": simple, "regression_text": multiple})
