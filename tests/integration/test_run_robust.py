"""`effdepth run` under hostile input and faults (issue 11, items 4, 5, 6 and Ctrl-C): bad input fails
before any chapter starts with one line; a failed or interrupted rerun never replaces the last good
notebook; status.json merges per chapter; slugs stay one safe component inside runs/."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from effdepth import render, running
from effdepth.access.model import Model
from effdepth.chapters import registry
from effdepth.cli import main
from effdepth.spec import ModelSpec
from effdepth.testing import save_tiny

HEADER = "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"


def _nb(params: str, body: str, body_tags: str = "") -> str:
    tags = f":tags: [{body_tags}]\n" if body_tags else ""
    return (
        HEADER
        + "# T\n\n```{code-cell} ipython3\n:tags: [parameters]\n"
        + params
        + "\n```\n\n```{code-cell} ipython3\n"
        + tags
        + body
        + "\n```\n"
    )


CATALOGUE = (registry.Chapter("good", "Good"), registry.Chapter("flaky", "Flaky"), registry.Chapter("sleepy", "Sleepy"))


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    d = tmp_path_factory.mktemp("notebooks")
    # a chapter that only works when `model` is an absolute path to an existing folder
    (d / "good.md").write_text(
        _nb(
            "model = 'x'\nn_examples = 20",
            "import os\nassert os.path.isabs(model) and os.path.isdir(model), model\nprint('model is', model)",
        )
    )
    (d / "flaky.md").write_text(
        _nb(
            "model = 'x'\nfail = False",
            "if fail:\n    raise RuntimeError('flaky broke on purpose')\nprint('flaky fine')",
            body_tags="remove-input",
        )
    )
    (d / "sleepy.md").write_text(
        _nb("model = 'x'\nmarker = ''", "import os, time\nopen(marker, 'w').write(str(os.getpid()))\ntime.sleep(120)")
    )
    (d / "dies.md").write_text(_nb("model = 'x'", "import os\nos._exit(3)"))  # the kernel dies: no cell error
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("m") / "models" / "x", n_layers=2, d_model=32)


@pytest.fixture
def in_book(notebooks, tmp_path, monkeypatch):
    """book.* pointed at the throwaway notebooks and a fresh runs/ folder (for CLI calls)."""
    monkeypatch.setattr(running, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(running, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(registry, "CHAPTERS", CATALOGUE)
    return tmp_path / "runs"


# ---- item 5: paths and slugs ---------------------------------------------------------------------


def test_relative_model_folder_is_resolved_once_for_every_chapter(tiny, in_book, monkeypatch, capsys):
    monkeypatch.chdir(tiny.parent.parent)  # `--model models/x`, relative; notebooks run in another cwd
    assert ModelSpec.parse("models/x").text == str(tiny.resolve())
    rc = main(["run", "--model", "models/x", "--chapters", "good"])
    assert rc == 0, capsys.readouterr().err
    out = in_book / ModelSpec.parse("models/x").slug
    status = json.loads((out / "status.json").read_text())
    assert status["chapters"] == {"good": "ok"} and status["model"] == str(tiny.resolve())
    assert (
        ModelSpec.parse("models/x").slug == ModelSpec.parse(str(tiny.resolve())).slug
    )  # relative or absolute: the same run folder


HOSTILE = [
    ".",
    "..",
    "./",
    "../..",
    "/",
    "a/..",
    "~",
    "",
    "zoo:../../etc",
    "../../../../etc/passwd",
    "..\\..",
    "x/../../..",
    "\x00",
    "-",
    "...",
    "a" * 300,
    "Qwen/../../x",
    "ü/ß",
]


@pytest.mark.parametrize("spec", HOSTILE)
def test_a_slug_is_one_safe_component_inside_runs(spec, tmp_path):
    s = ModelSpec.parse(spec).slug
    runs = tmp_path / "runs"
    assert s and s not in (".", "..") and "/" not in s and "\\" not in s and "\x00" not in s and len(s) <= 100
    assert (runs / s).resolve().parent == runs.resolve()
    assert Model(spec=spec, nn=None, tokenizer=None, adapter=None).slug == s  # one slug function for both


def test_same_named_folders_get_different_run_folders_and_names_stay_readable(tmp_path):
    a, b = tmp_path / "one" / "model", tmp_path / "two" / "model"
    a.mkdir(parents=True), b.mkdir(parents=True)
    assert (
        ModelSpec.parse(str(a)).slug != ModelSpec.parse(str(b)).slug
        and ModelSpec.parse(str(a)).slug.startswith("model-")
        and ModelSpec.parse(str(b)).slug.startswith("model-")
    )
    assert (
        ModelSpec.parse("zoo:llama-8l").slug == "zoo-llama-8l"
        and ModelSpec.parse("Qwen/Qwen2.5-1.5B").slug == "Qwen-Qwen2.5-1.5B"
    )
    assert ModelSpec.parse(str(tmp_path / "one" / ".")).slug != ModelSpec.parse(str(tmp_path / "two" / ".")).slug


# ---- item 6: fail before work --------------------------------------------------------------------

ATTACKS = [
    (["--chapters", "nosuch"], "Unknown chapter(s) nosuch; the chapters are: good, flaky, sleepy."),
    (["--set", "n_examples=abc"], "n_examples expects an int (default 20), got 'abc'"),
    (["--set", "n_examples=0"], "n_examples counts something and expects a positive int (default 20), got 0"),
    (["--set", "n_examples=-3"], "n_examples counts something and expects a positive int (default 20), got -3"),
    (["--set", "fail=yes"], "fail expects True or False (default False), got 'yes'"),
    (["--set", "n_exampels=4"], "No chapter has the parameter(s) n_exampels"),
    (["--device", "gpu"], "Unknown device 'gpu'"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--remote"], "--remote runs on NDIF, which serves Hugging Face Hub models"),
    (["--set", "remote=True"], "Set remote with --remote (checked before the run), not with --set."),
    (["--dtype", "int8"], "Unknown dtype 'int8'"),
]


@pytest.mark.parametrize("args,message", ATTACKS, ids=[" ".join(a) for a, _ in ATTACKS])
def test_bad_input_fails_in_one_line_before_any_chapter(args, message, tiny, in_book, capsys):
    rc = main(["run", "--model", str(tiny), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and len(err.splitlines()) == 1 and err.startswith("effdepth: ")
    assert not in_book.exists()  # nothing ran, nothing was written


def test_cuda_without_a_gpu_is_one_line(tiny, in_book, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["run", "--model", str(tiny), "--device", "cuda"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"effdepth: --device cuda needs a CUDA GPU, and torch sees none on this machine (torch {torch.__version__}); use --device cpu."
    )


def test_remote_without_a_key_fails_before_any_chapter(in_book, monkeypatch, capsys):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    assert main(["run", "--model", "someorg/some-hub-model", "--remote"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "effdepth: Remote execution on NDIF needs an API key: set NDIF_API_KEY (get one at nnsight.net)."
    )
    assert (
        main(["run", "--model", "zoo:default", "--remote"]) == 2
    )  # the zoo is never on NDIF: no chapter "ok" unmeasured
    assert "is a zoo model: run it without --remote" in capsys.readouterr().err
    assert not in_book.exists()


def test_parameter_rule_accepts_what_fits_and_refuses_the_rest():
    ok = [
        ("n_examples", 5, 20),
        ("batch_size", 1, 8),
        ("steps", None, None),
        ("steps", 300, None),
        ("dataset", "gsm8k", "auto"),
        ("controls", False, True),
        ("seeds", [3, 4], [0, 1]),
        ("models", ["a", "b"], None),
        ("seed", -1, 0),
        ("lr", 1, 0.5),
    ]
    for name, value, default in ok:
        running.check_parameter(name, value, default)
    bad = [
        ("n_examples", "abc", 20),
        ("n_examples", 0, 20),
        ("n_examples", -3, 20),
        ("n_examples", 2.5, 20),
        ("n_examples", True, 20),
        ("steps", 0, None),
        ("workers", -1, None),
        ("ig_steps", 0, 64),
        ("controls", 1, True),
        ("seeds", 3, [0]),
        ("lr", "x", 0.5),
    ]
    for name, value, default in bad:
        with pytest.raises(ValueError, match=name):
            running.check_parameter(name, value, default)


def test_declared_parameters_come_with_their_default_literals(notebooks):
    assert running.chapter_defaults("good", notebooks) == {"model": "x", "n_examples": 20}
    import jupytext

    nb = jupytext.reads(_nb("a = 1\nb = [1, 2]  # a list\nc = os.cpu_count()\n# d = 4", "pass"), fmt="md:myst")
    declared = running._declared_parameters(nb)
    assert (
        declared["a"] == 1 and declared["b"] == [1, 2] and declared["c"] is running._NO_LITERAL and "d" not in declared
    )
    running.check_parameter("c", "anything", declared["c"])  # not a literal: its type is not checked


# ---- item 4: broken runs are never shown as good -------------------------------------------------


@pytest.fixture(scope="module")
def reruns(tiny, notebooks, tmp_path_factory):
    """good+flaky ok; then flaky alone with fail=True; returns (out, flaky.ipynb bytes before, second outcome, first status)."""
    out = tmp_path_factory.mktemp("runs") / "x"
    kw = dict(notebooks=notebooks, catalogue=CATALOGUE, out=out)
    assert running.run(str(tiny), chapters=["good", "flaky"], **kw) == {"good": "ok", "flaky": "ok"}
    before, first = (out / "flaky.ipynb").read_bytes(), running.read_status(out)
    second = running.run(str(tiny), chapters=["flaky"], extra={"fail": True}, **kw)
    snapshot = out.parent / "after-the-failure"  # for the page tests (a later test reruns flaky)
    shutil.copytree(out, snapshot)
    return out, before, second, first, snapshot


def test_a_failed_rerun_keeps_the_last_good_notebook_and_merges_status(reruns):
    out, before, second, first, _ = reruns
    assert second == {"flaky": "failed: RuntimeError: flaky broke on purpose"}
    assert (out / "flaky.ipynb").read_bytes() == before  # the good notebook is untouched
    failed = nbformat.read(out / "flaky.failed.ipynb", as_version=4)
    assert render.notebook_error(failed)[1] == "RuntimeError: flaky broke on purpose"
    status = json.loads((out / "status.json").read_text())
    assert status["chapters"] == {"good": "ok", "flaky": "failed: RuntimeError: flaky broke on purpose"}  # good kept
    assert status["runs"]["flaky"]["parameters"]["fail"] is True and status["runs"]["good"]["parameters"] == {
        "model": status["model"]
    }
    assert status["runs"]["flaky"]["last_ok"] == {
        k: first["runs"]["flaky"][k] for k in ("finished", "parameters")
    }  # what the page shows
    assert status["runs"]["good"] == first["runs"]["good"]
    assert not list(out.glob(".*running*"))  # no temporary notebook left


def test_the_page_of_a_failed_chapter_shows_its_error(reruns, tmp_path):
    out = reruns[4]
    target = tmp_path / "page.ipynb"
    render._prepare_for_rendering(
        out / "flaky.failed.ipynb", target
    )  # no good notebook: the failed one, with its error
    nb = nbformat.read(target, as_version=4)
    banner = next(c.source for c in nb.cells if c.cell_type == "markdown" and "{error}" in c.source)
    assert "RuntimeError: flaky broke on purpose" in banner and "raise RuntimeError" in banner
    failing = nb.cells[render.notebook_error(nb)[0]]
    assert "remove-input" not in failing.metadata.get("tags", [])  # the failing cell is shown
    assert not any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in nb.cells)
    # with an older good notebook: that one, under a warning naming the latest failure
    record = json.loads((out / "status.json").read_text())["runs"]["flaky"]
    render._prepare_for_rendering(out / "flaky.ipynb", target, failure=(out / "flaky.failed.ipynb", record))
    nb = nbformat.read(target, as_version=4)
    warning = next(c.source for c in nb.cells if c.cell_type == "markdown" and "{warning}" in c.source)
    assert (
        "latest run of this chapter" in warning
        and "flaky broke on purpose" in warning
        and record["last_ok"]["finished"] in warning
    )
    assert any("flaky fine" in o.get("text", "") for c in nb.cells for o in c.get("outputs", []))  # the good results


def test_a_dead_kernel_is_a_failure_with_a_page_that_says_so(tiny, notebooks, tmp_path):
    out = tmp_path / "runs"
    assert running.run(str(tiny), notebooks=notebooks, catalogue=(registry.Chapter("dies", "Dies"),), out=out) == {
        "dies": "failed: Kernel died"
    }
    assert not (out / "dies.ipynb").exists() and (out / "dies.failed.ipynb").exists()
    render._prepare_for_rendering(
        out / "dies.failed.ipynb",
        tmp_path / "page.ipynb",
        failure=(out / "dies.failed.ipynb", running.read_status(out)["runs"]["dies"]),
    )
    banner = nbformat.read(tmp_path / "page.ipynb", as_version=4).cells[1].source
    assert "{error}" in banner and "Kernel died" in banner and "dies.kernel.log" in banner


@pytest.mark.slow
def test_the_built_book_shows_failures_visibly(reruns, tmp_path):
    """Rendered by jupyter-book (-W): a chapter that only failed shows its error; a chapter whose
    latest run failed shows its last good results under a warning naming the failure."""
    snapshot, runs = reruns[4], tmp_path / "runs"
    runs.mkdir()
    shutil.copy(snapshot / "flaky.failed.ipynb", runs / "contributions.failed.ipynb")
    shutil.copy(snapshot / "flaky.ipynb", runs / "skipping.ipynb")
    shutil.copy(snapshot / "flaky.failed.ipynb", runs / "skipping.failed.ipynb")
    status = running.read_status(snapshot)
    record = status["runs"]["flaky"]
    (runs / "status.json").write_text(
        json.dumps(
            {
                "model": status["model"],
                "chapters": {"contributions": record["state"], "skipping": record["state"]},
                "runs": {"contributions": {k: v for k, v in record.items() if k != "last_ok"}, "skipping": record},
            }
        )
    )
    root = tmp_path / "site"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(running.ROOT / name, root / name)
    shutil.copytree(running.ROOT / "book", root / "book", ignore=shutil.ignore_patterns("chapters"))
    render.build(status["model"], runs_dir=runs, root=root)
    pages = root / "_build" / "html" / "book" / "chapters"
    failed = pages.joinpath("contributions.html").read_text()
    assert (
        "This chapter failed in this run" in failed
        and "flaky broke on purpose" in failed
        and "raise RuntimeError" in failed
    )
    older = pages.joinpath("skipping.html").read_text()
    assert "The latest run of this chapter" in older and "flaky broke on purpose" in older and "flaky fine" in older
    intro = (root / "_build" / "html" / "book" / "intro.html").read_text()
    assert "the page shows the last successful run" in intro


def test_a_good_rerun_replaces_the_failed_one(reruns, tiny, notebooks):
    out = reruns[0]
    assert running.run(str(tiny), chapters=["flaky"], notebooks=notebooks, catalogue=CATALOGUE, out=out) == {
        "flaky": "ok"
    }
    assert not (out / "flaky.failed.ipynb").exists()
    status = json.loads((out / "status.json").read_text())
    assert status["chapters"] == {"good": "ok", "flaky": "ok"} and "last_ok" not in status["runs"]["flaky"]


# ---- item 10: Ctrl-C -----------------------------------------------------------------------------

SCRIPT = """
import sys
from pathlib import Path
from effdepth import render, running
from effdepth.chapters import registry
from effdepth.cli import main
running.NOTEBOOKS, running.RUNS = Path(sys.argv[1]), Path(sys.argv[2])
registry.CHAPTERS = (registry.Chapter("good", "Good"), registry.Chapter("sleepy", "Sleepy"))
sys.exit(main(["run", "--model", sys.argv[3], "--set", "marker=" + sys.argv[4]]))
"""


def test_ctrl_c_ends_with_one_line_exit_130_and_keeps_the_good_notebook(tiny, notebooks, tmp_path):
    runs, marker = tmp_path / "runs", tmp_path / "kernel.pid"
    out = runs / ModelSpec.parse(str(tiny)).slug
    out.mkdir(parents=True)
    (out / "sleepy.ipynb").write_text("the previous good notebook")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(running.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(notebooks), str(runs), str(tiny), str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # the sleepy chapter has started (its kernel wrote its pid)
            if marker.exists() and marker.read_text() or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert (
        lines[0].startswith("effdepth: interrupted during chapter sleepy. Kept: the chapters finished before it (good)")
        and "Rerun the same command to resume." in lines[0]
    )
    assert (out / "sleepy.ipynb").read_text() == "the previous good notebook"
    assert json.loads((out / "status.json").read_text())["chapters"] == {"good": "ok"}
    assert not list(out.glob(".*running*"))
    kernel = int(marker.read_text())
    for _ in range(50):  # the chapter's kernel does not outlive the run
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(kernel, signal.SIGKILL)
        pytest.fail("the interrupted chapter's kernel was left running")


def test_set_scoped_to_one_chapter_wins_there_and_is_checked(tmp_path):
    """`--set skipping.n_examples=6` sizes one chapter; a typo in the chapter or parameter fails first."""
    from effdepth import running

    shared, scoped = running.split_scoped({"n_examples": 10, "skipping.n_examples": 6, "logit_lens.k": 3})
    assert shared == {"n_examples": 10} and scoped == {"skipping": {"n_examples": 6}, "logit_lens": {"k": 3}}
    running.plan("zoo:llama-2l", extra={"n_examples": 10, "skipping.n_examples": 6})
    with pytest.raises(ValueError, match="no chapter 'skiping'"):
        running.plan("zoo:llama-2l", extra={"skiping.n_examples": 6})
    with pytest.raises(ValueError, match="Chapter contributions has no parameter.*n_splits"):
        running.plan("zoo:llama-2l", extra={"contributions.n_splits": 2})
    with pytest.raises(ValueError, match="positive int"):
        running.plan("zoo:llama-2l", extra={"skipping.n_examples": 0})
    with pytest.raises(ValueError, match="--model"):
        running.plan("zoo:llama-2l", extra={"skipping.model": "x"})
