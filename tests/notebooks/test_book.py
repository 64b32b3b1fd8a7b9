"""The §3.1 notebook executes under papermill on a tiny model, and the book renders it with figures."""

import re
import shutil

import nbformat
import pytest

from effdepth import render, running
from effdepth.spec import ModelSpec
from effdepth.testing import save_tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    model = save_tiny(tmp / "tiny-llama", "llama", n_layers=3)
    runs = tmp / "runs"
    out = running.execute(
        running.NOTEBOOKS / "contributions.md", runs / "contributions.ipynb", {"model": str(model), "n_examples": 4}
    )
    return model, runs, out


def _site(tmp_path):
    """A copy of the book's sources (config, TOC, prose pages) to build into, outside the repository."""
    root = tmp_path / "site"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(running.ROOT / name, root / name)
    shutil.copytree(running.ROOT / "book", root / "book", ignore=shutil.ignore_patterns("chapters"))
    return root


def test_contributions_notebook_runs_and_states_its_model(executed):
    model, _, out = executed
    nb = nbformat.read(out, as_version=4)
    shown = (
        "text/markdown",
        "text/plain",
        "text/html",
        "application/papermill.record/text/markdown",
    )  # glued sentences and tables too
    text = "\n".join(
        "".join(str(o.get("data", {}).get(m, "")) for m in shown) + str(o.get("text", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert (
        f"{model.name} (local folder)" in text
    )  # the run says which model made it (by name: a page shows no machine path)
    assert "random init" in text or "random-init control" in text  # and that a control was measured
    # sentences come from effdepth.chapters: tests/test_notebook_lint.py checks every notebook's code cells
    assert "torch" in text and "transformers" in text and "nnsight" in text  # versions stamped
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if any(k.endswith("image/png") for k in o.get("data", {}))
    ]
    assert len(images) >= 5  # Figs 2a (mean, max), 2b, 15, 16
    assert not any(
        o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert not any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def test_book_builds_with_the_chapter_and_its_figures(executed, tmp_path):
    model, runs, _ = executed
    root = _site(tmp_path)
    index = render.build(str(model), runs_dir=runs, root=root)
    assert index.exists()
    page = root / "_build" / "html" / "book" / "chapters" / "contributions.html"
    html = page.read_text()
    assert "How much does each layer write into the residual" in html
    assert "second-to-first-half ratio" in html and "random-init control" in html  # glued findings render
    methods = (root / "_build" / "html" / "book" / "methods.html").read_text()
    assert "Verdict rules" in methods and "paper_shape" in methods  # the rules files are included
    srcs = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert len(srcs) >= 5
    for src in srcs:
        img = (page.parent / src).resolve()
        assert img.exists() and img.stat().st_size > 5000, img
    intro = (root / "_build" / "html" / "book" / "intro.html").read_text()
    assert str(model.name) in intro or str(model) in intro  # which model made the figures
    # a chapter that was not executed gets a page saying so, not a hole in the TOC
    assert "No results for" in (root / "_build" / "html" / "book" / "chapters" / "skipping.html").read_text()


def test_each_chapter_gets_only_the_parameters_it_declares(tmp_path):
    assert {"model", "device", "dtype", "remote"} <= running.chapter_parameters("contributions")
    assert "model" not in running.chapter_parameters("zoo")  # the zoo page is about the zoo, not one model
    with pytest.raises(ValueError, match="n_exampels"):  # a typo in --set fails before anything runs
        running.run("zoo:default", extra={"n_exampels": 4}, out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_one_book_of_two_models_gives_each_chapter_a_main_page_and_sub_pages(executed, tmp_path, monkeypatch):
    """`effdepth book --models a,b`: the first model with a run of a chapter makes its page, the
    other's run is a sub-page in the TOC, and every page names its model; nothing is re-run. The
    chapters' saved curves of both are overlaid on a side-by-side page; the Runs page lists both."""
    from effdepth import curves

    model, runs, _ = executed
    root = _site(tmp_path)
    other = tmp_path / "runs-b"
    other.mkdir()
    shutil.copy(runs / "contributions.ipynb", other / "contributions.ipynb")
    monkeypatch.setattr(running, "RUNS", tmp_path / "no-runs-here")
    for spec, folder, L in (("zoo:llama-2l", other, 2), (str(model), runs, 3)):
        curves.save(
            "contributions",
            (spec, L),
            {
                "rel_attn": curves.curve(
                    range(L), [0.5] * L, "Layer", "Relative contribution", "Attention", control=[0.4] * L
                )
            },
            path=curves.path_of(folder, "contributions"),
        )
    render.build(["zoo:llama-2l", str(model)], root=root, runs_dirs=[other, runs])
    html = root / "_build" / "html" / "book" / "chapters"
    main = (html / "contributions.html").read_text()
    sub_name = f"contributions--{ModelSpec.parse(str(model)).slug}"
    sub = (html / f"{sub_name}.html").read_text()
    assert "zoo:llama-2l" in main and "not a pretrained LLM" in main  # the main page names its model
    assert sub_name in main  # and links the sub-page
    assert model.name in sub and "— on" in sub  # the sub-page names its model in the title
    toc = (root / "book" / "chapters" / "_toc.yml").read_text()
    assert f"book/chapters/{sub_name}" in toc and "book/chapters/contributions" in toc
    sbs = (html / "contributions--side-by-side.html").read_text()
    assert "side by side" in sbs and "zoo:llama-2l" in sbs and model.name in sbs and "relative depth" in sbs
    assert (
        "book/chapters/contributions--side-by-side" in toc and "contributions--side-by-side" in main
    )  # in the TOC, linked from the page
    assert (html / "runs.html").exists() and "book/chapters/runs" in toc
    runs_page = (html / "runs.html").read_text()
    assert "zoo:llama-2l" in runs_page and model.name in runs_page and str(tmp_path) not in runs_page
    summary = (root / "book" / "chapters" / "run_summary.md").read_text()
    assert "| §3.1 Residual contributions | zoo:llama-2l |" in summary
    assert str(model) not in summary and model.name in summary  # the local folder by its name, not its machine path
    with pytest.raises(FileNotFoundError, match="no-such"):
        render.build(["zoo:llama-2l", "no-such/model"], root=root, runs_dirs=[other, tmp_path / "absent"])
