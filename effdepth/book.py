"""Execute the section notebooks with papermill and render them with jupyter-book.

    notebooks/<name>.md --jupytext--> papermill (parameters) --> runs/<model-slug>/<name>.ipynb
    runs/<model-slug>/*.ipynb --copied to--> book/chapters/ --jupyter-book--> _build/html

The chapter list (`CHAPTERS`) is the single source of truth for order; `_toc.yml` names the same
files. A chapter that fails keeps its partly executed notebook (papermill writes the error into it)
as <name>.failed.ipynb beside the last good <name>.ipynb, and the run goes on with the next chapter,
so one failure costs one chapter, not the book; status.json records every chapter's latest outcome.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .models import canonical_spec, slug

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
    Chapter("benchmarks", "Fig 1 / App. B: depth and benchmark score"),
    Chapter("contributions", "§3.1 Residual contributions"),
    Chapter("skipping", "§3.2 Layer skipping and local effects"),
    Chapter("logit_lens", "§3.2 The logit lens"),
    Chapter("complexity", "§3.3 Depth and problem complexity"),
    Chapter("linear_maps", "§3.4 Shallow-to-deep linear maps", zoo_only=False),
    Chapter("objective", "§3.5 Objective or architecture?", zoo_only=True),
    Chapter("comparison", "Across depths: the zoo side by side"),
)


def available_chapters(notebooks: Path | None = None, catalogue: tuple[Chapter, ...] | None = None) -> list[Chapter]:
    notebooks = Path(notebooks or NOTEBOOKS)
    return [c for c in (catalogue or CHAPTERS) if (notebooks / f"{c.name}.md").exists()]


def execute(notebook: str | Path, output: str | Path, parameters: dict | None = None, timeout: int = 3600, cwd: str | Path | None = None, kernel_log: str | Path | None = None) -> Path:
    """Run one MyST notebook through papermill with `parameters`; returns the executed .ipynb.

    Raises papermill's PapermillExecutionError on a failing cell, after writing the partly executed
    notebook (with the traceback in it) to `output`. `kernel_log`: a file that receives the kernel
    process's own stderr (ipykernel's start-up warnings, its complaints when shut down by Ctrl-C)
    instead of the terminal; cell outputs are in the notebook either way.
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
            **({"kernel_manager_class": _logged_kernel_manager(Path(kernel_log).resolve())} if kernel_log else {}),  # papermill chdirs
        )
    finally:
        staged.unlink(missing_ok=True)
        if env_before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = env_before
    return output


_INTERRUPTED = threading.Event()  # set by Ctrl-C during `run`: the kernel is then killed, not asked to stop


def _logged_kernel_manager(log: Path):
    """A jupyter kernel manager class whose kernel writes its stderr to `log` (truncated first), and
    which, after Ctrl-C, kills the kernel's process group at once instead of waiting for a busy
    kernel to answer a shutdown request."""
    from jupyter_client.manager import AsyncKernelManager

    log.write_bytes(b"")

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            with open(log, "ab") as fh:  # the kernel process keeps its own copy of the descriptor
                kw["stderr"] = fh
                await super()._async_launch_kernel(kernel_cmd, **kw)

        async def shutdown_kernel(self, now=False, restart=False):
            await super().shutdown_kernel(now=now or _INTERRUPTED.is_set(), restart=restart)

    return LoggedKernelManager


@contextmanager
def _catch_ctrl_c():
    """While a chapter runs, Ctrl-C marks the run interrupted (see _INTERRUPTED) and raises
    KeyboardInterrupt as usual; the previous handler comes back afterwards."""
    _INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def chapter_parameters(name: str, notebooks: Path | None = None) -> set[str]:
    """The parameter names a chapter notebook declares in its ``parameters`` cell."""
    return set(chapter_defaults(name, notebooks))


def chapter_defaults(name: str, notebooks: Path | None = None) -> dict:
    """{name: default literal} of a chapter notebook's ``parameters`` cell."""
    import jupytext

    return _declared_parameters(jupytext.read(Path(notebooks or NOTEBOOKS) / f"{name}.md"))


_NO_LITERAL = object()  # a default that is not a plain literal: its type is not checked


def _declared_parameters(nb) -> dict:
    """{name: default} of every top-level assignment in the notebook's ``parameters`` cell; the default
    is the literal's value (ast.literal_eval), or _NO_LITERAL when it is not a plain literal."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            try:
                body = ast.parse(cell.source).body
            except SyntaxError:  # not plain Python: names only, as `name = …` lines
                out.update({line.split("=")[0].strip(): _NO_LITERAL for line in cell.source.splitlines() if "=" in line and not line.startswith((" ", "#"))})
                continue
            for node in body:
                target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) and node.value is not None:
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[target.id] = _NO_LITERAL
    return out


# The one rule for counts (declared here, applied to every chapter's parameters by `plan`): a
# parameter named n_*, k, steps, window, workers or *_size, *_step(s), *_examples, *_windows counts
# something and must be a positive int (None stays allowed where None is the default).
COUNT = re.compile(r"^(n_\w+|k|steps|window|workers|\w+_(size|steps?|examples|windows))$")
_TYPE_WORDS = {bool: "True or False", int: "an int", float: "a number", str: "a string", list: "a list", tuple: "a list", dict: "a dict"}


def check_parameter(name: str, value, default) -> None:
    """Raise ValueError (one line) when `value` does not fit parameter `name` whose default is `default`:
    the type of the default literal (an int default takes an int, a float default an int or a float),
    and the COUNT rule."""
    if default is _NO_LITERAL:
        return
    expected = type(default)
    if default is not None:
        ok = isinstance(value, expected) and (expected is not int or not isinstance(value, bool))
        if expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif expected in (list, tuple):
            ok = isinstance(value, (list, tuple))
        if not ok:
            raise ValueError(f"{name} expects {_TYPE_WORDS.get(expected, expected.__name__)} (default {default!r}), got {value!r}")
    if COUNT.match(name) and not (value is None and default is None):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} counts something and expects a positive int (default {default!r}), got {value!r}")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run`: which chapter was interrupted and which ones finished before it."""

    def __init__(self, chapter: str, finished: dict[str, str], out: Path):
        super().__init__(chapter)
        self.chapter, self.finished, self.out = chapter, finished, out


def plan(model: str, chapters: list[str] | None = None, device: str = "cpu", dtype: str = "auto", remote: bool | str = False, extra: dict | None = None, notebooks: Path | None = None, catalogue: tuple[Chapter, ...] | None = None) -> list[Chapter]:
    """The chapters `run` will execute, after checking everything that can be checked before the first
    one starts (chapter names, parameter names and types, device, dtype, remote credentials).
    Raises ValueError with one line naming what is wrong and what was expected."""
    from .models import _configure_ndif, check_device, resolve_dtype, resolve_source

    available = available_chapters(notebooks, catalogue)
    names = [c.name for c in available]
    unknown = [n for n in (chapters or []) if n not in names]
    if unknown:
        raise ValueError(f"Unknown chapter(s) {', '.join(unknown)}; the chapters are: {', '.join(names)}.")
    selected = [c for c in available if not chapters or c.name in chapters]
    declared = {c.name: chapter_defaults(c.name, notebooks) for c in available}
    extra = extra or {}
    reserved = sorted(set(extra) & {"model", "device", "dtype", "remote"})
    if reserved:
        raise ValueError(f"Set {', '.join(reserved)} with --{' / --'.join(reserved)} (checked before the run), not with --set.")
    unknown = set(extra) - {p for d in declared.values() for p in d}
    if unknown:
        raise ValueError(f"No chapter has the parameter(s) {', '.join(sorted(unknown))}; see each chapter's parameters cell in notebooks/.")
    for c in selected:
        for k, v in extra.items():
            if k in declared[c.name]:
                check_parameter(k, v, declared[c.name][k])
    if remote is True:
        kind = "zoo" if str(model).startswith("zoo:") else resolve_source(str(model))[0]
        if kind != "hub":
            raise ValueError(f"--remote runs on NDIF, which serves Hugging Face Hub models; '{model}' is a {'zoo model' if kind == 'zoo' else 'local folder'}: run it without --remote.")
        try:
            _configure_ndif()
        except RuntimeError as err:
            raise ValueError(str(err)) from None
    else:
        check_device(device)
    resolve_dtype(dtype, device)
    return selected


def run(model: str, chapters: list[str] | None = None, device: str = "cpu", dtype: str = "auto", remote: bool = False, extra: dict | None = None, out: Path | None = None, notebooks: Path | None = None, catalogue: tuple[Chapter, ...] | None = None) -> dict[str, str]:
    """Execute the chapters for `model` into runs/<slug>/; returns {chapter: 'ok' | error line}.

    Everything checkable is checked first (`plan`). Each notebook is executed to a temporary name
    and renamed to <chapter>.ipynb only when it ended OK, so the last good notebook stays until a new
    one succeeds; a failed run keeps its partly executed notebook as <chapter>.failed.ipynb.
    status.json is merged per chapter after each one (a `--chapters` run keeps the others'
    records). The kernel's own stderr goes to <chapter>.kernel.log. Ctrl-C raises RunInterrupted
    after removing the interrupted chapter's temporary notebook.
    `notebooks` and `catalogue` (default: notebooks/ and CHAPTERS) let tests run throwaway notebooks.
    """
    model = canonical_spec(model)
    notebooks = Path(notebooks or NOTEBOOKS)
    todo = plan(model, chapters, device, dtype, remote, extra, notebooks, catalogue)
    out = Path(out or RUNS / slug(model)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    is_zoo = str(model).startswith("zoo:")
    status = {}
    for chapter in todo:
        if chapter.zoo_only and not is_zoo:
            status[chapter.name] = "skipped (zoo only)"
            _record(out, model, chapter.name, status[chapter.name], {}, 0.0)
            continue
        params = {"model": model, "device": device, "dtype": dtype, "remote": remote, **(extra or {})}
        params = {k: v for k, v in params.items() if k in chapter_parameters(chapter.name, notebooks)}
        final, failed = out / f"{chapter.name}.ipynb", out / f"{chapter.name}.failed.ipynb"
        tmp = out / f".{chapter.name}.running-{os.getpid()}.ipynb"
        t0 = time.time()
        print(f"[effdepth] {chapter.name}: running on {model} …", flush=True)
        try:
            with _catch_ctrl_c():
                execute(notebooks / f"{chapter.name}.md", tmp, params, kernel_log=out / f"{chapter.name}.kernel.log")
        except KeyboardInterrupt:
            tmp.unlink(missing_ok=True)
            raise RunInterrupted(chapter.name, status, out) from None
        except Exception as err:  # keep going: one failing chapter must not cost the others
            if tmp.exists():
                os.replace(tmp, failed)
            status[chapter.name] = f"failed: {_error_line(err)}"
        else:
            os.replace(tmp, final)
            failed.unlink(missing_ok=True)
            status[chapter.name] = "ok"
        _record(out, model, chapter.name, status[chapter.name], params, time.time() - t0)
        print(f"[effdepth] {chapter.name}: {status[chapter.name]} ({time.time() - t0:.0f} s)", flush=True)
    return status


def _error_line(err: Exception) -> str:
    """One line for a failed chapter: the failing cell's exception ('RuntimeError: chapter broke')."""
    if getattr(err, "ename", None):
        line = f"{err.ename}: {err.evalue}".strip()
    else:
        text = str(err).strip()
        line = text.splitlines()[-1] if text else type(err).__name__
    return line.splitlines()[0] if line else type(err).__name__


def read_status(out: Path) -> dict:
    """runs/<slug>/status.json: {'model', 'chapters': {name: state}, 'runs': {name: record}}; {} if absent or unreadable."""
    try:
        data = json.loads((Path(out) / "status.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _record(out: Path, model: str, name: str, state: str, params: dict, seconds: float) -> None:
    """Merge one chapter's outcome into status.json (atomically): its state, when it finished, with
    which parameters, and, for a failed run, when the notebook still shown was made (`last_ok`)."""
    data = read_status(out)
    data["model"] = model
    previous = data.get("runs", {}).get(name) or {}
    entry = {"state": state, "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "seconds": round(seconds, 1), "parameters": params}
    if state.startswith("failed") and (out / f"{name}.ipynb").exists():
        if previous.get("state") == "ok":
            entry["last_ok"] = {k: previous.get(k) for k in ("finished", "parameters")}
        else:
            mtime = datetime.fromtimestamp((out / f"{name}.ipynb").stat().st_mtime, timezone.utc)
            entry["last_ok"] = previous.get("last_ok") or {"finished": mtime.strftime("%Y-%m-%d %H:%M:%S UTC"), "parameters": None}
    data.setdefault("chapters", {})[name] = state
    data.setdefault("runs", {})[name] = entry
    tmp = out / f".status.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=repr))
    os.replace(tmp, out / "status.json")


def build(model: str, runs_dir: Path | None = None, root: Path = ROOT) -> Path:
    """Render runs/<slug>/ into the HTML book under `root`/_build/html (warnings are errors).

    `root` holds `_config.yml`, `_toc.yml` and `book/`; returns the path of index.html. A chapter
    whose latest run failed is shown, when an older good notebook exists, as that notebook under a
    warning that names the failure; otherwise as its partly executed notebook under the error.
    """
    root = Path(root)
    model = canonical_spec(model)
    src = Path(runs_dir or RUNS / slug(model))
    if not src.exists():
        raise FileNotFoundError(f"No executed chapters in {src}: run `effdepth run --model {model}` first.")
    chapter_dir = root / "book" / "chapters"
    chapter_dir.mkdir(parents=True, exist_ok=True)
    for old in chapter_dir.glob("*.ipynb"):
        old.unlink()
    runs = read_status(src).get("runs", {})
    for chapter in CHAPTERS:
        executed, failed = src / f"{chapter.name}.ipynb", src / f"{chapter.name}.failed.ipynb"
        target = chapter_dir / f"{chapter.name}.ipynb"
        record = runs.get(chapter.name) or {}
        latest_failed = str(record.get("state", "failed" if failed.exists() else "")).startswith("failed")
        if executed.exists():
            _prepare_for_rendering(executed, target, failure=(failed, record) if latest_failed else None)
        elif latest_failed and failed.exists():
            _prepare_for_rendering(failed, target, failure=(failed, record))
        else:
            _placeholder(target, chapter, model, record.get("state") if latest_failed else None)
    _run_summary(src, model, chapter_dir)
    from .exercises.course import prepare_for_book

    prepare_for_book(root)  # the course part (executed by `make class`), the same for every model
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "--path-output", str(root), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-4000:])
        raise RuntimeError("jupyter-book build failed (warnings are errors); see the output above.")
    return root / "_build" / "html" / "index.html"


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
    return f"````{{{kind}}}\n**{title}**: `{line.replace('`', chr(39))}`\n\n{body}```text\n{traceback}\n```\n````"


def _prepare_for_rendering(executed: Path, target: Path, failure: tuple[Path, dict] | None = None) -> None:
    """Copy an executed notebook for the book, showing the parameters it really ran with once.

    papermill keeps the notebook's default `parameters` cell and adds an `injected-parameters`
    cell after it; the rendered page hides the defaults when the injected values exist. A notebook
    that failed gets an error banner on top and its failing cell shown (input and traceback, whatever
    its tags said) instead of papermill's bare marker cells. `failure` = (the latest, failed notebook,
    its status record): on a good notebook, a warning that the latest run failed and this is the last
    good one; on the failed notebook itself, the record's error line when no cell holds a traceback.
    """
    import nbformat

    nb = nbformat.read(executed, as_version=4)
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
        banners.append(_error_banner("error", "This chapter failed in this run", line, tb, "The page below stops at the failing cell; rerun the chapter after fixing the cause."))
    elif failure:  # the failure left no error in a cell (a dead kernel, a time-out): say what status.json says
        failed_nb, record = failure
        error = notebook_error(nbformat.read(failed_nb, as_version=4)) if failed_nb != executed and failed_nb.exists() else None
        line, tb = (error[1], error[2]) if error else (str(record.get("state", "failed")).removeprefix("failed: "), f"(no cell recorded a traceback; the kernel's own messages are in {failed_nb.name.replace('.failed.ipynb', '.kernel.log')})")
        when = record.get("finished", "at an unknown time")
        if failed_nb == executed:
            banners.append(_error_banner("error", f"This chapter failed in this run ({when})", line, tb, "The page below shows what ran before the failure."))
        else:
            good = (record.get("last_ok") or {}).get("finished") or "an earlier run"
            banners.append(_error_banner("warning", f"The latest run of this chapter ({when}) failed", line, tb, f"The results below are from the last successful run ({good})" + (f"; the failed notebook is `{failed_nb.name}` beside it." if failed_nb.exists() else ".")))
    nb.cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    if banners:
        title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), -1)
        nb.cells.insert(title + 1, nbformat.v4.new_markdown_cell("\n\n".join(banners)))
    nbformat.write(nb, target)


def _run_summary(src: Path, model: str, chapter_dir: Path) -> None:
    """book/chapters/run_summary.md: which model made this build's figures, and each chapter's state."""
    status = read_status(src).get("chapters", {})
    lines = [f"This build's figures were made by **`{model}`**.", ""]
    if str(model).startswith("zoo:"):
        lines[0] += " It is a small model of the project's own zoo, trained offline on generated data — not a pretrained LLM."
    lines += ["| chapter | state |", "| --- | --- |"]
    for chapter in CHAPTERS:
        state = status.get(chapter.name, "executed" if (src / f"{chapter.name}.ipynb").exists() else "not run")
        if state.startswith("failed") and (src / f"{chapter.name}.ipynb").exists():
            state += " (the page shows the last successful run)"
        lines.append(f"| {chapter.title} | {state.replace('|', '/')} |")
    (chapter_dir / "run_summary.md").write_text("\n".join(lines) + "\n")


def _placeholder(target: Path, chapter: Chapter, model: str, failed: str | None = None) -> None:
    """A short page saying why a chapter has no results for this model (keeps the TOC whole);
    `failed`: the state line of a run that failed before it wrote any notebook."""
    import nbformat

    why = "it runs on the project's zoo only" if chapter.zoo_only and not str(model).startswith("zoo:") else "it has not been executed for this model"
    if failed:
        why = f"its latest run {failed.replace('`', chr(39))}"
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {chapter.title}\n\nNo results for `{model}`: {why}. Run `effdepth run --model {model} --chapters {chapter.name}`."))
    nbformat.write(nb, target)
