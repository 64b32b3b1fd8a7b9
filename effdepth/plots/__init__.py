"""One figure style for the whole book, in the paper's conventions (the methods page).

Shared primitives live here (`unstacked_bars`, `layer_heatmap`, `model_label`); each chapter's
figures live in a submodule named after its measurement family and are built from these.
Every figure names the model that made it in its title.
"""

from __future__ import annotations

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "inline"):
    matplotlib.use("Agg")

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from effdepth.spec import ModelSpec

PALETTE = ["#1f5fa8", "#e0762b", "#3a9a4a", "#b8383b", "#7b59a8", "#8c6d3f", "#d17fb5", "#6f6f6f"]

plt.rcParams.update(
    {
        "figure.dpi": 110,
        "savefig.dpi": 130,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.25,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
        # sized for reading at the text width (about 690 px) and on a phone (360 px, where a 7-inch
        # figure is shown at half size: 11 pt ticks are then about 8 px high)
        "font.size": 11,
        "axes.labelsize": 11,
        "xtick.labelsize": 10.5,
        "ytick.labelsize": 10.5,
        "legend.fontsize": 9.5,
        "axes.titlesize": 10.5,
        "legend.frameon": False,
    }
)


def model_label(model_or_result) -> str:
    """The model's name as figures show it (a zoo model says so; it never pretends to be Llama-3)."""
    meta = getattr(model_or_result, "meta", None)
    if meta is not None:
        ident = meta.get("model", {})
    elif hasattr(model_or_result, "identity"):
        ident = model_or_result.identity()
    else:
        ident = {"model": str(model_or_result)}
    return ModelSpec.parse(ident.get("model", "?")).label(ident.get("n_layers", "?"))


def unstacked_bars(ax, x, series: dict[str, np.ndarray], ylabel: str, xlabel: str = "Layer"):
    """Bars per layer that all start at 0, the taller drawn behind the shorter (paper Fig 2 style).

    Not stacked: each bar's height is its own value, so the smallest is always visible in front.
    """
    x = np.asarray(x)
    names = list(series)
    values = np.stack([np.asarray(series[n], dtype=float) for n in names])  # [S, X]
    colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    order = np.argsort(-np.abs(values), axis=0)  # per x: largest first (behind)
    for rank in range(len(names)):
        for j, xi in enumerate(x):
            s = order[rank, j]
            ax.bar(xi, values[s, j], width=0.8, color=colors[names[s]], zorder=2 + rank, linewidth=0)
    for n in names:
        ax.bar([np.nan], [np.nan], color=colors[n], label=n)
    ax.axhline(0, color="black", linewidth=0.6, zorder=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    integer_ticks(ax, x)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(names) + 1, fontsize=9, borderaxespad=0.2)
    return ax


def integer_ticks(ax, x, axis: str = "x", max_ticks: int = 25):
    """Integer layer ticks, thinned so that at most `max_ticks` labels show."""
    x = np.asarray(x)
    step = max(1, int(np.ceil(len(x) / max_ticks)))
    ticks = x[::step]
    (ax.set_xticks if axis == "x" else ax.set_yticks)(ticks)


def layer_heatmap(
    ax,
    matrix: np.ndarray,
    xlabel: str,
    ylabel: str,
    cbar_label: str,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = "viridis",
    origin: str = "lower",
    xticklabels=None,
    yticklabels=None,
):
    """A heatmap with integer layer axes (row 0 at the bottom unless origin='upper'); NaN cells grey."""
    colours = plt.get_cmap(cmap).copy()
    colours.set_bad("#d9d9d9")  # a masked (NaN) cell is grey, never a colour of the scale
    im = ax.imshow(
        np.ma.masked_invalid(np.asarray(matrix, float)),
        aspect="auto",
        origin=origin,
        vmin=vmin,
        vmax=vmax,
        cmap=colours,
        interpolation="nearest",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)), xticklabels)
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)), yticklabels)
    cb = ax.figure.colorbar(im, ax=ax)
    cb.set_label(cbar_label)
    return im


def show(name: str, fig=None, made_by=None, absent: str = "") -> None:
    """Hand a figure to the page's ```{glue:figure} name``` directive (which numbers and captions it).

    Glues `fig` under `name` (not displayed where the cell runs; closed afterwards) and, under
    `name + "_model"`, the model that made it as Markdown for the caption: `model_label(made_by)`, or
    `made_by` itself when it is a string (a figure of several models). `fig=None` (a figure this run
    cannot draw) glues the sentence `absent` in the figure's place; when the book is rendered the figure
    directive is replaced by that sentence (`render._drop_undrawn_figures`): no empty figure with a caption.
    """
    from IPython.display import Markdown
    from myst_nb import glue

    if fig is None:
        glue(name, Markdown(f"*Not drawn in this run: {absent or 'nothing to draw'}.*"), display=False)
    else:
        glue(name, fig, display=False)
        plt.close(fig)
    who = made_by if isinstance(made_by, str) else (model_label(made_by) if made_by is not None else "")
    glue(name + "_model", Markdown(f"`{who}`" if who else "this run's model"), display=False)


def panel_grid(n: int, width: float, height: float, ncols: int = 2):
    """`n` panels of `width` × `height` inches, at most `ncols` to a row (a figure stays legible at
    the text width and on a phone); returns (figure, the n axes in reading order), spare cells hidden."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * width, nrows * height), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def cut_first_points(ax, curves, colors=None, what: str = "layer 0") -> float | None:
    """Keep a depth curve's y axis readable when its first point (layer 0 writing onto the bare
    embedding, residual 0 read by the lens) lies far above everything else, as it often does
    (SmolLM2's layer 0: 42 and 17 times its input): the axis is cut just above the other points and
    each cut point gets its value written at the top edge, and the axes say so.

    `curves`: [(x, y)] of every line drawn (trained models and controls); `colors`: one per curve,
    None for a curve whose cut point is not annotated (a control). A first point is cut when it lies
    above the range of all other points by more than that range (the rule `stats.change_point` uses
    to leave layer 0 out). Returns the new top of the axis, or None when nothing was cut."""
    colors = list(colors) if colors is not None else [None] * len(curves)
    curves = [(np.asarray(x, dtype=float), np.asarray(y, dtype=float)) for x, y in curves]
    rest = np.concatenate([y[1:] for _, y in curves if len(y) > 1] or [np.array([])])
    rest = rest[np.isfinite(rest)]
    if len(rest) < 2:
        return None
    lo, hi = float(rest.min()), float(rest.max())
    span = max(hi - lo, 1e-12)
    firsts = [(x[0], y[0], c) for (x, y), c in zip(curves, colors) if len(y) and np.isfinite(y[0])]
    tall = [(x0, y0, c) for x0, y0, c in firsts if y0 > hi + span]
    if not tall:
        return None
    top = hi + 0.18 * span
    ax.set_ylim(min(ax.get_ylim()[0], lo - 0.05 * span), top)
    for i, (x0, y0, c) in enumerate([t for t in tall if t[2] is not None]):
        ax.annotate(
            f"{y0:.3g} ↑",
            (x0, top),
            xytext=(2, -2 - 12 * i),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=9.5,
            color=c,
            fontweight="bold",
            annotation_clip=False,
        )
    ax.text(
        0.99,
        0.99,
        f"axis cut: {what} off the scale, its value written",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8.5,
        color="#555555",
    )
    return top


def fit_title(ax, text: str, fontsize: float | None = None) -> None:
    """A panel's title wrapped to the panel's width, so that titles of neighbouring panels in a grid
    never run into each other (call it after the colorbar is added: it takes its share of the width)."""

    size = float(fontsize or plt.rcParams["axes.titlesize"])
    width = ax.get_position().width * ax.figure.get_figwidth()  # inches
    chars = max(14, int(width * 72 / (0.56 * size)))
    ax.set_title("\n".join(textwrap.fill(line, chars) for line in str(text).split("\n")), fontsize=size)
