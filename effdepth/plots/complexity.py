"""§3.3 figures: IG and residual-erasure heatmaps (Fig 6), depth score per level (Fig 7), per-layer
importance per level (Fig 38), and this book's interval plot (per-example scores, bootstrap 95 %
intervals, Spearman trend)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import PALETTE, integer_ticks, model_label

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
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=7 if len(labels) > 30 else 8)
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
        ax.set_title(title)
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
        ax.set_title(title)
    return im


def fig6(panels: dict):
    """Fig 6: one row per example, IG (left) and residual erasure (right).

    panels: {name: (ig_result, erasure_result)}; the name is the row's title (e.g. 'Arithmetic').
    """
    rows = list(panels)
    widths = [max(len(panels[r][1].arrays["tokens"]) for r in rows)]
    w = float(np.clip(4 + 0.16 * widths[0], 7, 16))
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * w * 0.6, 3.4 * len(rows)), squeeze=False)
    letters = iter("abcdefgh")
    for i, name in enumerate(rows):
        ig, er = panels[name]
        ig_heatmap(axes[i, 0], ig, f"({next(letters)}) {name}: integrated gradients")
        erasure_heatmap(axes[i, 1], er, f"({next(letters)}) {name}: residual erasure")
    fig.suptitle(f"Where the answer's information is used — {model_label(panels[rows[0]][1])}", fontsize=11)
    fig.tight_layout()
    return fig


def _level_names(levels, fmt: str):
    return [fmt.format(lv) for lv in levels]


def depth_bars(results: dict, xlabels: dict | None = None, level_fmt: dict | None = None):
    """Fig 7: the paper's max-aggregated depth score per level, two bars per level."""
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.3), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = results[name]
        lv = r.levels
        x = np.arange(len(lv))
        ax.bar(x - 0.2, r.depth_layer, width=0.4, color=PALETTE[0], label=LAYER_EFFECT, zorder=2)
        ax.bar(x + 0.2, r.depth_output, width=0.4, color=PALETTE[1], label=LOGIT_EFFECT, zorder=2)
        ax.set_xticks(x, _level_names(lv, (level_fmt or {}).get(name, "{}")))
        ax.set_xlabel((xlabels or {}).get(name, "Level"))
        ax.set_ylabel("Depth score")
        L = r.max_E.shape[-1]
        ax.set_ylim(0, L - 1)
        ax.set_title(name)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"Depth score per difficulty level (max over examples) — {model_label(results[names[0]])}", fontsize=11, y=0.99)
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=9, bbox_to_anchor=(0.5, 0.92))
    fig.tight_layout(rect=(0, 0, 1, 0.85))
    return fig


def layer_importance(results: dict, level_fmt: dict | None = None):
    """Fig 38: per-layer importance per level, from the layer effect (e_s) and the logit effect (o_s)."""
    names = list(results)
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 2.9 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        r = results[name]
        L = r.max_E.shape[-1]
        colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, len(r.levels)))
        for j, (arr, what) in enumerate(((r.layer_importance, LAYER_EFFECT), (r.output_importance, LOGIT_EFFECT))):
            ax = axes[i, j]
            for k, lv in enumerate(r.levels):
                ax.plot(np.arange(L), arr[k], "o-", color=colors[k], markersize=3.5, linewidth=1.4, label=(level_fmt or {}).get(name, "{}").format(lv))
            ax.set_xlabel("Layer skipped")
            ax.set_ylabel("Importance" if j == 0 else "Output change norm")
            integer_ticks(ax, np.arange(L))
            ax.set_title(f"{name}: {what.lower()}")
            ax.set_ylim(bottom=0)
            if j == 1:
                ax.legend(fontsize=8, title="level", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"Per-layer importance per difficulty level — {model_label(results[names[0]])}", fontsize=11)
    fig.tight_layout()
    return fig


def depth_intervals(results: dict, xlabels: dict | None = None, level_fmt: dict | None = None, seed: int = 0):
    """Per-example depth scores (dots), their mean with a bootstrap 95 % interval (black), the
    paper's max-aggregated score with its bootstrap interval (open marker); the title gives
    Spearman's ρ across levels with its interval."""
    names = list(results)
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.5 * len(names)), squeeze=False)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        r = results[name]
        lv = list(r.levels)
        x = np.arange(len(lv))
        ex_lv = np.asarray(r.example_level)
        pos = np.array([lv.index(v) for v in ex_lv])
        L = r.max_E.shape[-1]
        for j, which in enumerate(("layer", "output")):
            ax = axes[i, j]
            scores = r.arrays[f"example_depth_{which}"]
            correct = r.example_correct.astype(bool)
            jitter = rng.uniform(-0.18, 0.18, len(scores))
            ax.scatter(pos[correct] + jitter[correct] - 0.12, scores[correct], s=9, color=PALETTE[2], alpha=0.55, linewidths=0, label="example (correct)")
            ax.scatter(pos[~correct] + jitter[~correct] - 0.12, scores[~correct], s=9, color=PALETTE[3], alpha=0.55, linewidths=0, label="example (wrong)")
            mean, ci = r.arrays[f"example_mean_{which}"], r.arrays[f"example_mean_{which}_ci"]
            ax.errorbar(x + 0.12, mean, yerr=np.abs(np.stack([mean - ci[:, 0], ci[:, 1] - mean])), fmt="o", color="black", markersize=5, capsize=3, label="mean of examples (95% CI)", zorder=5)
            mx, mci = r.arrays[f"depth_{which}"], r.arrays[f"depth_{which}_ci"]
            ax.errorbar(x + 0.3, mx, yerr=np.abs(np.stack([mx - mci[:, 0], mci[:, 1] - mx])), fmt="D", mfc="white", color=PALETTE[0 if which == "layer" else 1], markersize=5, capsize=3, label="max-aggregated (95% CI)", zorder=5)
            t = r.trend(which)
            ax.set_title(
                f"{name}: {(LAYER_EFFECT if which == 'layer' else LOGIT_EFFECT).lower()}\n"
                f"Spearman ρ = {t['rho']:.2f} [{t['lo']:.2f}, {t['hi']:.2f}], p = {t['p']:.2g}: {t['verdict']}",
                fontsize=9.5,
            )
            ax.set_xticks(x, _level_names(lv, (level_fmt or {}).get(name, "{}")))
            ax.set_xlabel((xlabels or {}).get(name, "Level"))
            ax.set_ylabel("Depth score")
            ax.set_ylim(-0.2, L - 0.8)
            if i == 0 and j == 1:
                ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"Depth score per example, intervals and trend — {model_label(results[names[0]])}", fontsize=11)
    fig.tight_layout()
    return fig


def describe(results: dict) -> dict:
    """Numbers the chapter's prose quotes, per dataset: scores per level, their range, the trends."""
    out = {}
    for name, r in results.items():
        L = r.max_E.shape[-1]
        d = {
            "n_layers": L,
            "levels": [lv.item() if hasattr(lv, "item") else lv for lv in r.levels],
            "accuracy": [float(a) for a in r.accuracy],
            "depth_layer": [float(v) for v in r.depth_layer],
            "depth_output": [float(v) for v in r.depth_output],
            "trend_layer": r.trend("layer"),
            "trend_output": r.trend("output"),
            "trend_layer_correct": r.trend("layer", correct_only=True),
            "range_layer": float(np.nanmax(r.depth_layer) - np.nanmin(r.depth_layer)),
            "range_output": float(np.nanmax(r.depth_output) - np.nanmin(r.depth_output)),
        }
        d["shift_layer"] = float(r.example_mean_layer[-1] - r.example_mean_layer[0])  # hardest minus easiest level
        d["shift_output"] = float(r.example_mean_output[-1] - r.example_mean_output[0])
        d["range_layer_rel"] = d["range_layer"] / max(L - 1, 1)
        d["range_output_rel"] = d["range_output"] / max(L - 1, 1)
        out[name] = d
    return out


def describe_example(ig, er, frac: float = 0.1) -> dict:
    """Numbers for the prose under Fig 6, from one example's IG and erasure results.

    last_layer_question: the highest residual index at which erasing some question token (positions
    1 … answer_start-2, i.e. neither the front nor the last prompt token, whose own prediction is
    scored) still changes the answer by at least `frac` of the largest such change; ig_second_half:
    the share of Σ|attribution| (position 0 left out) in layers ≥ L/2; ig_gap_rel: the largest
    completeness gap over layers relative to the largest |P(x) − P(x')| over layers.
    """
    eff = np.asarray(er.effect, float)
    a0 = int(er.answer_start)
    q = eff[:, 1 : max(a0 - 1, 1)]
    out = {"n_layers": eff.shape[0] - 1, "max_question_effect": float(np.nanmax(q)) if q.size else float("nan")}
    if q.size and np.nanmax(q) > 0:
        rows = np.flatnonzero(np.nanmax(q, axis=1) >= frac * np.nanmax(q))
        out["last_layer_question"] = int(rows.max())
    else:
        out["last_layer_question"] = None
    attr = np.abs(np.asarray(ig.attribution, float)[:, 1:])
    L = attr.shape[0]
    out["ig_second_half"] = float(attr[L // 2 :].sum() / attr.sum()) if attr.sum() > 0 else float("nan")
    delta = float(ig.p_input) - np.asarray(ig.p_baseline, float)
    out["ig_gap_max"] = float(np.nanmax(np.abs(ig.completeness_gap)))
    out["ig_delta_max"] = float(np.nanmax(np.abs(delta)))
    out["ig_gap_rel"] = out["ig_gap_max"] / max(out["ig_delta_max"], 1e-12)
    out["p_input"] = float(ig.p_input)
    out["n_answer_tokens"] = int(len(ig.token_ids) - int(ig.answer_start))
    out["ig_top_layer"] = int(np.argmax(attr.sum(-1)))
    return out
