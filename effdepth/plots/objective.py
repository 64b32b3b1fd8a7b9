"""§3.5 figures: accuracy of the architecture × objective grid, residual-erasure heatmaps side by
side (Figs 9, 42, 43), depth use per model, and the fine-tuning before/after view (Figs 39–41)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import PALETTE
from .complexity import erasure_heatmap
from .skipping import skip_heatmap

ARCH_LABEL = {"transformer": "Transformer", "moeut": "MoEUT"}
OBJ_LABEL = {"all": "all-token loss", "answer": "answer-only loss"}
OBJ_COLOR = {"all": PALETTE[0], "answer": PALETTE[1]}


def cell_label(arch: str, objective: str, seed: int | None = None) -> str:
    s = f"{ARCH_LABEL.get(arch, arch)}, {OBJ_LABEL.get(objective, objective)}"
    return s if seed is None else f"{s} (seed {seed})"


def accuracy_bars(frame, splits=("interpolate", "extrapolate"), module: str = "all", title: str = ""):
    """Exact-match accuracy per architecture (groups) and objective (colours): bars = mean over seeds,
    error bars = min–max, dots = the seeds. ``frame``: `Grid.accuracy_frame()`."""
    f = frame[frame.module == module]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.4), squeeze=False, sharey=True)
    archs = [a for a in ("transformer", "moeut") if a in set(f.arch)]
    for ax, split in zip(axes[0], splits):
        g = f[f.split == split]
        for j, obj in enumerate(("all", "answer")):
            for i, arch in enumerate(archs):
                v = g[(g.arch == arch) & (g.objective == obj)].accuracy.to_numpy()
                if not len(v):
                    continue
                x = i + (j - 0.5) * 0.38
                ax.bar(x, v.mean(), width=0.36, color=OBJ_COLOR[obj], zorder=2, label=OBJ_LABEL[obj] if i == 0 else None)
                ax.errorbar(x, v.mean(), yerr=[[v.mean() - v.min()], [v.max() - v.mean()]], color="black", capsize=3, linewidth=0.9, zorder=3)
                ax.scatter(np.full(len(v), x), v, s=10, color="black", zorder=4)
        ax.set_xticks(range(len(archs)), [ARCH_LABEL[a] for a in archs])
        ax.set_title(f"{split} ({'all modules' if module == 'all' else module})")
        ax.set_ylabel("Exact match")
        ax.set_ylim(0, max(0.05, float(f.accuracy.max()) * 1.15))
    axes[0][0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def module_table(frame, split: str):
    """Mean ± sd over seeds per module (rows) and model (columns), as a formatted DataFrame."""
    import pandas as pd

    f = frame[frame.split == split]
    g = f.groupby(["module", "arch", "objective"], sort=False).accuracy
    mean, sd = g.mean(), g.std(ddof=1)
    out = {}
    for arch in ("transformer", "moeut"):
        for obj in ("all", "answer"):
            col = cell_label(arch, obj)
            out[col] = {m: f"{mean[(m, arch, obj)]:.2f} ± {sd[(m, arch, obj)]:.2f}" for m in dict.fromkeys(f.module) if (m, arch, obj) in mean.index}
    return pd.DataFrame(out)


def erasure_grid(results: dict, title: str = "", ncols: int = 2):
    """Residual-erasure heatmaps side by side (paper Figs 9, 42, 43): ``results`` maps a panel title
    (which names the model) to an `Erasure` result. Each panel has its own colour scale."""
    n = len(results)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    first = next(iter(results.values()))
    T = first.effect.shape[1]
    L1 = first.effect.shape[0]
    w = min(7.5, 2.6 + 0.09 * T)
    h = min(4.2, 1.8 + 0.2 * L1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * w, nrows * (h + 0.6)), squeeze=False)
    for ax, (name, res) in zip(axes.ravel(), results.items()):
        erasure_heatmap(ax, res, title=name)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def depth_use_bars(frame, columns=("depth_layer", "depth_output", "erasure_depth")):
    """Depth use per model: bars = mean over seeds, error bars = min–max, dots = seeds.
    ``frame``: `objective.depth_use(...)` (one row per arch, objective, seed)."""
    names = {
        "depth_layer": "Depth score (layer effect)",
        "depth_output": "Depth score (logit effect)",
        "erasure_depth": "Erasure depth",
    }
    fig, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.3), squeeze=False)
    archs = [a for a in ("transformer", "moeut") if a in set(frame.arch)]
    for ax, col in zip(axes[0], columns):
        for j, obj in enumerate(("all", "answer")):
            for i, arch in enumerate(archs):
                v = frame[(frame.arch == arch) & (frame.objective == obj)][col].dropna().to_numpy()
                if not len(v):
                    continue
                x = i + (j - 0.5) * 0.38
                ax.bar(x, v.mean(), width=0.36, color=OBJ_COLOR[obj], zorder=2, label=OBJ_LABEL[obj] if i == 0 else None)
                ax.errorbar(x, v.mean(), yerr=[[v.mean() - v.min()], [v.max() - v.mean()]], color="black", capsize=3, linewidth=0.9, zorder=3)
                ax.scatter(np.full(len(v), x), v, s=10, color="black", zorder=4)
        ax.set_xticks(range(len(archs)), [ARCH_LABEL[a] for a in archs])
        ax.set_ylabel("Fraction of depth")
        ax.set_title(names.get(col, col))
        ax.set_ylim(0, 1)
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def future_effects(results: dict, title: str = ""):
    """Future-setting skip heatmaps side by side (paper Figs 39–41: before and after fine-tuning).
    ``results`` maps a panel title (naming the model) to a `SkipEffects` result."""
    n = len(results)
    L = next(iter(results.values())).layer_effect.shape[0]
    size = min(4.2, 2.4 + 0.1 * L)
    fig, axes = plt.subplots(1, n, figsize=(n * (size + 1.0), size + 0.6), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        skip_heatmap(res, ax=ax, title=name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(histories: dict, title: str = ""):
    """Training loss per step (each model's own objective) for the models of one seed."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (name, hist) in enumerate(histories.items()):
        ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], label=name, color=PALETTE[i % len(PALETTE)], linestyle="-" if "all" in name else "--")
    ax.set_xlabel("Step")
    ax.set_ylabel("Training loss (nats)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
