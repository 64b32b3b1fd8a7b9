"""`effdepth run` keeps going past a failing chapter, records status, and keeps the failed notebook."""

import json

import nbformat
import pytest

from effdepth import running
from effdepth.chapters import registry
from effdepth.cli import main
from effdepth.spec import ModelSpec
from effdepth.testing import save_tiny

pytestmark = pytest.mark.slow

HEADER = "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"


def _nb(body: str) -> str:
    return (
        HEADER
        + "# T\n\n```{code-cell} ipython3\n:tags: [parameters]\nmodel = 'x'\n```\n\n```{code-cell} ipython3\n"
        + body
        + "\n```\n"
    )


def test_run_survives_a_failing_chapter(tmp_path, monkeypatch, capsys):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    (nbdir / "bad.md").write_text(_nb("raise RuntimeError('chapter broke')"))
    (nbdir / "good.md").write_text(_nb("print('model is', model)"))
    monkeypatch.setattr(running, "NOTEBOOKS", nbdir)
    monkeypatch.setattr(running, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(
        registry,
        "CHAPTERS",
        (
            registry.Chapter("bad", "Bad"),
            registry.Chapter("good", "Good"),
            registry.Chapter("zooonly", "Z", zoo_only=True),
        ),
    )
    (nbdir / "zooonly.md").write_text(_nb("pass"))
    model = save_tiny(tmp_path / "tiny")
    rc = main(["run", "--model", str(model)])
    assert rc == 1  # a failed chapter makes the command fail …
    out = tmp_path / "runs" / ModelSpec.parse(str(model)).slug
    status = json.loads((out / "status.json").read_text())["chapters"]
    assert status["bad"].startswith("failed") and "chapter broke" in status["bad"]
    assert status["good"] == "ok"  # … but the next chapter still ran
    assert status["zooonly"].startswith("skipped")
    good = nbformat.read(out / "good.ipynb", as_version=4)
    assert any(str(model) in o.get("text", "") for c in good.cells for o in c.get("outputs", []))
    bad = nbformat.read(out / "bad.failed.ipynb", as_version=4)  # the partly executed notebook is kept, with its error
    assert not (out / "bad.ipynb").exists()  # and never under the name of a good one
    assert any(o.get("output_type") == "error" for c in bad.cells for o in c.get("outputs", []))
    assert "bad.failed.ipynb" in capsys.readouterr().err
