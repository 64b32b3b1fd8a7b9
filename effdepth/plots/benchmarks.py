"""Fig 1: benchmark score against number of layers (dot area ∝ √params, colour = family), with the
OLS line and its 95 % confidence band."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from effdepth.plots import PALETTE


def depth_vs_score(df, fit, score_label: str = "MMLU (5-shot, %)", title: str = ""):
    """Scatter of df.score against df.layers; `fit` is `open_models.depth_fit(df)`."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    families = list(dict.fromkeys(df["family"]))
    area = 60 * np.sqrt(df["params_b"].to_numpy()) / np.sqrt(df["params_b"].max()) * 6
    for i, fam in enumerate(families):
        sel = (df["family"] == fam).to_numpy()
        ax.scatter(
            df["layers"][sel],
            df["score"][sel],
            s=area[sel],
            color=PALETTE[i % len(PALETTE)],
            alpha=0.75,
            edgecolor="white",
            linewidth=0.6,
            label=fam,
        )
    grid = np.linspace(df["layers"].min() - 2, df["layers"].max() + 2, 100)
    pred = fit.get_prediction({"layers": grid}).summary_frame(alpha=0.05)
    ax.plot(grid, pred["mean"], color="#333333", lw=1.2, label="OLS fit")
    ax.fill_between(
        grid, pred["mean_ci_lower"], pred["mean_ci_upper"], color="#333333", alpha=0.12, lw=0, label="95 % band"
    )
    ax.set_xlabel("Number of layers")
    ax.set_ylabel(score_label)
    ax.set_title(title or f"Depth vs benchmark score, {len(df)} open base models (dot area ∝ √params)")
    ax.legend(loc="lower right", fontsize=8, markerscale=0.5)
    fig.tight_layout()
    return fig
