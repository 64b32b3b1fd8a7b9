"""§3.2 logit-lens figures (Fig 4): KL(p_b ‖ p_final) and top-k overlap per layer input, trained and control."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from effdepth.plots import PALETTE, integer_ticks, model_label

CONTROL = dict(color="#6f6f6f", linestyle="--", linewidth=1, marker="x", markersize=4, alpha=0.8)


def _curves(result):
    kl = np.append(result.kl, result.final_kl)
    ov = np.append(result.topk_overlap, result.final_topk_overlap)
    return kl, ov


def lens_curves(
    result, controls=(), knee: int | None = None, knee_label: str = "§3.1 contribution knee", kl_knee: int | None = None
):
    """Fig 4: KL divergence to the final distribution (left) and top-k overlap (right) for the input
    of every layer; the final residual's values (0 and 1) are the last point. Each random-init control
    is a faint dashed line. `knee` (a layer: from it on contributions are lower) and `kl_knee` (a
    residual index) are marked as vertical lines."""
    kl, ov = _curves(result)
    k = int(result.arrays.get("k", 5))
    L = len(result.kl)
    x = np.arange(L + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.3))
    for i, (ax, y, label, color) in enumerate(
        ((a, kl, "KL divergence to the output", PALETTE[0]), (b, ov, f"Top-{k} overlap with the output", PALETTE[1]))
    ):
        ax.plot(x[:-1], y[:-1], "o-", color=color, markersize=4, label="trained")
        ax.plot(x[-2:], y[-2:], ":", color=color)
        for j, c in enumerate(controls or ()):
            ax.plot(x, _curves(c)[i], **CONTROL, label="random-init control" if j == 0 else None)
        ax.plot(x[-1:], y[-1:], "s", color="black", markersize=5, label="final residual $h_L$")
        ax.set_xlabel("Layer (its input residual)")
        ax.set_ylabel(label)
        integer_ticks(ax, x[:-1])
        ticks = list(ax.get_xticks())
        ax.set_xticks(ticks + [L], [str(int(t)) for t in ticks] + ["$h_L$"])
        if knee is not None and np.isfinite(knee):  # NaN: the chapter found no drop for the knee to mark
            ax.axvline(knee, color="#b8383b", linestyle="--", linewidth=1, label=f"{knee_label} (layer {int(knee)})")
        if kl_knee is not None:
            ax.axvline(kl_knee, color=PALETTE[4], linestyle=":", linewidth=1.2, label=f"KL knee (residual {kl_knee})")
        ax.legend(fontsize=9)
    b.set_ylim(-0.03, 1.03)
    a.set_ylim(bottom=0)
    fig.suptitle(f"Logit lens — {model_label(result)}")
    fig.tight_layout()
    return fig


def per_prompt(result, controls=()):
    """Every prompt's KL curve (thin), their mean (black), and each control's mean (faint dashed)."""
    L = len(result.kl)
    fig, ax = plt.subplots(figsize=(7, 3))
    for row in result.example_kl[:, :-1]:
        ax.plot(range(L), row, color=PALETTE[0], alpha=0.3, linewidth=1)
    ax.plot(range(L), result.kl, "o-", color="black", markersize=4, label="mean over prompts")
    for j, c in enumerate(controls or ()):
        ax.plot(range(L), c.kl, **CONTROL, label="random-init control (mean)" if j == 0 else None)
    ax.set_xlabel("Layer (its input residual)")
    ax.set_ylabel("KL divergence to the output")
    integer_ticks(ax, np.arange(L))
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(f"Logit lens per prompt — {model_label(result)}")
    fig.tight_layout()
    return fig
