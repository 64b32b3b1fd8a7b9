"""§3.5 figures: accuracy of the architecture × objective grid, residual-erasure heatmaps side by
side (Figs 9, 42, 43), depth use per model, and the fine-tuning before/after view (Figs 39–41)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effdepth.plots import PALETTE, panel_grid
from effdepth.plots.skipping import skip_heatmap

ARCH_LABEL = {"transformer": "Transformer", "moeut": "MoEUT"}
OBJ_LABEL = {"all": "all-token loss", "answer": "answer-only loss"}
OBJ_COLOR = {"all": PALETTE[0], "answer": PALETTE[1]}


def cell_label(arch: str, objective: str, seed: int | None = None) -> str:
    s = f"{ARCH_LABEL.get(arch, arch)}, {OBJ_LABEL.get(objective, objective)}"
    return s if seed is None else f"{s} (seed {seed})"


def accuracy_bars(
    frame,
    splits=("interpolate", "extrapolate"),
    module: str = "all",
    title: str = "",
    baseline: dict | None = None,
    control=None,
):
    """Exact-match accuracy per architecture (groups) and objective (colours): bars = mean over seeds,
    error bars = min–max, dots = the seeds. ``frame``: `Grid.accuracy_frame()`. ``baseline``:
    `objective.baseline_accuracy(spec)`, drawn as a dashed line (always the most frequent answer).
    ``control``: `objective.control_accuracy(grid)`, the untrained models' mean, a faint grey bar
    behind each architecture's pair."""
    f = frame[frame.module == module]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.4), squeeze=False, sharey=True)
    archs = [a for a in ("transformer", "moeut") if a in set(f.arch)]
    for ax, split in zip(axes[0], splits):
        g = f[f.split == split]
        if control is not None and len(control):
            cg = control[(control.split == split) & (control.module == module)]
            for i, arch in enumerate(archs):
                v = cg[cg.arch == arch].accuracy.to_numpy()
                if len(v):
                    ax.bar(
                        i,
                        v.mean(),
                        width=0.86,
                        color="0.85",
                        zorder=1,
                        label="untrained (random init)" if i == 0 else None,
                    )
        for j, obj in enumerate(("all", "answer")):
            for i, arch in enumerate(archs):
                v = g[(g.arch == arch) & (g.objective == obj)].accuracy.to_numpy()
                if not len(v):
                    continue
                x = i + (j - 0.5) * 0.38
                ax.bar(
                    x, v.mean(), width=0.36, color=OBJ_COLOR[obj], zorder=2, label=OBJ_LABEL[obj] if i == 0 else None
                )
                ax.errorbar(
                    x,
                    v.mean(),
                    yerr=[[v.mean() - v.min()], [v.max() - v.mean()]],
                    color="black",
                    capsize=3,
                    linewidth=0.9,
                    zorder=3,
                )
                ax.scatter(np.full(len(v), x), v, s=10, color="black", zorder=4)
        top = float(f.accuracy.max())
        if baseline is not None and module in baseline.get(split, {}):
            b = baseline[split][module]
            ax.axhline(
                b,
                color="gray",
                linestyle="--",
                linewidth=1,
                zorder=5,
                label="most frequent answer" if split == splits[0] else None,
            )
            top = max(top, b)
        ax.set_xticks(range(len(archs)), [ARCH_LABEL[a] for a in archs])
        ax.set_title(f"{split} ({'all modules' if module == 'all' else module})")
        ax.set_ylabel("Exact match")
        ax.set_ylim(0, max(0.05, top * 1.15))
    axes[0][0].legend(loc="upper left", fontsize=9.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def module_table(frame, split: str):
    """Exact match in percent, mean ± sd over seeds, per module (rows) and model (columns), as a
    formatted DataFrame (percent like the accuracy table above it)."""

    f = frame[frame.split == split]
    g = f.groupby(["module", "arch", "objective"], sort=False).accuracy
    mean, sd = g.mean(), g.std(ddof=1)
    out = {}
    for arch in ("transformer", "moeut"):
        for obj in ("all", "answer"):
            col = cell_label(arch, obj)
            out[col] = {
                m: f"{100 * mean[(m, arch, obj)]:.0f} ± {100 * sd[(m, arch, obj)]:.0f} %"
                for m in dict.fromkeys(f.module)
                if (m, arch, obj) in mean.index
            }
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
    im = ax.imshow(
        np.ma.masked_invalid(eff), aspect="auto", origin="lower", cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest"
    )
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
    cb.set_label("Probability difference norm", fontsize=9.5)
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


def depth_use_bars(frame, columns=("depth_layer", "depth_output", "erasure_depth"), control=None):
    """Depth use per model: bars = mean over seeds, error bars = min–max, dots = seeds.
    ``frame``: `objective.depth_use(...)` (one row per arch, objective, seed). ``control``:
    `objective.control_depth_use(...)` (one row per arch, seed), a faint grey bar behind each
    architecture's pair with its seeds as grey dots."""
    names = {
        "depth_layer": "Depth score (layer effect)",
        "depth_output": "Depth score (logit effect)",
        "erasure_depth": "Erasure depth",
    }
    fig, axes = panel_grid(len(columns), 4.2, 3.3)
    archs = [a for a in ("transformer", "moeut") if a in set(frame.arch)]
    for ax, col in zip(axes, columns):
        if control is not None and col in control:
            for i, arch in enumerate(archs):
                v = control[control.arch == arch][col].dropna().to_numpy()
                if len(v):
                    ax.bar(
                        i,
                        v.mean(),
                        width=0.86,
                        color="0.85",
                        zorder=1,
                        label="untrained (random init)" if i == 0 else None,
                    )
                    ax.scatter(np.full(len(v), i + 0.4), v, s=8, color="0.5", zorder=4)
        for j, obj in enumerate(("all", "answer")):
            for i, arch in enumerate(archs):
                v = frame[(frame.arch == arch) & (frame.objective == obj)][col].dropna().to_numpy()
                if not len(v):
                    continue
                x = i + (j - 0.5) * 0.38
                ax.bar(
                    x, v.mean(), width=0.36, color=OBJ_COLOR[obj], zorder=2, label=OBJ_LABEL[obj] if i == 0 else None
                )
                ax.errorbar(
                    x,
                    v.mean(),
                    yerr=[[v.mean() - v.min()], [v.max() - v.mean()]],
                    color="black",
                    capsize=3,
                    linewidth=0.9,
                    zorder=3,
                )
                ax.scatter(np.full(len(v), x), v, s=10, color="black", zorder=4)
        ax.set_xticks(range(len(archs)), [ARCH_LABEL[a] for a in archs])
        ax.set_ylabel("Fraction of depth")
        ax.set_title(names.get(col, col))
        ax.set_ylim(0, 1)
    axes[0].legend(loc="upper left", fontsize=9.5)
    fig.tight_layout()
    return fig


def future_effects(results: dict, title: str = ""):
    """Future-setting skip heatmaps side by side (paper Figs 39–41: before and after fine-tuning).
    ``results`` maps a panel title (naming the model) to a `SkipEffects` result."""
    n = len(results)
    L = next(iter(results.values())).layer_effect.shape[0]
    size = min(4.2, 2.4 + 0.1 * L)
    fig, axes = panel_grid(n, size + 1.0, size + 0.9)
    for ax, (name, res) in zip(axes, results.items()):
        skip_heatmap(res, ax=ax, title=name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(histories: dict, title: str = ""):
    """Training loss per step (each model's own objective) for the models of one seed."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (name, hist) in enumerate(histories.items()):
        ax.plot(
            [h["step"] for h in hist],
            [h["loss"] for h in hist],
            label=name,
            color=PALETTE[i % len(PALETTE)],
            linestyle="-" if "all" in name else "--",
        )
    ax.set_xlabel("Step")
    ax.set_ylabel("Training loss (nats)")
    ax.set_yscale("log")
    ax.legend(fontsize=9.5)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def accuracy_table(summary, base: dict, n_seeds: int, control=None):
    """Exact match, % (mean ± sd over seeds, min–max) per split (rows) and model (columns), with the
    most-frequent-answer baseline and the untrained controls' mean. ``summary``: `Grid.summary(...)`."""

    def cell(split, module, arch, obj):
        r = summary[
            (summary.split == split) & (summary.module == module) & (summary.arch == arch) & (summary.objective == obj)
        ]
        if not len(r):
            return "–"
        r = r.iloc[0]
        sd = "" if np.isnan(r["sd"]) else f" ± {100 * r['sd']:.0f}"
        return f"{100 * r['mean']:.0f}{sd} ({100 * r['lo']:.0f}–{100 * r['hi']:.0f})"

    rows = {}
    for split in ("interpolate", "extrapolate"):
        for module in ("all", "mul_div_multiple_longer") if split == "extrapolate" else ("all",):
            name = f"{split}, {'all modules' if module == 'all' else module}"
            rows[name] = {
                cell_label(a, o): cell(split, module, a, o) for a in ("transformer", "moeut") for o in ("all", "answer")
            }
            rows[name]["most frequent answer"] = f"{100 * base[split].get(module, float('nan')):.0f}"
            if control is not None and len(control):
                c = control[(control.split == split) & (control.module == module)]
                rows[name]["untrained (random init)"] = f"{100 * c.accuracy.mean():.0f}" if len(c) else "–"
    table = pd.DataFrame(rows).T
    table.index.name = f"exact match, % (mean ± sd over {n_seeds} seeds, min–max)"
    return table


def depth_table(use, control, n_seeds: int):
    """Depth measures (rows) per model and for the untrained controls (columns): mean ± sd over seeds."""

    def fmt(m, s):
        return "–" if not np.isfinite(m) else f"{m:.2f}" if not np.isfinite(s) else f"{m:.2f} ± {s:.2f}"

    rows = []
    for col, name in (
        ("depth_layer", "depth score (layer effect)"),
        ("depth_output", "depth score (logit effect)"),
        ("erasure_depth", "erasure depth"),
    ):
        g = use.groupby(["arch", "objective"], sort=False)[col]
        row = {cell_label(a, o): fmt(m, s) for (a, o), m, s in zip(g.mean().index, g.mean(), g.std(ddof=1))}
        if control is not None and col in control:
            cg = control.groupby("arch", sort=False)[col]
            row |= {
                f"{ARCH_LABEL[a]}, random init": fmt(m, s)
                for a, m, s in zip(cg.mean().index, cg.mean(), cg.std(ddof=1))
            }
        rows.append(row | {"": name})
    return pd.DataFrame(rows).set_index("").rename_axis(f"fraction of depth, mean ± sd over {n_seeds} seeds")


def distance_table(E: dict, distance):
    """Pairwise distances of future-effect matrices {name: matrix} (``distance(a, b)``)."""

    names = list(E)
    dist = pd.DataFrame({a: {b: distance(E[a], E[b]) for b in names} for a in names})
    dist.index.name = "mean |difference| of the future-effect matrices (l > s)"
    return dist.round(3)


def finetune_table(ft_use: dict, ft_reports: dict, grid, seed: int):
    """Depth scores and accuracies of the fine-tuning analogue's models (rows)."""

    pct = lambda x: f"{100 * x:.0f} %"  # noqa: E731
    rows = {k: {"depth score (layer)": f"{v[0]:.2f}", "depth score (logit)": f"{v[1]:.2f}"} for k, v in ft_use.items()}
    for k, rep in ft_reports.items():
        rows[k]["extrapolation accuracy"] = pct(rep["accuracy"]["extrapolate"]["all"])
        rows[k]["interpolation accuracy"] = pct(rep["accuracy"]["interpolate"]["all"])
    for k, (a, o) in (
        ("from scratch, all-token loss", ("transformer", "all")),
        ("from scratch, answer-only loss", ("transformer", "answer")),
    ):
        if k in rows and (a, o, seed) in grid.folders:
            rep = grid.report(a, o, seed)
            rows[k]["extrapolation accuracy"] = pct(rep["accuracy"]["extrapolate"]["all"])
            rows[k]["interpolation accuracy"] = pct(rep["accuracy"]["interpolate"]["all"])
    return pd.DataFrame(rows).T.fillna("–")
