"""Each chapter's key curves, saved as a small JSON beside its executed notebook, and the overlays a
book of several models draws from them without re-running anything.

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

from .rundata import CURVES, InvalidRunFile, md, mpl, read_json, validate

ENV = "EFFDEPTH_CURVES"
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
"""The MLP's relative contribution is against its own residual: h + a, or h under a parallel residual (SPEC §1)."""


def contributions(result, controls=(), parallel: bool = False) -> dict:
    """§3.1: mean relative contribution per layer of attention, MLP and the whole layer (`parallel`: the
    model has a parallel residual, so the MLP's own residual is h; `save` sets it from the model)."""
    frame = result.to_frame()
    L = len(frame)
    names = {"rel_attn": ("Attention ‖a‖/‖h‖", "Relative contribution of attention"), "rel_mlp": (MLP_LABEL[bool(parallel)], "Relative contribution of the MLP"), "rel_layer": ("Layer ‖a+m‖/‖h‖", "Relative contribution of the whole layer")}
    return {
        key: curve(range(L), frame[key].to_numpy(), "Layer", f"Mean {label}", title, control=_mean([c.to_frame()[key].to_numpy() for c in controls]))
        for key, (label, title) in names.items()
    }


def logit_lens(lens, controls=()) -> dict:
    """§3.2 logit lens: KL of each residual's lens distribution from the output, and top-k overlap."""
    kl = lambda r: np.append(r.kl, r.final_kl)  # noqa: E731
    top = lambda r: np.append(r.topk_overlap, r.final_topk_overlap)  # noqa: E731
    L = len(lens.kl)
    return {
        "kl": curve(range(L + 1), kl(lens), "Residual b", "KL(p_b ‖ p_final) [nats]", "Logit-lens KL from the output, per residual", "residual", _mean([kl(c) for c in controls])),
        "topk_overlap": curve(range(L + 1), top(lens), "Residual b", "Top-k overlap with the output", "Logit-lens top-k overlap with the output", "residual", _mean([top(c) for c in controls])),
    }


def skipping(cur, fut, controls_cur=(), controls_fut=(), k: int | None = None) -> dict:
    """§3.2 skipping: per skipped layer its halves score (max effect on the next k layers) and its
    effect on the output distribution, at the current token and at future tokens."""
    from .chapters.skipping import default_k
    from .stats import next_k_scores

    L = cur.layer_effect.shape[0]
    k = k or default_k(L)
    out = {}
    for name, res, ctl in (("current", cur, controls_cur), ("future", fut, controls_fut)):
        if L - k >= 1:
            out[f"halves_{name}"] = curve(range(L - k), next_k_scores(res.layer_effect, k), "Layer skipped", f"Max effect on the next {k} layer(s)", f"Skipping a layer: its largest effect on the next {k} layer(s), {name} token{'s' if name == 'future' else ''}", control=_mean([next_k_scores(c.layer_effect, k) for c in ctl]))
        out[f"output_{name}"] = curve(range(L), res.output_effect, "Layer skipped", "Max change of the output", f"Skipping a layer: its effect on the output distribution, {name} token{'s' if name == 'future' else ''}", control=_mean([c.output_effect for c in ctl]))
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
            out[key] = curve(levels, np.asarray(getattr(r, part), dtype=float) / scale, (xlabels or {}).get(name, "Level"), "Depth score / (L − 1)", f"Depth score ({label}) per level, {name}", None, None if ctl is None else ctl / scale)
    return out


def linear_maps(result, random=()) -> dict:
    """§3.4: for each source layer (relative depth), the relative depth of the best-predicted target layer."""
    best = result.best_match()
    ctl = _mean([r.best_match()["best_tgt_depth"].to_numpy() for r in random])
    return {"best_match": curve(best["src_depth"], best["best_tgt_depth"], "Source relative depth", "Best target relative depth", "Shallow-to-deep linear maps: the best target layer of each source layer", None, ctl)}


def accuracy(table) -> dict:
    """The model page: exact-match accuracy per level of each set (chance as the 'control')."""
    out = {}
    for name, rows in table.groupby("set", sort=False):
        key = f"accuracy_{_key(name)}"
        levels = _numbers(rows["level"])
        out[key] = curve(levels, rows["accuracy"], "Level", "Exact-match accuracy", f"Accuracy per level, {name}", None, rows["chance"].to_numpy())
    return out


# -- writing and reading ------------------------------------------------------------------------


def save(chapter: str, model, curves: dict, path: str | Path | None = None) -> dict:
    """Write the chapter's curves for `model` (a loaded Model, or (spec, n_layers)) to `path`, or to
    the file `effdepth run` named in $EFFDEPTH_CURVES; without either, write nothing. Returns the
    JSON-ready dict."""
    spec, n_layers = (model.spec, model.n_layers) if hasattr(model, "spec") else model
    curves = dict(curves)
    if chapter == "contributions" and getattr(getattr(model, "adapter", None), "parallel_residual", False) and "rel_mlp" in curves:
        c = dict(curves["rel_mlp"])  # the MLP's own residual is h under a parallel residual, not h + a
        c["ylabel"] = c["ylabel"].replace(MLP_LABEL[False], MLP_LABEL[True])
        curves["rel_mlp"] = c
    data = {"model": str(spec), "n_layers": int(n_layers), "chapter": str(chapter), "curves": curves}
    target = path or os.environ.get(ENV)
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
    validate(data, CURVES, path, "rerun the chapter with `effdepth run --model <model> --chapters <chapter>` to write it again")


def read(path: str | Path) -> tuple[dict | None, str | None]:
    """(curves, None) of a curves file; (None, None) when it is absent; (None, why) when it cannot be
    used (unreadable, not JSON, not of the schema), `why` naming the file and the fix."""
    try:
        return read_json(path, CURVES, "rerun the chapter with `effdepth run --model <model> --chapters <chapter>` to write it again"), None
    except InvalidRunFile as err:
        return None, str(err)


def load(path: str | Path) -> dict | None:
    """A curves file as a dict, or None when it is absent, unreadable or not of the schema (`read`
    says why)."""
    return read(path)[0]


def path_of(run_dir: str | Path, chapter: str) -> Path:
    """Where `effdepth run` keeps a chapter's curves: runs/<slug>/<chapter>.curves.json."""
    return Path(run_dir) / f"{chapter}.curves.json"


# -- the overlays -------------------------------------------------------------------------------


def positions(c: dict, n_layers: int, relative: bool) -> np.ndarray:
    """The x at which a curve is drawn: relative depth for layer / residual indices when `relative`."""
    x = _array(c["x"])
    if relative and c.get("depth") == "layer":
        return (x + 0.5) / n_layers
    if relative and c.get("depth") == "residual":
        return x / n_layers
    return x


def overlay(key: str, runs: list[tuple[str, dict]]):
    """One axis with `key`'s curve of every run [(model spec, curves data)]: one solid line per
    model (labelled with `plots.short_name` and its depth), its random-init control dashed in the
    same colour; x is relative depth when the depths differ. Returns (figure, relative?)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .plots import PALETTE, cut_first_points, short_name

    present = [(m, d) for m, d in runs if key in d["curves"]]
    first = present[0][1]["curves"][key]
    depths = {d["n_layers"] for _, d in present}
    relative = len(depths) > 1 and first.get("depth") in ("layer", "residual")
    fig, ax = plt.subplots(figsize=(7.6, 3.4))
    handles, lines, colors = [], [], []
    for i, (m, d) in enumerate(present):
        c = d["curves"][key]
        color = PALETTE[i % len(PALETTE)]
        x = positions(c, d["n_layers"], relative)
        y = _array(c["y"])
        (line,) = ax.plot(x, y, "o-", color=color, markersize=3.5, linewidth=1.8, label=mpl(f"{short_name(m)} ({d['n_layers']} layers)" + (f" {d['_note']}" if d.get("_note") else "")))
        handles.append(line)
        lines.append((x, y))
        colors.append(color)
        if c.get("control") is not None:
            yc = _array(c["control"])
            ax.plot(x, yc, "--", color=color, alpha=0.7, linewidth=1.3)
            lines.append((x, yc))
            colors.append(None)
    if first.get("depth") in ("layer", "residual"):  # layer / residual 0 far above the rest: cut the axis, write its value
        cut_first_points(ax, lines, colors, "layer 0" if first.get("depth") == "layer" else "residual 0")
    if any(d["curves"][key].get("control") is not None for _, d in present):
        handles.append(Line2D([], [], color="#6f6f6f", linestyle="--", linewidth=1.3, label="dashed: its random-init control"))
    xlabel = first["xlabel"]
    if relative:
        xlabel = "Relative depth (layer + ½) / L" if first.get("depth") == "layer" else "Relative depth b / L"
        ax.set_xlim(0, 1)
    ax.set_xlabel(mpl(xlabel))
    ax.set_ylabel(mpl(first["ylabel"]))
    ax.set_title(mpl(first.get("title", key)))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9.5)
    fig.tight_layout()
    return fig, relative


def usable_runs(chapter: str, runs: list[tuple[str, Path]]) -> tuple[list[tuple[str, dict]], list[str]]:
    """The runs' saved curves of `chapter` that may be drawn under their model's name, and one
    sentence (Markdown, escaped) per run left out or drawn with a caveat:
    - no file: the chapter saved no curves or has not run;
    - a file that is not of the schema (`read`): left out, naming the file and the fix;
    - a file saved by another model (copied from another run folder): left out;
    - the chapter's latest run failed: the curves of the last successful run are drawn, said so."""
    from .book import _latest_run
    from .models import canonical_spec
    from .plots import short_name

    have, notes, missing = [], [], []
    for m, d in runs:
        where = f"runs/{Path(d).name}/{chapter}.curves.json"
        data, problem = read(path_of(d, chapter))
        if problem:
            notes.append(f"{md(short_name(m))} left out: {md(problem.replace(str(path_of(d, chapter)), where))}")
            continue
        if data is None:
            missing.append(m)
            continue
        if canonical_spec(data["model"]) != canonical_spec(m):
            notes.append(f"{md(short_name(m))} left out: {md(where)} was saved by the model {md(short_name(data['model']))}, not by "
                         f"{md(short_name(m))} (a file copied from another run folder?); delete it and rerun `effdepth run --model {md(m)} --chapters {chapter}`.")
            continue
        record, latest_failed = _latest_run(Path(d), chapter)
        if latest_failed:
            good = (record.get("last_ok") or {}).get("finished") or "an earlier run"
            data = dict(data, _note="(last good run)")
            notes.append(f"{md(short_name(m))}: its latest run of this chapter ({md(record.get('finished', 'at an unknown time'))}) failed; "
                         f"its curves here are from its last successful run ({md(good)}), marked \"(last good run)\" in the legends.")
        have.append((m, data))
    if missing:
        notes.append("Not overlaid (their run of this chapter saved no curves, or has not run): " + ", ".join(md(short_name(m)) for m in missing) + f". Rerun `effdepth run --chapters {chapter}` on them to add them.")
    return have, notes


def side_by_side_page(chapter: str, title: str, runs: list[tuple[str, Path]], chapter_dir: Path) -> str | None:
    """book/chapters/<chapter>--side-by-side.md (MyST) with one PNG per key curve that at least two
    of the `runs` [(model spec, run folder)] saved, overlaid on one axis; returns the page's name,
    or None when fewer than two models have usable curves of this chapter (no page then). Every
    string read from a run folder goes onto the page through `rundata.md` (it is data, not markup)."""
    import matplotlib.pyplot as plt

    from .plots import short_name

    have, notes = usable_runs(chapter, runs)
    if len(have) < 2:
        return None
    page = f"{chapter}--side-by-side"
    keys = []
    for _, data in have:
        keys += [k for k in data["curves"] if k not in keys]
    keys = [k for k in keys if sum(k in data["curves"] for _, data in have) >= 2]
    if not keys:
        return None
    for old in chapter_dir.glob(f"{page}-*.png"):
        old.unlink()
    lines = [f"# {md(title)} — side by side", ""]
    lines += [
        f"The key curves of this chapter for the {len(have)} models of this book that saved them, each quantity on one axis: "
        "one solid line per model and, dashed in the same colour, its random-init control (the mean over the chapter's "
        "control seeds). They are read from each run's saved curves (`runs/<model>/" + chapter + ".curves.json`); nothing was re-run. "
        "Where the models' depths differ, layers are placed at their relative depth, so a curve that stretches "
        "with depth lines up. Where layer 0 (or residual 0, the embeddings) lies far above the rest, the axis is cut "
        "just above the other points and its value is written at the top.",
        "",
    ]
    lines += [f"- {_describe(m)}" for m, _ in have]
    lines += [x for note in notes for x in ("", note)]
    unmatched = [m for m, data in have if not any(k in data["curves"] for k in keys)]
    if unmatched:
        lines += ["", "Saved curves, but none that another model of this book has (e.g. measured on other data sets), so not drawn here: " + ", ".join(md(short_name(m)) for m in unmatched) + "; their own pages show them."]
    sizes = _size_differences(chapter, runs)
    if sizes:
        lines += ["", "**These runs used different sample sizes** (so part of the difference between their curves can be "
                  "sampling, not the models): " + "; ".join(f"{md(short_name(m))}: {md(v)}" for m, v in sizes) + "."]
    for key in keys:
        fig, relative = overlay(key, have)
        png = f"{page}-{key}.png"
        fig.savefig(chapter_dir / png, bbox_inches="tight")
        plt.close(fig)
        c = next(data["curves"][key] for _, data in have if key in data["curves"])
        names = ", ".join(md(short_name(m)) for m, data in have if key in data["curves"])
        where = "x: relative depth, since the models' depths differ." if relative else f"x: {md(c['xlabel'])}."
        ylabels = list(dict.fromkeys(data["curves"][key]["ylabel"] for _, data in have if key in data["curves"]))
        if len(ylabels) > 1:  # e.g. the MLP's own residual: h + a, or h under a parallel residual
            c = dict(c, ylabel=" or ".join(ylabels) + " (each model's own)")
        label = re.sub(r"[^a-z0-9-]+", "-", f"fig-{chapter}-sbs-{key}".lower())
        lines += ["", f"## {md(c.get('title', key))}", "", f"```{{figure}} {png}", f":name: {label}", ":width: 100%", "", f"**{md(c.get('title', key))}**, on {names}. {md(c['ylabel'])}; {where}", "```"]
    (chapter_dir / f"{page}.md").write_text("\n".join(lines) + "\n")
    return page


SIZE_KEYS = ("dataset", "dtype", "device")


def _size_differences(chapter: str, runs: list[tuple[str, Path]]) -> list[tuple[str, str]]:
    """[(model, 'n_examples=20, …')] for the runs of `chapter` whose sample sizes (the count parameters,
    `book.COUNT`, and the data set, dtype and device recorded in runs/<slug>/status.json) differ from
    another run's; [] when they all agree or none recorded them."""
    from .book import COUNT, chapter_defaults, read_status

    try:
        defaults = chapter_defaults(chapter)
    except Exception:  # a chapter without a notebook here: compare what was recorded
        defaults = {}
    recorded = []
    for m, d in runs:
        params = ((read_status(d).get("runs") or {}).get(chapter) or {}).get("parameters") or {}
        if params:
            params = {**defaults, **params}
        recorded.append((m, {k: v for k, v in params.items() if COUNT.match(k) or k in SIZE_KEYS}))
    keys = sorted({k for _, p in recorded for k in p})
    differ = [k for k in keys if len({repr(p.get(k, "default")) for _, p in recorded if p}) > 1]
    if not differ or sum(1 for _, p in recorded if p) < 2:
        return []
    return [(m, ", ".join(f"{k}={p.get(k, 'default')}" for k in differ)) for m, p in recorded if p]


def _describe(spec: str) -> str:
    from .book import describe_model

    return describe_model(spec) + "."
