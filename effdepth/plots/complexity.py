"""§3.3 figures: IG and residual-erasure heatmaps (Fig 6), depth score per level (Fig 7), per-layer
importance per level (Fig 38), and this book's interval plot (per-example scores, interval of the
mean, the fitted slope). Each draws the random-init control beside the trained model; drawing only
(the verdicts are in `effdepth.chapters.complexity`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from effdepth import stats
from effdepth.chapters import complexity as ch
from effdepth.plots import PALETTE, fit_title, integer_ticks, model_label

LAYER_EFFECT, LOGIT_EFFECT = "Layer effect", "Logit effect"


def _token_labels(tokens) -> list[str]:
    out = []
    for t in tokens:
        t = str(t)
        if t == " ":
            t = "␣"
        t = t.replace("\n", "\\n")
        out.append(t if len(t) <= 12 else t[:11] + "…")
    return out


def _token_axis(ax, tokens, answer_start=None, max_labels: int = 70):
    labels = _token_labels(tokens)
    step = max(1, int(np.ceil(len(labels) / max_labels)))
    ticks = list(range(0, len(labels), step))
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=9 if len(labels) > 30 else 8)
    if answer_start is not None:
        ax.axvline(int(answer_start) - 0.5, color="white", linewidth=1.2, linestyle="--")
        ax.axvline(int(answer_start) - 0.5, color="black", linewidth=0.6, linestyle="--")


def erasure_heatmap(ax, result, title: str | None = None):
    """Fig 6b/d: effect [L+1, T], y = residual index / layer (0 at the bottom), x = tokens."""
    eff = np.asarray(result.effect, float)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#dddddd")
    im = ax.imshow(np.ma.masked_invalid(eff), aspect="auto", origin="lower", cmap=cmap, vmin=0, interpolation="nearest")
    ax.set_ylabel("Layer")
    ax.set_xlabel("Token")
    ax.grid(False)
    integer_ticks(ax, np.arange(eff.shape[0]), axis="y", max_ticks=12)
    _token_axis(ax, result.arrays["tokens"], result.arrays.get("answer_start"))
    cb = ax.figure.colorbar(im, ax=ax, pad=0.01)
    cb.set_label("Probability difference norm")
    if title:
        fit_title(ax, title)
    return im


def ig_heatmap(ax, result, title: str | None = None):
    """Fig 6a/c: IG attribution [L, T] with a diverging colormap symmetric around 0, scaled by the
    largest |value| outside position 0 (position 0's attribution can dwarf everything else)."""
    attr = np.asarray(result.attribution, float)
    scale = np.nanmax(np.abs(attr[:, 1:])) if attr.shape[1] > 1 else np.nanmax(np.abs(attr))
    scale = float(scale) if np.isfinite(scale) and scale > 0 else 1.0
    im = ax.imshow(attr, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    ax.set_ylabel("Layer")
    ax.set_xlabel("Token")
    ax.grid(False)
    integer_ticks(ax, np.arange(attr.shape[0]), axis="y", max_ticks=12)
    _token_axis(ax, result.arrays["tokens"], result.arrays.get("answer_start"))
    cb = ax.figure.colorbar(im, ax=ax, pad=0.01)
    cb.set_label("Attribution (IG)")
    if title:
        fit_title(ax, title)
    return im


def fig6(panels: dict, control_panels: dict | None = None):
    """Fig 6: one row per example, IG (left) and residual erasure (right); with `control_panels`
    (same keys, the random-init control's results), the control's row under each example's.

    panels: {name: (ig_result, erasure_result)}; the name is the row's title (e.g. 'Arithmetic').
    """
    rows = []
    for name in panels:
        rows.append((name, panels[name], ""))
        if control_panels and name in control_panels:
            rows.append((name, control_panels[name], ", random-init control"))
    width = max(len(r[1][1].arrays["tokens"]) for r in rows)
    w = float(np.clip(4 + 0.16 * width, 7, 16))
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * w * 0.6, 3.4 * len(rows)), squeeze=False)
    letters = iter("abcdefghijklmnop")
    for i, (name, (ig, er), tag) in enumerate(rows):
        ig_heatmap(axes[i, 0], ig, f"({next(letters)}) {name}{tag}: integrated gradients")
        erasure_heatmap(axes[i, 1], er, f"({next(letters)}) {name}{tag}: residual erasure")
    fig.suptitle(f"Where the answer's information is used — {model_label(rows[0][1][1])}", fontsize=11)
    fig.tight_layout()
    return fig


def _level_names(levels, fmt: str):
    return [fmt.format(lv) for lv in levels]


def _control_mean(controls, attr: str) -> np.ndarray:
    return np.nanmean([np.asarray(getattr(c, attr), float) for c in controls], axis=0)


def depth_bars(results: dict, xlabels: dict | None = None, level_fmt: dict | None = None, controls: dict | None = None):
    """Fig 7: the paper's max-aggregated depth score per level, two bars per level; the random-init
    controls' (mean over seeds) as faint bars beside each."""
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.3), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = results[name]
        ctrl = (controls or {}).get(name) or []
        lv = r.levels
        x = np.arange(len(lv))
        w = 0.2 if ctrl else 0.4
        ax.bar(x - 1.5 * w if ctrl else x - 0.2, r.depth_layer, width=w, color=PALETTE[0], label=LAYER_EFFECT, zorder=2)
        ax.bar(
            x + 0.5 * w if ctrl else x + 0.2, r.depth_output, width=w, color=PALETTE[1], label=LOGIT_EFFECT, zorder=2
        )
        if ctrl:
            ax.bar(
                x - 0.5 * w,
                _control_mean(ctrl, "depth_layer"),
                width=w,
                color=PALETTE[0],
                alpha=0.3,
                label=f"{LAYER_EFFECT}, random-init control",
                zorder=2,
            )
            ax.bar(
                x + 1.5 * w,
                _control_mean(ctrl, "depth_output"),
                width=w,
                color=PALETTE[1],
                alpha=0.3,
                label=f"{LOGIT_EFFECT}, random-init control",
                zorder=2,
            )
        ax.set_xticks(x, _level_names(lv, (level_fmt or {}).get(name, "{}")))
        ax.set_xlabel((xlabels or {}).get(name, "Level"))
        ax.set_ylabel("Depth score")
        L = r.max_E.shape[-1]
        ax.set_ylim(0, L - 1)
        ax.set_title(name)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(
        f"Depth score per difficulty level (max over examples) — {model_label(results[names[0]])}", fontsize=11, y=0.99
    )
    fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), fontsize=9.5, bbox_to_anchor=(0.5, 0.92))
    fig.tight_layout(rect=(0, 0, 1, 0.82))
    return fig


def layer_importance(results: dict, level_fmt: dict | None = None, controls: dict | None = None):
    """Fig 38: per-layer importance per level, from the layer effect (e_s) and the logit effect (o_s);
    the random-init controls' importance (mean over levels and seeds) as a grey dashed line."""
    names = list(results)
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 2.9 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        r = results[name]
        L = r.max_E.shape[-1]
        colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, len(r.levels)))
        ctrl = (controls or {}).get(name) or []
        for j, (attr, what) in enumerate((("layer_importance", LAYER_EFFECT), ("output_importance", LOGIT_EFFECT))):
            arr = getattr(r, attr)
            ax = axes[i, j]
            if ctrl:
                ax.plot(
                    np.arange(L),
                    np.nanmean(_control_mean(ctrl, attr), axis=0),
                    "--",
                    color="#8a8a8a",
                    linewidth=1.4,
                    label="random-init control",
                )
            for k, lv in enumerate(r.levels):
                ax.plot(
                    np.arange(L),
                    arr[k],
                    "o-",
                    color=colors[k],
                    markersize=3.5,
                    linewidth=1.4,
                    label=(level_fmt or {}).get(name, "{}").format(lv),
                )
            ax.set_xlabel("Layer skipped")
            ax.set_ylabel("Importance" if j == 0 else "Output change norm")
            integer_ticks(ax, np.arange(L))
            ax.set_title(f"{name}: {what.lower()}")
            ax.set_ylim(bottom=0)
            if j == 1:
                ax.legend(fontsize=9.5, title="level", title_fontsize=9.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"Per-layer importance per difficulty level — {model_label(results[names[0]])}", fontsize=11)
    fig.tight_layout()
    return fig


def depth_intervals(
    results: dict,
    xlabels: dict | None = None,
    level_fmt: dict | None = None,
    seed: int = 0,
    controls: dict | None = None,
    depth_shift: float | None = None,
    chance: dict | None = None,
):
    """Per-example depth scores (dots), their mean with the t 95 % interval (black), the paper's
    max-aggregated score with its bootstrap interval (open marker; it under-covers), the fitted OLS
    slope (line), and the random-init controls' per-level mean (grey squares). The title gives the
    slope in layers per level with its interval and the equivalence margin, fitted (as the verdict is)
    on the levels the model answers above chance (`chance`: {set: {level: rate}}; None: every level)."""

    margin = ch.DEPTH_SHIFT if depth_shift is None else depth_shift
    names = list(results)
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.5 * len(names)), squeeze=False)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        r = results[name]
        ctrl = (controls or {}).get(name) or []
        lv = list(r.levels)
        x = np.arange(len(lv))
        ex_lv = np.asarray(r.example_level)
        pos = np.array([lv.index(v) for v in ex_lv])
        L = r.max_E.shape[-1]
        xs = ch.level_positions(r)
        for j, which in enumerate(("layer", "output")):
            ax = axes[i, j]
            scores = np.asarray(getattr(r, f"example_depth_{which}"), float)
            correct = r.example_correct.astype(bool)
            jitter = rng.uniform(-0.18, 0.18, len(scores))
            ax.scatter(
                pos[correct] + jitter[correct] - 0.12,
                scores[correct],
                s=9,
                color=PALETTE[2],
                alpha=0.55,
                linewidths=0,
                label="example (correct)",
            )
            ax.scatter(
                pos[~correct] + jitter[~correct] - 0.12,
                scores[~correct],
                s=9,
                color=PALETTE[3],
                alpha=0.55,
                linewidths=0,
                label="example (wrong)",
            )
            ci = np.array(
                [
                    stats.mean_ci(scores[(ex_lv == v) & np.isfinite(scores)])
                    if np.isfinite(scores[ex_lv == v]).any()
                    else (np.nan,) * 3
                    for v in lv
                ]
            )
            ax.errorbar(
                x + 0.12,
                ci[:, 0],
                yerr=np.abs(np.stack([ci[:, 0] - ci[:, 1], ci[:, 2] - ci[:, 0]])),
                fmt="o",
                color="black",
                markersize=5,
                capsize=3,
                label="mean of examples (t 95% CI)",
                zorder=5,
            )
            mx, mci = np.asarray(getattr(r, f"depth_{which}")), np.asarray(getattr(r, f"depth_{which}_ci"))
            ax.errorbar(
                x + 0.3,
                mx,
                yerr=np.abs(np.stack([mx - mci[:, 0], mci[:, 1] - mx])),
                fmt="D",
                mfc="white",
                color=PALETTE[0 if which == "layer" else 1],
                markersize=5,
                capsize=3,
                label="paper: max over examples (bootstrap, under-covers)",
                zorder=5,
            )
            if ctrl:
                cm = [
                    np.nanmean(
                        [
                            np.nanmean(
                                np.asarray(getattr(c, f"example_depth_{which}"), float)[
                                    np.asarray(c.example_level) == v
                                ]
                            )
                            for c in ctrl
                        ]
                    )
                    for v in lv
                ]
                ax.plot(
                    x - 0.3,
                    cm,
                    "s",
                    color="#8a8a8a",
                    markersize=5,
                    alpha=0.8,
                    label="random-init control (mean)",
                    zorder=4,
                )
            tested = ch.tested_levels(r, (chance or {}).get(name) if chance is not None else None)
            sl = ch.slope(r, which, margin, alpha=ch.FLAT.alpha, levels=tested if len(tested) >= 2 else None)
            if np.isfinite(sl["slope"]):
                mean_x, mean_y = np.nanmean(xs[np.isfinite(scores)]), np.nanmean(scores)
                fit_x = np.array([xs.min(), xs.max()])
                # draw the fit on the level-index axis (levels may not be 0, 1, 2, …)
                ax.plot(
                    [0, len(lv) - 1],
                    mean_y + sl["slope"] * (fit_x - mean_x),
                    "-",
                    color="black",
                    alpha=0.4,
                    linewidth=1,
                )
            ax.set_title(
                f"{name}: {(LAYER_EFFECT if which == 'layer' else LOGIT_EFFECT).lower()}\n"
                + (
                    f"slope {sl['slope']:.2f} [{sl['tost_lo']:.2f}, {sl['tost_hi']:.2f}] layers/level (flat: ±{sl['margin_layers']:.2f})"
                    if len(tested) >= 2
                    else "not testable: fewer than two levels above chance"
                ),
                fontsize=9,
            )
            ax.set_xticks(x, _level_names(lv, (level_fmt or {}).get(name, "{}")))
            ax.set_xlabel((xlabels or {}).get(name, "Level"))
            ax.set_ylabel("Depth score")
            ax.set_ylim(-0.2, L - 0.8)
            if i == 0 and j == 1:
                ax.legend(fontsize=9.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"Depth score per example, intervals and slope — {model_label(results[names[0]])}", fontsize=11)
    fig.tight_layout()
    return fig
