"""Each chapter's key curves, saved as a small JSON beside its executed notebook, and their schema
(the overlays a book of several models draws from them: `effdepth.side_by_side`).

    runs/<model-slug>/<chapter>.curves.json
    {"model": "<spec>", "n_layers": L, "chapter": "<chapter>",
     "curves": {"<key>": {"x": [...], "y": [...], "xlabel": "...", "ylabel": "...",
                         "title": "...",              # optional: the overlay's heading
                         "depth": "layer" | "residual" | null,
                         "control": [...]}}}           # optional: the random-init controls' mean, same x

`depth` says what x counts: "layer" (block l = 0 … L-1, drawn at relative depth (l + 0.5) / L, the
middle of its slot), "residual" (residual index b = 0 … L, drawn at b / L), or null (x is something
else, e.g. a difficulty level or an already relative depth, drawn as it is). Relative depth is used
only when the overlaid models' depths differ. y values that are not finite are stored as null.

A notebook calls `save(chapter, lm, curves)` once with the curves one of the extractors below
(`contributions`, `logit_lens`, `skipping`, `complexity`, `linear_maps`, `accuracy`) returned.
`effdepth run` tells the kernel where to write (the environment variable `EFFDEPTH_CURVES`, a
temporary name that becomes <chapter>.curves.json only when the chapter ended OK, like the notebook
itself); a notebook run by hand writes nothing. The chapters that are not about one model (the zoo,
the benchmarks table, the §3.5 grid, the comparison across depths) save no curves.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from effdepth.chapters.skipping import default_k
from effdepth.rundata import CURVES, CURVES_ENV, InvalidRunFile, read_json, validate
from effdepth.stats import next_k_scores

DEPTHS = ("layer", "residual", None)


def curve(x, y, xlabel: str, ylabel: str, title: str = "", depth: str | None = "layer", control=None) -> dict:
    """One curve of the schema above (numbers as plain floats, non-finite as None)."""
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {DEPTHS}, not {depth!r}")
    out = {"x": _floats(x), "y": _floats(y), "xlabel": str(xlabel), "ylabel": str(ylabel), "depth": depth}
    if title:
        out["title"] = str(title)
    if control is not None:
        out["control"] = _floats(control)
        if len(out["control"]) != len(out["y"]):
            raise ValueError(f"control has {len(out['control'])} values for {len(out['y'])} points")
    if len(out["x"]) != len(out["y"]):
        raise ValueError(f"x has {len(out['x'])} values and y {len(out['y'])}")
    return out


def _floats(values) -> list:
    out = []
    for v in np.asarray(values, dtype=float).ravel().tolist():
        out.append(v if math.isfinite(v) else None)
    return out


def _array(values: list) -> np.ndarray:
    """A stored list back as floats (None, a non-finite value, as NaN)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _key(name) -> str:
    """A data set's name as part of a curve key: 'Word problems (GSM8K format)' -> 'word_problems_gsm8k_format'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_").lower()


def _numbers(levels) -> list[float]:
    """Difficulty levels as numbers: their values when all are numeric, else their positions 0, 1, …"""
    try:
        return [float(v) for v in levels]
    except (TypeError, ValueError):
        return [float(i) for i in range(len(levels))]


def _mean(arrays):
    """The element-wise mean of the controls' arrays, or None without controls."""
    arrays = [np.asarray(a, dtype=float) for a in arrays or []]
    return np.mean(np.stack(arrays), axis=0) if arrays else None


# -- the chapters' key curves -------------------------------------------------------------------


MLP_LABEL = {False: "MLP ‖m‖/‖h+a‖", True: "MLP ‖m‖/‖h‖"}
"""The MLP's relative contribution is against its own residual: h + a, or h under a parallel residual (methods page §1)."""


def contributions(result, controls=(), parallel: bool = False) -> dict:
    """§3.1: mean relative contribution per layer of attention, MLP and the whole layer (`parallel`: the
    model has a parallel residual, so the MLP's own residual is h; `save` sets it from the model)."""
    frame = result.to_frame()
    L = len(frame)
    names = {
        "rel_attn": ("Attention ‖a‖/‖h‖", "Relative contribution of attention"),
        "rel_mlp": (MLP_LABEL[bool(parallel)], "Relative contribution of the MLP"),
        "rel_layer": ("Layer ‖a+m‖/‖h‖", "Relative contribution of the whole layer"),
    }
    return {
        key: curve(
            range(L),
            frame[key].to_numpy(),
            "Layer",
            f"Mean {label}",
            title,
            control=_mean([c.to_frame()[key].to_numpy() for c in controls]),
        )
        for key, (label, title) in names.items()
    }


def logit_lens(lens, controls=()) -> dict:
    """§3.2 logit lens: KL of each residual's lens distribution from the output, and top-k overlap."""
    kl = lambda r: np.append(r.kl, r.final_kl)  # noqa: E731
    top = lambda r: np.append(r.topk_overlap, r.final_topk_overlap)  # noqa: E731
    L = len(lens.kl)
    return {
        "kl": curve(
            range(L + 1),
            kl(lens),
            "Residual b",
            "KL(p_b ‖ p_final) [nats]",
            "Logit-lens KL from the output, per residual",
            "residual",
            _mean([kl(c) for c in controls]),
        ),
        "topk_overlap": curve(
            range(L + 1),
            top(lens),
            "Residual b",
            "Top-k overlap with the output",
            "Logit-lens top-k overlap with the output",
            "residual",
            _mean([top(c) for c in controls]),
        ),
    }


def skipping(cur, fut, controls_cur=(), controls_fut=(), k: int | None = None) -> dict:
    """§3.2 skipping: per skipped layer its halves score (max effect on the next k layers) and its
    effect on the output distribution, at the current token and at future tokens."""

    L = cur.layer_effect.shape[0]
    k = k or default_k(L)
    out = {}
    for name, res, ctl in (("current", cur, controls_cur), ("future", fut, controls_fut)):
        if L - k >= 1:
            out[f"halves_{name}"] = curve(
                range(L - k),
                next_k_scores(res.layer_effect, k),
                "Layer skipped",
                f"Max effect on the next {k} layer(s)",
                f"Skipping a layer: its largest effect on the next {k} layer(s), {name} token{'s' if name == 'future' else ''}",
                control=_mean([next_k_scores(c.layer_effect, k) for c in ctl]),
            )
        out[f"output_{name}"] = curve(
            range(L),
            res.output_effect,
            "Layer skipped",
            "Max change of the output",
            f"Skipping a layer: its effect on the output distribution, {name} token{'s' if name == 'future' else ''}",
            control=_mean([c.output_effect for c in ctl]),
        )
    return out


def complexity(results: dict, controls: dict | None = None, xlabels: dict | None = None) -> dict:
    """§3.3: the depth score per difficulty level of each data set, divided by L - 1 (0: the first
    layer, 1: the last) so that models of different depths share the axis."""
    out = {}
    for name, r in results.items():
        L = r.max_E.shape[-1]
        scale = max(L - 1, 1)
        levels = _numbers(r.levels)
        for part, label in (("depth_layer", "layer effect"), ("depth_output", "logit effect")):
            ctl = _mean([getattr(c, part) for c in (controls or {}).get(name, [])])
            key = f"{part}_{_key(name)}"
            out[key] = curve(
                levels,
                np.asarray(getattr(r, part), dtype=float) / scale,
                (xlabels or {}).get(name, "Level"),
                "Depth score / (L − 1)",
                f"Depth score ({label}) per level, {name}",
                None,
                None if ctl is None else ctl / scale,
            )
    return out


def linear_maps(result, random=()) -> dict:
    """§3.4: for each source layer (relative depth), the relative depth of the best-predicted target layer."""
    best = result.best_match()
    ctl = _mean([r.best_match()["best_tgt_depth"].to_numpy() for r in random])
    return {
        "best_match": curve(
            best["src_depth"],
            best["best_tgt_depth"],
            "Source relative depth",
            "Best target relative depth",
            "Shallow-to-deep linear maps: the best target layer of each source layer",
            None,
            ctl,
        )
    }


def accuracy(table) -> dict:
    """The model page: exact-match accuracy per level of each set (chance as the 'control')."""
    out = {}
    for name, rows in table.groupby("set", sort=False):
        key = f"accuracy_{_key(name)}"
        levels = _numbers(rows["level"])
        out[key] = curve(
            levels,
            rows["accuracy"],
            "Level",
            "Exact-match accuracy",
            f"Accuracy per level, {name}",
            None,
            rows["chance"].to_numpy(),
        )
    return out


# -- writing and reading ------------------------------------------------------------------------


def save(chapter: str, model, curves: dict, path: str | Path | None = None) -> dict:
    """Write the chapter's curves for `model` (a loaded Model, or (spec, n_layers)) to `path`, or to
    the file `effdepth run` named in $EFFDEPTH_CURVES; without either, write nothing. Returns the
    JSON-ready dict."""
    spec, n_layers = (model.spec, model.n_layers) if hasattr(model, "spec") else model
    curves = dict(curves)
    if (
        chapter == "contributions"
        and getattr(getattr(model, "adapter", None), "parallel_residual", False)
        and "rel_mlp" in curves
    ):
        c = dict(curves["rel_mlp"])  # the MLP's own residual is h under a parallel residual, not h + a
        c["ylabel"] = c["ylabel"].replace(MLP_LABEL[False], MLP_LABEL[True])
        curves["rel_mlp"] = c
    data = {"model": str(spec), "n_layers": int(n_layers), "chapter": str(chapter), "curves": curves}
    target = path or os.environ.get(CURVES_ENV)
    check(data, target or f"{chapter}.curves.json")
    if target:
        target = Path(target)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
        os.replace(tmp, target)
    return data


def check(data, path: str | Path = "curves") -> None:
    """Raise ValueError (`rundata.InvalidRunFile`, naming `path`) unless `data` is of the schema above
    (`rundata.CURVES`: numbers that fit a float or null, n_layers >= 1, curve keys usable in a file
    name, x / y / control of one length)."""
    validate(
        data,
        CURVES,
        path,
        "rerun the chapter with `effdepth run --model <model> --chapters <chapter>` to write it again",
    )


def read(path: str | Path) -> tuple[dict | None, str | None]:
    """(curves, None) of a curves file; (None, None) when it is absent; (None, why) when it cannot be
    used (unreadable, not JSON, not of the schema), `why` naming the file and the fix."""
    try:
        return read_json(
            path, CURVES, "rerun the chapter with `effdepth run --model <model> --chapters <chapter>` to write it again"
        ), None
    except InvalidRunFile as err:
        return None, str(err)


def load(path: str | Path) -> dict | None:
    """A curves file as a dict, or None when it is absent, unreadable or not of the schema (`read`
    says why)."""
    return read(path)[0]


def path_of(run_dir: str | Path, chapter: str) -> Path:
    """Where `effdepth run` keeps a chapter's curves: runs/<slug>/<chapter>.curves.json."""
    return Path(run_dir) / f"{chapter}.curves.json"


def positions(c: dict, n_layers: int, relative: bool) -> np.ndarray:
    """The x at which a curve is drawn: relative depth for layer / residual indices when `relative`."""
    x = _array(c["x"])
    if relative and c.get("depth") == "layer":
        return (x + 0.5) / n_layers
    if relative and c.get("depth") == "residual":
        return x / n_layers
    return x
