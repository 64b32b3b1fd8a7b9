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
    if result.measurement == "local_effects":
        return f"local (direct) effect on {SETTING.get(mode, mode)}"
    return f"skipped {what}, effect on {SETTING.get(mode, mode)}"


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


def max_and_mean(result):
    """Two heatmaps of one result: the paper's max aggregation and the mean (Fig 3 and its mean twin)."""
    L = result.layer_effect.shape[0]
    size = min(5.0, 2.6 + 0.07 * L)
    fig, (a, b) = plt.subplots(1, 2, figsize=(2 * (size + 1.1), size + 0.5))
    skip_heatmap(result, ax=a, title="Max over positions, splits, prompts (paper)")
    skip_heatmap(result, mean=True, ax=b, title="Mean over positions, splits, prompts")
    fig.suptitle(f"{_setting(result).capitalize()} — {model_label(result)}")
    fig.tight_layout()
    return fig


def output_bars(result, ax=None, title: str | None = None):
    """Fig 17: o[s] = ‖y − ȳ‖₂ per skipped layer (max over positions, splits and prompts)."""
    o = result.output_effect
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(np.arange(len(o)), o, width=0.8, color=PALETTE[0], zorder=2, label="max")
    ax.bar(np.arange(len(o)), result.mean_output_effect, width=0.8, color=PALETTE[1], zorder=3, label="mean")
    if np.nanmax(o) > 0.5 * np.sqrt(2):  # show the ceiling when the bars come near it
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


def example_grid(result, n: int = 6, ncols: int = 3):
    """Fig 13: per-example matrices (max over positions and split points) of the first n examples."""
    ex = result.example_layer_effect
    keep = [i for i in range(ex.shape[0]) if not np.isnan(ex[i]).all()][:n]
    ncols = min(ncols, len(keep))
    nrows = int(np.ceil(len(keep) / ncols))
    L = ex.shape[1]
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols + 0.8, 2.8 * nrows + 0.6), squeeze=False, layout="constrained")
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


def compare(first: float, second: float) -> str:
    """'much less' (second < first / 2), 'less' or 'not less': how the second half compares."""
    if not np.isfinite(second) or not np.isfinite(first):
        return "n/a"
    return "much less" if second < 0.5 * first else ("less" if second < first else "not less")


def describe(result) -> dict:
    """Numbers the prose quotes. For each skipped layer s, `later[s]` is the largest effect on a
    strictly later layer (max over l > s; `later_mean` likewise from the mean matrix); halves are
    split at L // 2, the last layer belongs to neither (it has no later layer). In the future
    setting the last layer's output effect is 0 by construction (nothing after it carries its change
    to later tokens), so output halves leave it out there."""
    E, M = result.layer_effect, result.mean_layer_effect
    L = E.shape[0]
    later = np.array([E[s, s + 1 :].max() if s < L - 1 else np.nan for s in range(L)])
    later_mean = np.array([M[s, s + 1 :].max() if s < L - 1 else np.nan for s in range(L)])
    half = L // 2
    future = result.meta.get("params", {}).get("mode") == "future"
    o = result.output_effect[: L - 1] if future else result.output_effect
    om = result.mean_output_effect[: L - 1] if future else result.mean_output_effect
    top = np.nanmax(later) if L > 1 else np.nan
    first_weak = next((s for s in range(L - 1) if all(later[t] < 0.5 * top for t in range(s, L - 1))), None)
    upper = E[np.triu_indices(L, 1)]
    f = lambda v, a, b: float(np.nanmean(v[a:b])) if b > a else float("nan")  # noqa: E731
    out = {
        "n_layers": L,
        "later_effect": later,
        "later_mean_effect": later_mean,
        "first_half_later": f(later, 0, half),
        "second_half_later": f(later, half, L - 1),
        "first_half_later_mean": f(later_mean, 0, half),
        "second_half_later_mean": f(later_mean, half, L - 1),
        "first_half_output": f(o, 0, half),
        "second_half_output": f(o, half, len(o)),
        "first_half_output_mean": f(om, 0, half),
        "second_half_output_mean": f(om, half, len(om)),
        "strongest_output_layer": int(np.argmax(o)),
        "first_weak": first_weak,  # from here on every skipped layer changes later layers < half the max
        "saturated": float(np.mean(upper >= 1)) if upper.size else float("nan"),  # share of r[s, l>s] ≥ 1
        "diag": float(np.mean(np.diag(E))),
    }
    out["verdict_max"] = compare(out["first_half_later"], out["second_half_later"])
    out["verdict_mean"] = compare(out["first_half_later_mean"], out["second_half_later_mean"])
    return out


_PHRASE = {"much less": "much less", "less": "somewhat less", "not less": "no less", "n/a": "(too few layers to tell)"}


def verdict(facts: dict, what: str) -> str:
    """One sentence comparing second- with first-half layers under both aggregations, against the paper."""
    vm, vn = facts["verdict_max"], facts["verdict_mean"]
    if vm == vn == "much less":
        return f"As in the paper, second-half layers matter much less for {what}, with either aggregation."
    if vm in ("not less", "n/a") and vn in ("not less", "n/a"):
        return f"Unlike the paper's Llama, second-half layers matter as much as or more than first-half ones for {what} here."
    return (
        f"By the paper's max aggregation second-half layers matter {_PHRASE[vm]} for {what} than first-half ones; "
        f"by the mean, {_PHRASE[vn]}. The paper finds much less in Llama 3.1 70B."
    )


def saturation_note(facts: dict) -> str:
    """A sentence when most above-diagonal maxima reach 1 (the max matrix then cannot rank layers)."""
    if not facts["saturated"] > 0.5:
        return ""
    return (
        f" {facts['saturated']:.0%} of the entries right of the diagonal reach the top of the colour scale "
        "(relative change ≥ 1): for some token, every later layer's write changes completely whichever layer is "
        "skipped, so the max matrix cannot rank layers here and the mean matrix is the informative one."
    )
