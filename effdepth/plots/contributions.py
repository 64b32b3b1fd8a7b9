"""§3.1 figures: relative contributions (Fig 2a), cosines (Fig 2b), norms (Fig 15), cos(h_l, h_{l+1}) (Fig 16)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from effdepth.plots import integer_ticks, model_label, unstacked_bars


def _layers(frame):
    return frame.index.to_numpy()


CONTROL_STYLE = dict(color="#6f6f6f", linestyle="--", linewidth=1, marker="x", markersize=4, alpha=0.8, zorder=19)


def _controls(ax, controls, column: str, label: str = "random-init control"):
    """The controls' `column` per layer as faint dashed lines (one per seed, labelled once)."""
    for i, c in enumerate(controls or ()):
        f = c.to_frame()
        ax.plot(_layers(f), f[column], **CONTROL_STYLE, label=label if i == 0 else None)


def _writes_figure(result, stem: str, ylabel: str, title: str, controls=()):
    """Attention and MLP bars of the columns `<stem>_attn` and `<stem>_mlp`, the whole layer
    (`<stem>_layer`) as black dots; each control's `<stem>_layer` as a faint dashed line."""
    f = result.to_frame()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    unstacked_bars(ax, _layers(f), {"Attention": f[f"{stem}_attn"], "MLP": f[f"{stem}_mlp"]}, ylabel=ylabel)
    ax.plot(
        _layers(f), f[f"{stem}_layer"], "o", color="black", markersize=4, zorder=20, label="Attention + MLP (layer)"
    )
    _controls(ax, controls, f"{stem}_layer", "layer, random-init control")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=9.5, borderaxespad=0.2)
    ax.set_title(f"{title} — {model_label(result)}", pad=40)
    fig.tight_layout()
    return fig


def relative_contribution(result, use_max: bool = False, controls=()):
    """Fig 2a: ‖a_l‖/‖h_l‖, ‖m_l‖/‖h_l + a_l‖ and ‖a_l + m_l‖/‖h_l‖ per layer (unstacked bars), the
    controls' layer values as faint dashed lines."""
    stem = "max_rel" if use_max else "rel"
    ylabel = ("Max" if use_max else "Mean") + " relative contribution"
    fig = _writes_figure(result, stem, ylabel, "Relative contribution to the residual", controls)
    f = result.to_frame()
    clip_tall_bars(fig.axes[0], _layers(f), f[[f"{stem}_attn", f"{stem}_mlp", f"{stem}_layer"]].to_numpy().max(axis=1))
    return fig


def clip_tall_bars(ax, x, tops, factor: float = 4.0) -> float | None:
    """Keep a linear axis readable when one or two layers (usually layer 0, writing onto the bare
    embedding) are more than `factor` times the median of the others: the axis is cut at 1.25 × the
    largest of the rest (controls included) and each cut bar gets its value written at the top and a
    zig-zag mark. Returns the cut height, or None when nothing was cut."""
    tops = np.asarray(tops, dtype=float)
    if len(tops) < 3 or not np.isfinite(tops).all():
        return None
    order = np.argsort(tops)
    rest = tops[order[:-2]] if len(tops) > 4 else tops[order[:-1]]
    median = float(np.median(rest))
    tall = tops > factor * max(median, 1e-12)
    if not tall.any() or tall.all():
        return None
    lines = [ln.get_ydata() for ln in ax.get_lines() if len(np.atleast_1d(ln.get_ydata())) == len(tops)]
    others = np.concatenate([tops[~tall]] + [np.asarray(y, dtype=float)[~tall] for y in lines])
    cut = 1.25 * float(np.nanmax(others))
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), cut)
    for xi, top in zip(np.asarray(x)[tall], tops[tall]):
        ax.text(
            xi,
            cut * 0.97,
            f"{top:.3g}",
            ha="center",
            va="top",
            fontsize=9,
            fontweight="bold",
            color="white",
            zorder=30,
            bbox=dict(boxstyle="round,pad=0.15", fc="#333333", ec="none", alpha=0.85),
        )
        ax.plot(
            [xi - 0.45, xi - 0.15, xi + 0.15, xi + 0.45],
            [cut * 0.80, cut * 0.84, cut * 0.78, cut * 0.82],
            color="white",
            lw=2.5,
            zorder=29,
            clip_on=False,
        )
    ax.set_ylabel(ax.get_ylabel() + " (axis cut)")
    return cut


def cosine_similarity(result, controls=()):
    """Fig 2b: cos(a_l, h_l), cos(m_l, h_l + a_l), cos(a_l + m_l, h_l): <0 erases, ≈0 writes new, >0 strengthens."""
    return _writes_figure(
        result, "cos", "Cosine similarity", "Cosine similarity of the write with the residual", controls
    )


def norms(result, controls=()):
    """Fig 15: mean absolute norms ‖h_l‖, ‖a_l‖, ‖m_l‖ per layer (log scale: the residual grows with depth);
    the controls' residual norms as faint dashed lines."""
    f = result.to_frame()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    unstacked_bars(
        ax,
        _layers(f),
        {"Residual ‖h‖": f["norm_h"], "Attention ‖a‖": f["norm_attn"], "MLP ‖m‖": f["norm_mlp"]},
        ylabel="Mean norm",
    )
    _controls(ax, controls, "norm_h", "‖h‖, random-init control")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=9.5, borderaxespad=0.2)
    ax.set_yscale("log")
    log_floor(ax, [f["norm_h"], f["norm_attn"], f["norm_mlp"]] + [c.to_frame()["norm_h"] for c in controls or ()])
    ax.set_title(f"Norms of the residual and the writes — {model_label(result)}", pad=40)
    fig.tight_layout()
    return fig


def log_floor(ax, series, relative: float = 1e-4) -> float:
    """The bottom of a log axis at a value that means something: the smallest plotted value (halved),
    but never below `relative` × the largest (a norm 10⁴ times smaller than the residual is float
    round-off, not a write; a bar from 0 on a log axis would otherwise pull the axis down to 1e-13).
    Values under the floor are said on the axes. Returns the floor."""
    raw = np.concatenate([np.asarray(v, dtype=float).ravel() for v in series])
    raw = raw[np.isfinite(raw)]
    values = raw[raw > 0]
    if not len(values):
        return ax.get_ylim()[0]
    floor = max(0.5 * float(values.min()), relative * float(values.max()))
    ax.set_ylim(floor, ax.get_ylim()[1])
    if (raw < floor).any():
        ax.text(
            0.99,
            0.02,
            f"values below {floor:.1g} not drawn",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8.5,
            color="#555555",
        )
    return floor


def io_cosine(result, controls=()):
    """Fig 16: cos(h_l, h_{l+1}), the residual before and after a layer (close to 1 everywhere); controls dashed."""
    f = result.to_frame()
    fig, ax = plt.subplots(figsize=(7, 3.1))
    ax.bar(_layers(f), f["cos_io"], width=0.8, color="#6f6f6f", label="trained")
    _controls(ax, controls, "cos_io")
    lows = [float(np.nanmin(f["cos_io"]))] + [float(np.nanmin(c.to_frame()["cos_io"])) for c in controls or ()]
    ax.set_ylim(min(0.0, min(lows) - 0.05), 1.02)
    ax.set_xlabel("Layer")
    integer_ticks(ax, _layers(f))
    ax.set_ylabel(r"$\cos(h_l, h_{l+1})$")
    if controls:  # above the axes: the bars fill the plot up to about 1, a legend inside would cover them
        ax.legend(fontsize=9.5, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, borderaxespad=0.2)
    ax.set_title(
        f"Similarity of a layer's input and output residual — {model_label(result)}", pad=24 if controls else 6
    )
    fig.tight_layout()
    return fig
