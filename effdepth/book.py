"""Execute the section notebooks with papermill and render them with jupyter-book.

    notebooks/<name>.md --jupytext--> papermill (parameters) --> runs/<model-slug>/<name>.ipynb
    runs/<model-slug>/*.ipynb --copied to--> book/chapters/ --jupyter-book--> _build/html

The chapter list (`CHAPTERS`) is the single source of truth for order; `_toc.yml` names the same
files. A chapter that fails keeps its partly executed notebook (papermill writes the error into it),
and the run goes on with the next chapter, so one failure costs one chapter, not the book.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RUNS = ROOT / "runs"


@dataclass(frozen=True)
class Chapter:
    name: str  # notebooks/<name>.md
    title: str
    zoo_only: bool = False  # needs the project's zoo (e.g. trains models), skipped for other models


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("zoo", "The zoo", zoo_only=True),
    Chapter("contributions", "§3.1 Residual contributions"),
    Chapter("skipping", "§3.2 Layer skipping and local effects"),
    Chapter("logit_lens", "§3.2 The logit lens"),
    Chapter("complexity", "§3.3 Depth and problem complexity"),
    Chapter("linear_maps", "§3.4 Shallow-to-deep linear maps", zoo_only=False),
    Chapter("objective", "§3.5 Objective or architecture?", zoo_only=True),
    Chapter("comparison", "Across depths: the zoo side by side"),
)


def slug(spec: str) -> str:
    """Folder name for a model spec: 'zoo:llama-8l' -> 'zoo-llama-8l', 'Qwen/Qwen2.5-1.5B' -> 'Qwen-Qwen2.5-1.5B'."""
    spec = str(spec).rstrip("/")
    if os.path.isdir(os.path.expanduser(spec)):
        spec = Path(spec).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-")


def available_chapters() -> list[Chapter]:
    return [c for c in CHAPTERS if (NOTEBOOKS / f"{c.name}.md").exists()]


def execute(notebook: str | Path, output: str | Path, parameters: dict | None = None, timeout: int = 3600, cwd: str | Path | None = None) -> Path:
    """Run one MyST notebook through papermill with `parameters`; returns the executed .ipynb.

    Raises papermill's PapermillExecutionError on a failing cell, after writing the partly executed
    notebook (with the traceback in it) to `output`.
    """
    import jupytext
    import papermill as pm

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    staged = output.with_suffix(".input.ipynb")
    jupytext.write(nb, staged, fmt="ipynb")
    declared = _declared_parameters(nb)
    parameters = {k: v for k, v in (parameters or {}).items() if k in declared}  # each chapter takes what it declares
    env_before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # no progress-bar widgets saved into executed notebooks
    try:
        pm.execute_notebook(
            str(staged),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(cwd or notebook.parent),
            progress_bar=False,
            execution_timeout=timeout,
            report_mode=False,
        )
    finally:
        staged.unlink(missing_ok=True)
        if env_before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = env_before
    return output


def chapter_parameters(name: str) -> set[str]:
    """The parameter names a chapter notebook declares in its ``parameters`` cell."""
    import jupytext

    return _declared_parameters(jupytext.read(NOTEBOOKS / f"{name}.md"))


def _declared_parameters(nb) -> set[str]:
    names = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            names |= {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line and not line.startswith((" ", "#"))}
    return names


def run(model: str, chapters: list[str] | None = None, device: str = "cpu", dtype: str = "auto", remote: bool = False, extra: dict | None = None, out: Path | None = None) -> dict[str, str]:
    """Execute every chapter for `model` into runs/<slug>/; returns {chapter: 'ok' | error line}."""
    out = Path(out or RUNS / slug(model))
    out.mkdir(parents=True, exist_ok=True)
    is_zoo = str(model).startswith("zoo:")
    unknown = set(extra or {}) - {p for c in available_chapters() for p in chapter_parameters(c.name)}
    if unknown:
        raise ValueError(f"No chapter has the parameter(s) {', '.join(sorted(unknown))}; see each chapter's parameters cell in notebooks/.")
    status = {}
    for chapter in available_chapters():
        if chapters and chapter.name not in chapters:
            continue
        if chapter.zoo_only and not is_zoo:
            status[chapter.name] = "skipped (zoo only)"
            continue
        params = {"model": model, "device": device, "dtype": dtype, "remote": remote, **(extra or {})}
        t0 = time.time()
        print(f"[effdepth] {chapter.name}: running on {model} …", flush=True)
        try:
            execute(NOTEBOOKS / f"{chapter.name}.md", out / f"{chapter.name}.ipynb", params)
            status[chapter.name] = "ok"
        except Exception as err:  # keep going: one failing chapter must not cost the others
            line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            status[chapter.name] = f"failed: {line}"
        print(f"[effdepth] {chapter.name}: {status[chapter.name]} ({time.time() - t0:.0f} s)", flush=True)
    (out / "status.json").write_text(json.dumps({"model": model, "chapters": status}, indent=1))
    return status


def build(model: str, runs_dir: Path | None = None, root: Path = ROOT) -> Path:
    """Render runs/<slug>/ into the HTML book under `root`/_build/html (warnings are errors).

    `root` holds `_config.yml`, `_toc.yml` and `book/`; returns the path of index.html.
    """
    root = Path(root)
    src = Path(runs_dir or RUNS / slug(model))
    if not src.exists():
        raise FileNotFoundError(f"No executed chapters in {src}: run `effdepth run --model {model}` first.")
    chapter_dir = root / "book" / "chapters"
    chapter_dir.mkdir(parents=True, exist_ok=True)
    for old in chapter_dir.glob("*.ipynb"):
        old.unlink()
    for chapter in CHAPTERS:
        executed = src / f"{chapter.name}.ipynb"
        target = chapter_dir / f"{chapter.name}.ipynb"
        if executed.exists():
            _prepare_for_rendering(executed, target)
        else:
            _placeholder(target, chapter, model)
    _run_summary(src, model, chapter_dir)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "--path-output", str(root), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-4000:])
        raise RuntimeError("jupyter-book build failed (warnings are errors); see the output above.")
    return root / "_build" / "html" / "index.html"


def _prepare_for_rendering(executed: Path, target: Path) -> None:
    """Copy an executed notebook for the book, showing the parameters it really ran with once.

    papermill keeps the notebook's default `parameters` cell and adds an `injected-parameters`
    cell after it; the rendered page hides the defaults when the injected values exist.
    """
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    injected = any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if injected and "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, target)


def _run_summary(src: Path, model: str, chapter_dir: Path) -> None:
    """book/chapters/run_summary.md: which model made this build's figures, and each chapter's state."""
    status_file = src / "status.json"
    status = json.loads(status_file.read_text())["chapters"] if status_file.exists() else {}
    lines = [f"This build's figures were made by **`{model}`**.", ""]
    if str(model).startswith("zoo:"):
        lines[0] += " It is a small model of the project's own zoo, trained offline on generated data — not a pretrained LLM."
    lines += ["| chapter | state |", "| --- | --- |"]
    for chapter in CHAPTERS:
        state = status.get(chapter.name, "executed" if (src / f"{chapter.name}.ipynb").exists() else "not run")
        lines.append(f"| {chapter.title} | {state} |")
    (chapter_dir / "run_summary.md").write_text("\n".join(lines) + "\n")


def _placeholder(target: Path, chapter: Chapter, model: str) -> None:
    """A short page saying why a chapter has no results for this model (keeps the TOC whole)."""
    import nbformat

    why = "it runs on the project's zoo only" if chapter.zoo_only and not str(model).startswith("zoo:") else "it has not been executed for this model"
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {chapter.title}\n\nNo results for `{model}`: {why}. Run `effdepth run --model {model} --chapters {chapter.name}`."))
    nbformat.write(nb, target)
