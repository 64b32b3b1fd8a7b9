"""The side-by-side pages of a book of several models: each chapter's key curves of every model on
one axis (relative depth where the depths differ), drawn from the curves each run saved
(`effdepth.curves`), never re-running anything.
"""

from __future__ import annotations

import re
from pathlib import Path

from effdepth.curves import _array, path_of, positions, read
from effdepth.plots import PALETTE, cut_first_points
from effdepth.rundata import md, mpl
from effdepth.running import COUNT, _latest_run, chapter_defaults, read_status
from effdepth.spec import ModelSpec

# -- the overlays -------------------------------------------------------------------------------


def overlay(key: str, runs: list[tuple[str, dict]]):
    """One axis with `key`'s curve of every run [(model spec, curves data)]: one solid line per
    model (labelled with `plots.short_name` and its depth), its random-init control dashed in the
    same colour; x is relative depth when the depths differ. Returns (figure, relative?)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

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
        (line,) = ax.plot(
            x,
            y,
            "o-",
            color=color,
            markersize=3.5,
            linewidth=1.8,
            label=mpl(
                f"{ModelSpec.parse(m).short_name} ({d['n_layers']} layers)"
                + (f" {d['_note']}" if d.get("_note") else "")
            ),
        )
        handles.append(line)
        lines.append((x, y))
        colors.append(color)
        if c.get("control") is not None:
            yc = _array(c["control"])
            ax.plot(x, yc, "--", color=color, alpha=0.7, linewidth=1.3)
            lines.append((x, yc))
            colors.append(None)
    if first.get("depth") in (
        "layer",
        "residual",
    ):  # layer / residual 0 far above the rest: cut the axis, write its value
        cut_first_points(ax, lines, colors, "layer 0" if first.get("depth") == "layer" else "residual 0")
    if any(d["curves"][key].get("control") is not None for _, d in present):
        handles.append(
            Line2D([], [], color="#6f6f6f", linestyle="--", linewidth=1.3, label="dashed: its random-init control")
        )
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
    have, notes, missing = [], [], []
    for m, d in runs:
        where = f"runs/{Path(d).name}/{chapter}.curves.json"
        data, problem = read(path_of(d, chapter))
        if problem:
            notes.append(
                f"{md(ModelSpec.parse(m).short_name)} left out: {md(problem.replace(str(path_of(d, chapter)), where))}"
            )
            continue
        if data is None:
            missing.append(m)
            continue
        if ModelSpec.parse(data["model"]).text != ModelSpec.parse(m).text:
            notes.append(
                f"{md(ModelSpec.parse(m).short_name)} left out: {md(where)} was saved by the model {md(ModelSpec.parse(data['model']).short_name)}, not by "
                f"{md(ModelSpec.parse(m).short_name)} (a file copied from another run folder?); delete it and rerun `effdepth run --model {md(m)} --chapters {chapter}`."
            )
            continue
        record, latest_failed = _latest_run(Path(d), chapter)
        if latest_failed:
            good = (record.get("last_ok") or {}).get("finished") or "an earlier run"
            data = dict(data, _note="(last good run)")
            notes.append(
                f"{md(ModelSpec.parse(m).short_name)}: its latest run of this chapter ({md(record.get('finished', 'at an unknown time'))}) failed; "
                f'its curves here are from its last successful run ({md(good)}), marked "(last good run)" in the legends.'
            )
        have.append((m, data))
    if missing:
        notes.append(
            "Not overlaid (their run of this chapter saved no curves, or has not run): "
            + ", ".join(md(ModelSpec.parse(m).short_name) for m in missing)
            + f". Rerun `effdepth run --chapters {chapter}` on them to add them."
        )
    return have, notes


def page(chapter: str, title: str, runs: list[tuple[str, Path]], chapter_dir: Path) -> str | None:
    """book/chapters/<chapter>--side-by-side.md (MyST) with one PNG per key curve that at least two
    of the `runs` [(model spec, run folder)] saved, overlaid on one axis; returns the page's name,
    or None when fewer than two models have usable curves of this chapter (no page then). Every
    string read from a run folder goes onto the page through `rundata.md` (it is data, not markup)."""
    import matplotlib.pyplot as plt

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
        "control seeds). They are read from each run's saved curves (`runs/<model>/"
        + chapter
        + ".curves.json`); nothing was re-run. "
        "Where the models' depths differ, layers are placed at their relative depth, so a curve that stretches "
        "with depth lines up. Where layer 0 (or residual 0, the embeddings) lies far above the rest, the axis is cut "
        "just above the other points and its value is written at the top.",
        "",
    ]
    lines += [f"- {_describe(m)}" for m, _ in have]
    lines += [x for note in notes for x in ("", note)]
    unmatched = [m for m, data in have if not any(k in data["curves"] for k in keys)]
    if unmatched:
        lines += [
            "",
            "Saved curves, but none that another model of this book has (e.g. measured on other data sets), so not drawn here: "
            + ", ".join(md(ModelSpec.parse(m).short_name) for m in unmatched)
            + "; their own pages show them.",
        ]
    sizes = _size_differences(chapter, runs)
    if sizes:
        lines += [
            "",
            "**These runs used different sample sizes** (so part of the difference between their curves can be "
            "sampling, not the models): "
            + "; ".join(f"{md(ModelSpec.parse(m).short_name)}: {md(v)}" for m, v in sizes)
            + ".",
        ]
    for key in keys:
        fig, relative = overlay(key, have)
        png = f"{page}-{key}.png"
        fig.savefig(chapter_dir / png, bbox_inches="tight")
        plt.close(fig)
        c = next(data["curves"][key] for _, data in have if key in data["curves"])
        names = ", ".join(md(ModelSpec.parse(m).short_name) for m, data in have if key in data["curves"])
        where = "x: relative depth, since the models' depths differ." if relative else f"x: {md(c['xlabel'])}."
        ylabels = list(dict.fromkeys(data["curves"][key]["ylabel"] for _, data in have if key in data["curves"]))
        if len(ylabels) > 1:  # e.g. the MLP's own residual: h + a, or h under a parallel residual
            c = dict(c, ylabel=" or ".join(ylabels) + " (each model's own)")
        label = re.sub(r"[^a-z0-9-]+", "-", f"fig-{chapter}-sbs-{key}".lower())
        lines += [
            "",
            f"## {md(c.get('title', key))}",
            "",
            f"```{{figure}} {png}",
            f":name: {label}",
            ":width: 100%",
            "",
            f"**{md(c.get('title', key))}**, on {names}. {md(c['ylabel'])}; {where}",
            "```",
        ]
    (chapter_dir / f"{page}.md").write_text("\n".join(lines) + "\n")
    return page


SIZE_KEYS = ("dataset", "dtype", "device")


def _size_differences(chapter: str, runs: list[tuple[str, Path]]) -> list[tuple[str, str]]:
    """[(model, 'n_examples=20, …')] for the runs of `chapter` whose sample sizes (the count parameters,
    `running.COUNT`, and the data set, dtype and device recorded in runs/<slug>/status.json) differ from
    another run's; [] when they all agree or none recorded them."""
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
    return ModelSpec.parse(spec).description + "."
