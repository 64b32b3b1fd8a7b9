"""§3.5 figures: accuracy of the architecture × objective grid, residual-erasure heatmaps side by
side (Figs 9, 42, 43), depth use per model, and the fine-tuning before/after view (Figs 39–41)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import PALETTE
from .skipping import skip_heatmap

ARCH_LABEL = {"transformer": "Transformer", "moeut": "MoEUT"}
OBJ_LABEL = {"all": "all-token loss", "answer": "answer-only loss"}
OBJ_COLOR = {"all": PALETTE[0], "answer": PALETTE[1]}


def cell_label(arch: str, objective: str, seed: int | None = None) -> str:
    s = f"{ARCH_LABEL.get(arch, arch)}, {OBJ_LABEL.get(objective, objective)}"
    return s if seed is None else f"{s} (seed {seed})"


def accuracy_bars(frame, splits=("interpolate", "extrapolate"), module: str = "all", title: str = "", baseline: dict | None = None):
    """Exact-match accuracy per architecture (groups) and objective (colours): bars = mean over seeds,
    error bars = min–max, dots = the seeds. ``frame``: `Grid.accuracy_frame()`. ``baseline``:
    `objective.baseline_accuracy(spec)`, drawn as a dashed line (always the most frequent answer)."""
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
        top = float(f.accuracy.max())
        if baseline is not None and module in baseline.get(split, {}):
            b = baseline[split][module]
            ax.axhline(b, color="gray", linestyle="--", linewidth=1, zorder=5, label="most frequent answer" if split == splits[0] else None)
            top = max(top, b)
        ax.set_xticks(range(len(archs)), [ARCH_LABEL[a] for a in archs])
        ax.set_title(f"{split} ({'all modules' if module == 'all' else module})")
        ax.set_ylabel("Exact match")
        ax.set_ylim(0, max(0.05, top * 1.15))
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


def question_vmax(result) -> float:
    """The largest erasure effect at the question's tokens (positions 1 … answer start − 2): the
    colour scale that shows how deep the question is read. The positions that predict the answer
    change it at every depth and would otherwise set the scale alone."""
    eff = np.asarray(result.effect, float)
    a0 = int(result.arrays["answer_start"])
    q = eff[:, 1 : max(a0 - 1, 2)]
    v = float(np.nanmax(q)) if np.isfinite(q).any() else float(np.nanmax(eff))
    return v if v > 0 else 1.0


def erasure_panel(ax, result, title: str = "", vmax: float | None = None):
    """One erasure heatmap, y = layer (residual index, 0 at the bottom), x = every token; the colour
    scale tops out at ``vmax`` (default `question_vmax`; brighter cells are drawn saturated)."""
    eff = np.asarray(result.effect, float)
    vmax = question_vmax(result) if vmax is None else vmax
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#dddddd")
    im = ax.imshow(np.ma.masked_invalid(eff), aspect="auto", origin="lower", cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    toks = [("␣" if str(t) == " " else str(t)) for t in result.arrays["tokens"]]
    ax.set_xticks(range(len(toks)), toks, fontsize=6 if len(toks) > 40 else 8)
    ax.tick_params(axis="x", length=0, pad=1)
    a0 = int(result.arrays["answer_start"])
    ax.axvline(a0 - 1.5, color="white", linewidth=0.8, linestyle=":")
    ax.axvline(a0 - 0.5, color="white", linewidth=1.0, linestyle="--")
    ax.set_yticks(range(eff.shape[0]))
    ax.set_ylabel("Layer")
    ax.grid(False)
    cb = ax.figure.colorbar(im, ax=ax, pad=0.01, extend="max" if np.nanmax(eff) > vmax else "neither")
    cb.set_label("Probability difference norm", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return im


def erasure_grid(results: dict, title: str = "", ncols: int = 2, vmax: str | float = "question"):
    """Residual-erasure heatmaps side by side (paper Figs 9, 42, 43): ``results`` maps a panel title
    (which names the model) to an `Erasure` result. vmax='question': each panel's colour scale ends
    at its largest effect on a question token (the two columns right of the dotted line predict the
    answer and saturate); a number: one scale for all."""
    n = len(results)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    first = next(iter(results.values()))
    T = first.effect.shape[1]
    L1 = first.effect.shape[0]
    w = min(9.0, 2.8 + 0.1 * T)
    h = min(4.2, 1.6 + 0.22 * L1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * w, nrows * (h + 0.7)), squeeze=False)
    for ax, (name, res) in zip(axes.ravel(), results.items()):
        erasure_panel(ax, res, title=name, vmax=None if vmax == "question" else float(vmax))
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
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
