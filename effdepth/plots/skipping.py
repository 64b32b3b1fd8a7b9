"""§3.2 figures: skip heatmaps (Figs 3, 5; attention-only and MLP-only skipping), output-change bars (Fig 17), per-example matrices
(Fig 13), the per-position view of one example (static, and interactive with ipywidgets), and the
halves profile the chapter's verdict rests on. Every figure can draw the random-init control beside
the trained model (drawing only: the verdicts are in `effdepth.chapters.skipping`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from effdepth.plots import PALETTE, fit_title, integer_ticks, layer_heatmap, model_label

SETTING = {"current": "current token", "future": "future tokens"}


def _setting(result) -> str:
    params = result.meta.get("params", {})
    mode = params.get("mode", "current")
    part = params.get("part", "layer")
    what = {"layer": "layer", "attention": "attention only", "mlp": "MLP only"}[part]
    if result.measurement == "local_effects":
        return f"local (direct) effect on {SETTING.get(mode, mode)}"
    return f"skipped {what}, effect on {SETTING.get(mode, mode)}"


def skip_heatmap(result, mean: bool = False, ax=None, title: str | None = None):
    """Fig 3: r[s, l], y = layer skipped, x = effect @ layer, colour clipped to [0, 1]; for local
    (direct) effects (Fig 5) the diagonal is masked (grey): it carries no information (methods page §2)."""
    matrix = result.mean_layer_effect if mean else result.layer_effect
    L = matrix.shape[0]
    own = ax is None
    if own:
        size = min(6.2, 3.2 + 0.08 * L)
        fig, ax = plt.subplots(figsize=(size + 1.0, size))
    shown = np.clip(np.asarray(matrix, dtype=float), 0, 1)
    if (
        result.measurement == "local_effects"
    ):  # methods page §2: the diagonal is 1 by construction (0 in the authors' code), masked
        np.fill_diagonal(shown, np.nan)
    layer_heatmap(
        ax, shown, "Effect @ layer", "Layer skipped", "Relative change" + (" (mean)" if mean else ""), origin="upper"
    )
    integer_ticks(ax, range(L), "x")
    integer_ticks(ax, range(L), "y")
    fit_title(ax, title or f"{'Mean' if mean else 'Max'} relative change, {_setting(result)}\n{model_label(result)}")
    if own:
        fig.tight_layout()
        return fig
    return ax


def max_and_mean(result, control=None):
    """Two heatmaps of one result: the paper's max aggregation and the mean (Fig 3 and its mean twin);
    with `control`, a second row of the same for the random-init control."""
    L = result.layer_effect.shape[0]
    size = min(5.0, 2.6 + 0.07 * L)
    rows = [(result, "")] + ([(control, " — random-init control")] if control is not None else [])
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * (size + 1.1), len(rows) * (size + 0.3) + 0.3), squeeze=False)
    for (a, b), (res, tag) in zip(axes, rows):
        skip_heatmap(res, ax=a, title=f"Max over positions, splits, prompts (paper){tag}")
        skip_heatmap(res, mean=True, ax=b, title=f"Mean over positions, splits, prompts{tag}")
    fig.suptitle(f"{_setting(result).capitalize()} — {model_label(result)}")
    fig.tight_layout()
    return fig


def output_bars(result, ax=None, title: str | None = None, controls=()):
    """Fig 17: o[s] = ‖y − ȳ‖₂ per skipped layer (max over positions, splits and prompts); the
    random-init controls' max as faint grey lines."""
    o = result.output_effect
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(np.arange(len(o)), o, width=0.8, color=PALETTE[0], zorder=2, label="max")
    ax.bar(np.arange(len(o)), result.mean_output_effect, width=0.8, color=PALETTE[1], zorder=3, label="mean")
    for i, c in enumerate(controls):
        ax.plot(
            np.arange(len(o)),
            c.output_effect,
            "o-",
            color="#8a8a8a",
            alpha=0.55,
            linewidth=1,
            markersize=3,
            zorder=4,
            label="random-init control (max)" if i == 0 else None,
        )
    top = max([np.nanmax(o)] + [np.nanmax(c.output_effect) for c in controls])
    if top > 0.5 * np.sqrt(2):  # show the ceiling when the bars come near it
        ax.axhline(np.sqrt(2), color="#6f6f6f", linestyle=":", linewidth=1, label="√2: largest possible")
    ax.set_xlabel("Layer skipped")
    ax.set_ylabel("Output change norm")
    integer_ticks(ax, range(len(o)))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or f"Change of the output distribution, {_setting(result)}\n{model_label(result)}")
    if own:
        fig.tight_layout()
        return fig
    return ax


def halves_profile(results: dict, controls: dict, k: int, mean: bool = False):
    """What the halves verdict compares: for each scored skipped layer s (s < L − k), the largest
    effect on the next k layers; trained model in colour, each random-init control faint grey; the
    dotted line splits first from second half. results / controls: {setting name: result / [results]}."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.0), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        M = res.mean_layer_effect if mean else res.layer_effect
        L = M.shape[0]
        s = np.arange(L - k)
        score = lambda E: [np.max(E[i, i + 1 : i + 1 + k]) for i in s]  # noqa: E731, B023  (used within this loop step)
        for j, c in enumerate(controls.get(name, [])):
            ax.plot(
                s,
                score(c.mean_layer_effect if mean else c.layer_effect),
                "o-",
                color="#8a8a8a",
                alpha=0.55,
                markersize=3,
                linewidth=1,
                label="random-init control" if j == 0 else None,
            )
        ax.plot(s, score(M), "o-", color=PALETTE[0], markersize=4, linewidth=1.6, label=model_label(res))
        ax.axvline(L / 2 - 0.5, color="#6f6f6f", linestyle=":", linewidth=1)
        ax.set_xlabel("Layer skipped")
        ax.set_ylabel(f"Max effect on the next {k} layer(s)")
        ax.set_ylim(bottom=0)
        integer_ticks(ax, s)
        ax.set_title(f"{name} ({'mean' if mean else 'max'} aggregation)", fontsize=10)
    axes[0, -1].legend(fontsize=9.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def side_by_side(results: dict, mean: bool = False, ncols: int | None = None):
    """Several heatmaps in a grid (e.g. current vs future, or attention / MLP), titled by their keys."""
    n = len(results)
    ncols = ncols or (2 if n == 4 else n)
    nrows = int(np.ceil(n / ncols))
    L = next(iter(results.values())).layer_effect.shape[0]
    size = min(4.6, 2.6 + 0.07 * L)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (size + 1.1), nrows * (size + 0.3) + 0.4), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, res) in zip(axes.ravel(), results.items()):
        skip_heatmap(res, mean=mean, ax=ax, title=name)
    fig.suptitle(("Mean" if mean else "Max") + f" relative change — {model_label(next(iter(results.values())))}")
    fig.tight_layout()
    return fig


def example_grid(result, n: int = 6, ncols: int = 2):
    """Fig 13: per-example matrices (max over positions and split points) of the first n examples."""
    ex = result.example_layer_effect
    keep = [i for i in range(ex.shape[0]) if not np.isnan(ex[i]).all()][:n]
    ncols = min(ncols, len(keep))
    nrows = int(np.ceil(len(keep) / ncols))
    L = ex.shape[1]
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.1 * ncols + 0.8, 2.8 * nrows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), keep):
        ax.axis("on")
        im = ax.imshow(
            np.clip(ex[i], 0, 1), vmin=0, vmax=1, cmap="viridis", origin="upper", interpolation="nearest", aspect="auto"
        )
        ax.set_title(f"example {i}", fontsize=9)
        ax.grid(False)
        integer_ticks(ax, range(L), "x", max_ticks=6)
        integer_ticks(ax, range(L), "y", max_ticks=6)
    for ax in axes[:, 0]:
        ax.set_ylabel("Layer skipped")
    for ax in axes[-1]:
        ax.set_xlabel("Effect @ layer")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="Relative change", shrink=0.8)
    fig.suptitle(f"Per-example max relative change, {_setting(result)} — {model_label(result)}")
    return fig


def position_effect(result, example: int, skipped: int, tokenizer=None, max_tokens: int = 80):
    """One example, one skipped layer: the relative change of every later layer at every position
    (heatmap, y = affected layer) and the output change per position (bars)."""
    if "position_layer_effect" not in result.arrays:
        raise ValueError("This result has no per-position effects: measure it with positions=True.")
    n = int(result.n_tokens[example])
    show = min(n, max_tokens)
    m = result.position_layer_effect[example, skipped, :, :show]  # [L, T]
    o = result.position_output_effect[example, skipped, :show]
    L = m.shape[0]
    fig, axes = plt.subplots(
        2,
        2,
        figsize=(min(14, max(7, 3.5 + 0.16 * show)), 4.8),
        layout="constrained",
        gridspec_kw={"height_ratios": [3, 1.3], "width_ratios": [1, 0.025]},
    )
    (ax, cax), (bx, spare) = axes
    spare.axis("off")
    im = ax.imshow(
        np.clip(m, 0, 1), vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto", interpolation="nearest"
    )
    ax.grid(False)
    ax.set_ylabel("Effect @ layer")
    integer_ticks(ax, range(L), "y", max_ticks=12)
    ax.axhline(skipped, color="white", linewidth=0.8, linestyle=":")
    fig.colorbar(im, cax=cax, label="Relative change")
    bx.bar(np.arange(show), np.nan_to_num(o), width=0.85, color=PALETTE[0])
    bx.set_ylabel("Output\nchange")
    for a in (ax, bx):
        a.set_xlim(-0.5, show - 0.5)
    ax.set_xticks([])
    labels = None
    if tokenizer is not None and "token_ids" in result.arrays:
        ids = result.token_ids[example, :show]
        labels = [tokenizer.decode([int(t)]).replace(" ", "␣").replace("\n", "↵") or "·" for t in ids]
        bx.set_xticks(range(show), labels, rotation=90, fontsize=9)
    bx.set_xlabel("Token position" if labels is None else "Token")
    ax.set_title(f"Example {example}, layer {skipped} skipped ({_setting(result)})\n{model_label(result)}")
    return fig


def interactive(result, tokenizer=None, enabled: bool = True):
    """An ipywidgets view: pick an example and a skipped layer, see `position_effect` (live only).
    `enabled=False` (the chapter's `interactive` parameter off, as in a rendered book) shows nothing."""
    if not enabled:
        return
    import ipywidgets as widgets
    from IPython.display import display

    P = result.example_layer_effect.shape[0]
    L = result.layer_effect.shape[0]
    ex = widgets.Dropdown(options=[(f"example {i}", i) for i in range(P)], description="Example")
    sk = widgets.IntSlider(0, 0, L - 1, description="Skipped layer")
    out = widgets.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            fig = position_effect(result, ex.value, sk.value, tokenizer)
            plt.show()
            plt.close(fig)

    ex.observe(draw, "value")
    sk.observe(draw, "value")
    display(widgets.VBox([widgets.HBox([ex, sk]), out]))
    draw()
