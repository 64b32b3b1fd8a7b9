"""Across-model figures: one curve per model against *relative* depth (layer / number of layers),
each model's random-init controls drawn faint in the same colour."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import PALETTE


def relative_depth(n_layers: int) -> np.ndarray:
    """Layer l of L at relative depth (l + 0.5) / L: the middle of its slot in [0, 1]."""
    return (np.arange(n_layers) + 0.5) / n_layers


def by_relative_depth(curves: dict[str, tuple[np.ndarray, np.ndarray]], ylabel: str, title: str, ylim=None, controls: dict | None = None):
    """Line per model: curves maps a model label to (relative depths, values); controls maps the same
    label to a list of (relative depths, values), one per control seed, drawn dashed and faint."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, (label, (x, y)) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        for j, (cx, cy) in enumerate((controls or {}).get(label, [])):
            ax.plot(cx, cy, "--", color=color, alpha=0.35, lw=1, label=f"{label}, random init" if j == 0 else None)
        ax.plot(x, y, "o-", color=color, markersize=3.5, label=label)
    ax.set_xlim(0, 1)
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:
        _cut_outliers(ax, [y for _, y in curves.values()] + [y for runs in (controls or {}).values() for _, y in runs], [x for x, _ in curves.values()], [PALETTE[i % len(PALETTE)] for i in range(len(curves))])
    ax.set_xlabel("Relative depth (layer / number of layers)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=9, ncol=2)
    fig.tight_layout()
    return fig


def _cut_outliers(ax, ys, xs, colors, factor: float = 4.0) -> None:
    """Keep the y axis linear and readable when a few points (layer 0 writing onto the bare
    embedding, typically) exceed `factor` × the median of all points: cut the axis at 1.25 × the
    largest other point and mark each trained curve's cut point at the top edge with its value."""
    values = np.concatenate([np.asarray(y, dtype=float) for y in ys]) if ys else np.array([])
    values = values[np.isfinite(values)]
    if len(values) < 4:
        return
    limit = factor * max(float(np.median(np.abs(values))), 1e-12)
    tall = values > limit
    if not tall.any() or tall.mean() > 0.2:
        return
    cut = 1.25 * float(values[~tall].max())
    ax.set_ylim(min(0.0, float(values.min())), cut)
    for x, y, color in zip(xs, ys[: len(xs)], colors):
        for xi, yi in zip(np.asarray(x), np.asarray(y, dtype=float)):
            if yi > limit:
                ax.annotate(f"{yi:.3g} ↑", (xi, cut), xytext=(0, -2), textcoords="offset points", ha="left", va="top", fontsize=9.5, color=color, fontweight="bold")
    ax.set_ylabel(ax.get_ylabel() + " (axis cut)")
