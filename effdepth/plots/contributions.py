"""§3.1 figures: relative contributions (Fig 2a), cosines (Fig 2b), norms (Fig 15), cos(h_l, h_{l+1}) (Fig 16)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import integer_ticks, model_label, unstacked_bars


def _layers(frame):
    return frame.index.to_numpy()


def _writes_figure(result, stem: str, ylabel: str, title: str):
    """Attention and MLP bars of the columns `<stem>_attn` and `<stem>_mlp`, the whole layer
    (`<stem>_layer`) as black dots."""
    f = result.to_frame()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    unstacked_bars(ax, _layers(f), {"Attention": f[f"{stem}_attn"], "MLP": f[f"{stem}_mlp"]}, ylabel=ylabel)
    ax.plot(_layers(f), f[f"{stem}_layer"], "o", color="black", markersize=4, zorder=20, label="Attention + MLP (layer)")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=9, borderaxespad=0.2)
    ax.set_title(f"{title} — {model_label(result)}", pad=22)
    fig.tight_layout()
    return fig


def relative_contribution(result, use_max: bool = False):
    """Fig 2a: ‖a_l‖/‖h_l‖, ‖m_l‖/‖h_l + a_l‖ and ‖a_l + m_l‖/‖h_l‖ per layer (unstacked bars)."""
    stem = "max_rel" if use_max else "rel"
    ylabel = ("Max" if use_max else "Mean") + " relative contribution"
    fig = _writes_figure(result, stem, ylabel, "Relative contribution to the residual")
    layer = result.to_frame()[f"{stem}_layer"].to_numpy()
    if len(layer) > 2 and layer.max() > 10 * np.median(layer[1:]):  # one layer (usually 0, writing onto the bare embedding) dwarfs the rest
        ax = fig.axes[0]
        ax.set_yscale("log")
        ax.set_ylabel(ylabel + " (log scale)")
    return fig


def cosine_similarity(result):
    """Fig 2b: cos(a_l, h_l), cos(m_l, h_l + a_l), cos(a_l + m_l, h_l): <0 erases, ≈0 writes new, >0 strengthens."""
    return _writes_figure(result, "cos", "Cosine similarity", "Cosine similarity of the write with the residual")


def norms(result):
    """Fig 15: mean absolute norms ‖h_l‖, ‖a_l‖, ‖m_l‖ per layer (log scale: the residual grows with depth)."""
    f = result.to_frame()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    unstacked_bars(ax, _layers(f), {"Residual ‖h‖": f["norm_h"], "Attention ‖a‖": f["norm_attn"], "MLP ‖m‖": f["norm_mlp"]}, ylabel="Mean norm")
    ax.set_yscale("log")
    ax.set_title(f"Norms of the residual and the writes — {model_label(result)}", pad=22)
    fig.tight_layout()
    return fig


def io_cosine(result):
    """Fig 16: cos(h_l, h_{l+1}), the residual before and after a layer (close to 1 everywhere)."""
    f = result.to_frame()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.bar(_layers(f), f["cos_io"], width=0.8, color="#6f6f6f")
    ax.set_ylim(min(0.0, float(np.nanmin(f["cos_io"])) - 0.05), 1.02)
    ax.set_xlabel("Layer")
    integer_ticks(ax, _layers(f))
    ax.set_ylabel("cos(h_l, h_{l+1})")
    ax.set_title(f"Similarity of a layer's input and output residual — {model_label(result)}")
    fig.tight_layout()
    return fig


def describe(result) -> dict:
    """Numbers the chapter's prose quotes: where the relative contribution drops, where cosines turn.

    `drop_layer`: the layer after which the mean layer-relative contribution of the remaining
    layers falls most compared with the layers before it (the "knee"); `first_positive_cos`: the
    first layer from which the layer cosine stays ≥ 0 up to the last layer but one.
    """
    f = result.to_frame()
    rel = f["rel_layer"].to_numpy()
    L = len(rel)
    scores = [rel[:k].mean() - rel[k:].mean() for k in range(1, L)] if L > 1 else [0.0]
    drop = int(np.argmax(scores)) + 1
    cos = f["cos_layer"].to_numpy()
    first_pos = next((l for l in range(L) if (cos[l : max(l + 1, L - 1)] >= 0).all()), None)
    return {
        "n_layers": L,
        "drop_layer": drop,
        "first_half_rel": float(rel[: L // 2].mean()),
        "second_half_rel": float(rel[L // 2 :].mean()),
        # layer 0 writes onto the bare token embedding, often many times its norm: the halves without it
        "first_half_rel_after_0": float(rel[1 : L // 2].mean()) if L >= 4 else float("nan"),
        "layer0_dominates": bool(L > 2 and rel[0] > 10 * np.median(rel[1:])),
        "last_layer_rel": float(rel[-1]),
        "attn_first_half": float(f["rel_attn"].to_numpy()[: L // 2].mean()),
        "attn_second_half": float(f["rel_attn"].to_numpy()[L // 2 :].mean()),
        "first_positive_cos": first_pos,
        "min_cos_io": float(f["cos_io"].min()),
    }
