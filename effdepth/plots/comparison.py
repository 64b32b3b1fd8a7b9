"""Across-model figures: one curve per model against *relative* depth (layer / number of layers),
each model's random-init controls drawn faint in the same colour."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from effdepth.plots import PALETTE, cut_first_points


def relative_depth(n_layers: int) -> np.ndarray:
    """Layer l of L at relative depth (l + 0.5) / L: the middle of its slot in [0, 1]."""
    return (np.arange(n_layers) + 0.5) / n_layers


def by_relative_depth(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    ylabel: str,
    title: str,
    ylim=None,
    controls: dict | None = None,
    first: str = "layer 0",
):
    """Line per model: curves maps a model label to (relative depths, values); controls maps the same
    label to a list of (relative depths, values), one per control seed, drawn dashed and faint. A first
    point far above the rest (`first`: what it is, e.g. layer 0) is cut off the axis, its value written."""
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    for i, (label, (x, y)) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        for j, (cx, cy) in enumerate((controls or {}).get(label, [])):
            ax.plot(cx, cy, "--", color=color, alpha=0.35, lw=1, label=f"{label}, random init" if j == 0 else None)
        ax.plot(x, y, "o-", color=color, markersize=3.5, label=label)
    ax.set_xlim(0, 1)
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:
        lines = [(x, y) for x, y in curves.values()] + [run for runs in (controls or {}).values() for run in runs]
        cut_first_points(
            ax,
            lines,
            [PALETTE[i % len(PALETTE)] for i in range(len(curves))] + [None] * (len(lines) - len(curves)),
            first,
        )
    ax.set_xlabel("Relative depth (layer / number of layers)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below the axes: never over a curve
    fig.tight_layout()
    return fig
