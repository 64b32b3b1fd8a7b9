"""§3.2 figures: skip heatmaps (Figs 3, 5, 23–29), output-change bars (Fig 17), per-example matrices
(Fig 13) and the per-position view of one example (static, and interactive with ipywidgets)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import PALETTE, integer_ticks, layer_heatmap, model_label

SETTING = {"current": "current token", "future": "future tokens"}


def _setting(result) -> str:
    params = result.meta.get("params", {})
    mode = params.get("mode", "current")
    part = params.get("part", "layer")
    what = {"layer": "layer", "attention": "attention only", "mlp": "MLP only"}[part]
    kind = "local effect" if result.measurement == "local_effects" else "skipped " + what
    return f"{kind}, effect on {SETTING.get(mode, mode)}"


def skip_heatmap(result, mean: bool = False, ax=None, title: str | None = None):
    """Fig 3: r[s, l], y = layer skipped, x = effect @ layer, colour clipped to [0, 1]."""
    matrix = result.mean_layer_effect if mean else result.layer_effect
    L = matrix.shape[0]
    own = ax is None
    if own:
        size = min(6.2, 3.2 + 0.08 * L)
        fig, ax = plt.subplots(figsize=(size + 1.0, size))
    layer_heatmap(ax, np.clip(matrix, 0, 1), "Effect @ layer", "Layer skipped", "Relative change" + (" (mean)" if mean else ""), origin="upper")
    integer_ticks(ax, range(L), "x")
    integer_ticks(ax, range(L), "y")
    ax.set_title(title or f"{'Mean' if mean else 'Max'} relative change, {_setting(result)}\n{model_label(result)}")
    if own:
        fig.tight_layout()
        return fig
    return ax


def output_bars(result, ax=None, title: str | None = None):
    """Fig 17: o[s] = ‖y − ȳ‖₂ per skipped layer (max over positions, splits and prompts)."""
    o = result.output_effect
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.bar(np.arange(len(o)), o, width=0.8, color=PALETTE[0], zorder=2, label="max")
    ax.bar(np.arange(len(o)), result.mean_output_effect, width=0.8, color=PALETTE[1], zorder=3, label="mean")
    ax.set_xlabel("Layer skipped")
    ax.set_ylabel("Output change norm")
    integer_ticks(ax, range(len(o)))
    ax.legend(loc="upper right")
    ax.set_title(title or f"Change of the output distribution, {_setting(result)}\n{model_label(result)}")
    if own:
        fig.tight_layout()
        return fig
    return ax


def side_by_side(results: dict, mean: bool = False):
    """Several heatmaps in one row (e.g. current vs future, or layer / attention / MLP)."""
    n = len(results)
    L = next(iter(results.values())).layer_effect.shape[0]
    size = min(5.0, 2.6 + 0.07 * L)
    fig, axes = plt.subplots(1, n, figsize=(n * (size + 1.0), size + 0.4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        skip_heatmap(res, mean=mean, ax=ax, title=name)
    fig.suptitle(model_label(next(iter(results.values()))), y=1.0)
    fig.tight_layout()
    return fig


def example_grid(result, n: int = 6, ncols: int = 3):
    """Fig 13: per-example matrices (max over positions and split points) of the first n examples."""
    ex = result.example_layer_effect
    keep = [i for i in range(ex.shape[0]) if not np.isnan(ex[i]).all()][:n]
    ncols = min(ncols, len(keep))
    nrows = int(np.ceil(len(keep) / ncols))
    L = ex.shape[1]
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols + 0.8, 2.7 * nrows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), keep):
        ax.axis("on")
        im = ax.imshow(np.clip(ex[i], 0, 1), vmin=0, vmax=1, cmap="viridis", origin="upper", interpolation="nearest", aspect="auto")
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
        2, 2, figsize=(min(14, max(7, 3.5 + 0.16 * show)), 4.8), layout="constrained",
        gridspec_kw={"height_ratios": [3, 1.3], "width_ratios": [1, 0.025]},
    )
    (ax, cax), (bx, spare) = axes
    spare.axis("off")
    im = ax.imshow(np.clip(m, 0, 1), vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto", interpolation="nearest")
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
        bx.set_xticks(range(show), labels, rotation=90, fontsize=7)
    bx.set_xlabel("Token position" if labels is None else "Token")
    ax.set_title(f"Example {example}, layer {skipped} skipped ({_setting(result)})\n{model_label(result)}")
    return fig


def interactive(result, tokenizer=None):
    """An ipywidgets view: pick an example and a skipped layer, see `position_effect` (live only)."""
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


def describe(result) -> dict:
    """Numbers the prose quotes. For each skipped layer s, `later[s]` is the largest effect on a
    strictly later layer (max over l > s); halves are split at L // 2."""
    E = result.layer_effect
    L = E.shape[0]
    later = np.array([E[s, s + 1 :].max() if s < L - 1 else np.nan for s in range(L)])
    half = L // 2
    o = result.output_effect
    weak = [s for s in range(L - 1) if later[s] < 0.5 * np.nanmax(later)]
    first_weak = next((s for s in range(L - 1) if all(later[t] < 0.5 * np.nanmax(later) for t in range(s, L - 1))), None)
    return {
        "n_layers": L,
        "later_effect": later,
        "first_half_later": float(np.nanmean(later[:half])),
        "second_half_later": float(np.nanmean(later[half : L - 1])) if L - 1 > half else float("nan"),
        "first_half_output": float(o[:half].mean()),
        "second_half_output": float(o[half:].mean()),
        "strongest_output_layer": int(np.argmax(o)),
        "weak_layers": weak,
        "first_weak": first_weak,  # from here on every skipped layer changes later layers < half the max
        "diag": float(np.mean(np.diag(E))),
    }
