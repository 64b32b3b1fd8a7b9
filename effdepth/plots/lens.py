"""§3.2 logit-lens figures (Fig 4): KL(p_b ‖ p_final) and top-k overlap per layer input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import PALETTE, integer_ticks, model_label


def lens_curves(result, knee: int | None = None, knee_label: str = "§3.1 drop"):
    """Fig 4: KL divergence to the final distribution (left) and top-k overlap (right) for the input
    of every layer; the final residual's values (0 and 1) are the last point. `knee` marks a layer."""
    kl = np.append(result.kl, result.final_kl)
    ov = np.append(result.topk_overlap, result.final_topk_overlap)
    k = int(result.arrays.get("k", 5))
    L = len(result.kl)
    x = np.arange(L + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.3))
    for ax, y, label, color in ((a, kl, "KL divergence to the output", PALETTE[0]), (b, ov, f"Top-{k} overlap with the output", PALETTE[1])):
        ax.plot(x[:-1], y[:-1], "o-", color=color, markersize=4)
        ax.plot(x[-2:], y[-2:], ":", color=color)
        ax.plot(x[-1:], y[-1:], "s", color="black", markersize=5, label="final residual $h_L$")
        ax.set_xlabel("Layer (its input residual)")
        ax.set_ylabel(label)
        integer_ticks(ax, x[:-1])
        ticks = list(ax.get_xticks())
        ax.set_xticks(ticks + [L], [str(int(t)) for t in ticks] + ["$h_L$"])
        if knee is not None:
            ax.axvline(knee - 0.5, color="#b8383b", linestyle="--", linewidth=1, label=f"{knee_label} (layer {knee})")
        ax.legend(fontsize=8)
    b.set_ylim(-0.03, 1.03)
    a.set_ylim(bottom=0)
    fig.suptitle(f"Logit lens — {model_label(result)}")
    fig.tight_layout()
    return fig


def knee(values: np.ndarray, rising: bool = False) -> int:
    """The layer that splits a curve into the two parts with the largest difference of means (the
    point from which it is lower, or higher when `rising`): the same rule as §3.1's drop."""
    v = np.asarray(values, float)
    if rising:
        v = -v
    L = len(v)
    if L < 2:
        return 0
    scores = [v[:k].mean() - v[k:].mean() for k in range(1, L)]
    return int(np.argmax(scores)) + 1


def describe(result) -> dict:
    """Numbers the prose quotes: where KL falls and overlap rises most, and the end values."""
    kl, ov = np.asarray(result.kl), np.asarray(result.topk_overlap)
    L = len(kl)
    steps = -np.diff(np.append(kl, result.final_kl))  # fall of KL going into layer b+1 (b+1 = L: final)
    return {
        "n_layers": L,
        "kl_knee": knee(kl),
        "overlap_knee": knee(ov, rising=True),
        "largest_kl_fall_into": int(np.argmax(steps)) + 1,
        "kl_first": float(kl[0]),
        "kl_mid": float(kl[L // 2]),
        "kl_last_input": float(kl[-1]),
        "overlap_first": float(ov[0]),
        "overlap_mid": float(ov[L // 2]),
        "overlap_last_input": float(ov[-1]),
        "first_overlap_half": next((b for b in range(L) if ov[b] >= 0.5), None),
    }


def per_prompt(result):
    """Every prompt's KL curve (thin) and their mean (black): is the mean typical?"""
    L = len(result.kl)
    fig, ax = plt.subplots(figsize=(7, 3))
    for row in result.example_kl[:, :-1]:
        ax.plot(range(L), row, color=PALETTE[0], alpha=0.3, linewidth=1)
    ax.plot(range(L), result.kl, "o-", color="black", markersize=4, label="mean over prompts")
    ax.set_xlabel("Layer (its input residual)")
    ax.set_ylabel("KL divergence to the output")
    integer_ticks(ax, np.arange(L))
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(f"Logit lens per prompt — {model_label(result)}")
    fig.tight_layout()
    return fig
