"""Figures of §3.4 (shallow-to-deep linear maps): Fig 8's heatmap, the controls, relative depth, SGD.

Conventions (methods page §5): y = source layer 1 … L1 (row 1 at the bottom), x = target layer 1 … L2,
colour "Relative error" (lower is better). Residual index 0 (the embeddings) is left out, as in the
paper; layer k means the output of block k. Every figure names both models.
"""

from __future__ import annotations

import os

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, NullFormatter

from effdepth.plots import PALETTE, layer_heatmap, model_label

CMAP = "viridis"


def _short(label: str) -> str:
    """A local folder's name instead of its whole path (titles stay readable)."""
    parts = []
    for piece in label.split(":"):
        parts.append(os.path.basename(piece.rstrip("/")) if piece.startswith(("/", "~", ".")) else piece)
    return ":".join(parts)


def pair_label(result, sep: str = " → ") -> str:
    """'<source> → <target>' with the models' names as the book shows them (folders by their name)."""
    return f"{_short(model_label(result.src))}{sep}{_short(model_label(result.tgt))}"


def _vmax(*results) -> float:
    vals = [np.nanmax(r.relative_error[1:, 1:]) for r in results if r is not None]
    return float(max(1e-3, max(vals))) if vals else 1.0


def heatmap(
    result,
    ax=None,
    vmax: float | None = None,
    title: str | None = None,
    mark_best: bool = True,
    diagonal: bool = True,
    roles: bool = True,
):
    """Fig 8: relative error of the map from source layer m (y) to target layer n (x)."""
    err = np.asarray(result.relative_error)[1:, 1:]
    L1, L2 = err.shape
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(12, 2.5 + 0.32 * L2 + 1.5), min(9, 1.8 + 0.32 * L1 + 1)))
    step_x = max(1, L2 // 12)
    step_y = max(1, L1 // 12)
    layer_heatmap(
        ax,
        err,
        xlabel="Target layer (deep model)" if roles else "Target layer",
        ylabel="Source layer (shallow model)" if roles else "Source layer",
        cbar_label="Relative error (lower is better)",
        vmin=0.0,
        vmax=vmax if vmax is not None else _vmax(result),
        cmap=CMAP,
    )
    ax.set_xticks(range(0, L2, step_x), [str(i + 1) for i in range(0, L2, step_x)])
    ax.set_yticks(range(0, L1, step_y), [str(i + 1) for i in range(0, L1, step_y)])
    if diagonal:
        m = np.arange(1, L1 + 1)
        ax.plot(
            m * L2 / L1 - 1,
            m - 1,
            ls="--",
            color="white",
            lw=1.4,
            label="equal relative depth",
            path_effects=[pe.Stroke(linewidth=2.6, foreground="black"), pe.Normal()],
        )
    if mark_best:
        best = np.argmin(err, axis=1)
        ax.scatter(
            best,
            np.arange(L1),
            marker="o",
            s=22,
            facecolor="none",
            edgecolor="red",
            lw=1.3,
            label="best target",
            zorder=5,
        )
    if diagonal or mark_best:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9.5)
    ax.set_title(title or f"Linear maps: {pair_label(result)}")
    return ax


def panels(named: dict, vmax: float | None = None):
    """Several Fig-8 heatmaps side by side on one colour scale: {panel title: LinearMaps}."""
    named = {k: v for k, v in named.items() if v is not None}
    vmax = vmax if vmax is not None else _vmax(*named.values())
    fig, axes = plt.subplots(1, len(named), figsize=(5.4 * len(named), 4.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], named.items()):
        label = pair_label(r, sep=" →\n")
        heatmap(r, ax=ax, vmax=vmax, title=f"{name}\n{label}", mark_best=True, diagonal=True, roles=False)
    fig.tight_layout()
    return fig


def controls(result, identity=None, random=None, vmax: float | None = None):
    """The trained pair beside its controls, on one colour scale.

    identity: a model mapped to itself (≈0 on the diagonal); random: the same source mapped to an
    untrained model of the deep architecture (how much of the structure comes from training).
    """
    return panels(
        {
            "Trained pair": result,
            "Identity control (model → itself)": identity,
            "Random control (target untrained)": random,
        },
        vmax=vmax,
    )


def relative_depth(result, others: dict | None = None):
    """Left: Fig 8 with both axes as fraction of depth. Right: best matches in relative depth.

    Right panel: for each source layer the best target (circles, solid), and for each target layer
    the best source (squares, dotted); both lie on the diagonal if the deep model stretches the
    shallow one's computation.

    others: {label: LinearMaps} drawn as faint grey best-match curves behind the trained pair's
    (the random-target controls).
    """
    err = np.asarray(result.relative_error)[1:, 1:]
    L1, L2 = err.shape
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.3))
    xe = (np.arange(L2 + 1) + 0.5) / L2
    ye = (np.arange(L1 + 1) + 0.5) / L1
    mesh = ax0.pcolormesh(xe, ye, err, cmap=CMAP, vmin=0, vmax=_vmax(result))
    ax0.plot(
        [0, 1.05],
        [0, 1.05],
        ls="--",
        color="white",
        lw=1.4,
        path_effects=[pe.Stroke(linewidth=2.6, foreground="black"), pe.Normal()],
    )
    ax0.set_xlim(xe[0], xe[-1])
    ax0.set_ylim(ye[0], ye[-1])
    ax0.set_xlabel("Target relative depth n / L2")
    ax0.set_ylabel("Source relative depth m / L1")
    ax0.grid(False)
    fig.colorbar(mesh, ax=ax0).set_label("Relative error (lower is better)")
    ax0.set_title(f"Relative depth: {pair_label(result)}")

    curves = {"trained": result, **(others or {})}
    for i, (name, r) in enumerate(curves.items()):
        bm = r.best_match()
        color = PALETTE[0] if i == 0 else "0.55"  # controls: faint grey, drawn behind
        faint = {} if i == 0 else {"alpha": 0.55, "lw": 1.0, "ms": 3.5, "zorder": 1}
        ax1.plot(
            bm["src_depth"],
            bm["best_tgt_depth"],
            marker="o",
            color=color,
            label=f"{name}: best target per source",
            **faint,
        )
        if i > 0:
            bs = r.best_source()
            ax1.plot(
                bs["best_src_depth"],
                bs["tgt_depth"],
                marker="s",
                ls=":",
                mfc="none",
                color=color,
                label=f"{name}: best source per target" if i == 1 else None,
                **faint,
            )
        if i == 0:
            bs = r.best_source()
            ax1.plot(
                bs["best_src_depth"],
                bs["tgt_depth"],
                marker="s",
                ls=":",
                mfc="none",
                color=color,
                label=f"{name}: best source per target",
            )
            for _m, row in bm.iterrows():
                ax1.annotate(
                    str(int(row["best_tgt_layer"])),
                    (row["src_depth"], row["best_tgt_depth"]),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=9,
                )
    ax1.plot([0, 1], [0, 1], ls="--", color="black", lw=0.8, label="equal relative depth")
    ax1.set_xlim(0, 1.05)
    ax1.set_ylim(0, 1.05)
    ax1.set_xlabel("Source relative depth m / L1")
    ax1.set_ylabel("Target relative depth n / L2")
    ax1.set_title("Best matches (numbers: best target layer n*)")
    ax1.legend(fontsize=9.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    return fig


def sgd_comparison(closed, sgd):
    """Left: per-pair held-out error, SGD vs closed form. Right: SGD's error against training time."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.3))
    a = np.asarray(closed.relative_error).ravel()
    b = np.asarray(sgd.relative_error).ravel()
    hi = float(max(a.max(), b.max())) * 1.05
    ax0.scatter(a, b, s=14, color=PALETTE[0])
    ax0.plot([0, hi], [0, hi], ls="--", color="black", lw=0.8, label="equal error")
    ax0.set_xlabel("Closed form (ridge): relative error")
    ax0.set_ylabel("SGD (paper's recipe, scaled down): relative error")
    ax0.set_xlim(0, hi)
    ax0.set_ylim(0, hi)
    ax0.legend()
    ax0.set_title(f"Per layer pair: {pair_label(closed)}")

    cf_err = float(np.mean(closed.relative_error))
    cf_t = float(closed.fit_seconds)
    steps = np.asarray(sgd.arrays.get("sgd_eval_steps", []))
    if len(steps):
        t = np.asarray(sgd.sgd_eval_seconds)
        e = np.asarray(sgd.sgd_eval_error).reshape(len(steps), -1).mean(1)
        ax1.plot(t, e, marker="o", color=PALETTE[1], label="SGD (checkpoints)")
    ax1.scatter([cf_t], [cf_err], marker="*", s=160, color=PALETTE[0], zorder=5, label="closed form")
    ax1.axhline(cf_err, color=PALETTE[0], lw=0.8, ls=":")
    ax1.set_xscale("log")
    ax1.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax1.xaxis.set_minor_formatter(NullFormatter())
    ax1.set_xlabel("Fit time (s, this machine)")
    ax1.set_ylabel("Mean relative error over all pairs (test)")
    ax1.legend()
    ax1.set_title("Error against fit time")
    fig.tight_layout()
    return fig
