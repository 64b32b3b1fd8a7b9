"""The rendered book as a reader sees it, built from every chapter that runs on a tiny random model:
every figure is numbered and captioned, no page shows raw TeX or a machine path, every link target
is well formed and resolves, every page lists all its parameters, and the intro's claims scorecard
says what the executed notebooks concluded."""

import html as htmllib
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from effdepth import render, running, scorecard
from effdepth.testing import save_tiny

pytestmark = pytest.mark.slow

CHAPTERS = ["contributions", "skipping", "logit_lens", "complexity", "linear_maps", "comparison"]
SMALL = dict(
    n_examples=4,
    n_controls=1,
    n_windows=24,
    window=32,
    sgd_steps=20,
    n_per_level=4,
    ig_steps=8,
    n_boot=50,
    n_perm=100,
    n_examples_future=3,
    n_reference=2,
    position_examples=1,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reader")
    model = save_tiny(tmp / "tiny-llama", "llama", n_layers=4)
    runs = tmp / "runs"
    status = running.run(str(model), chapters=CHAPTERS, extra=SMALL, out=runs)
    assert all(status[c] == "ok" for c in CHAPTERS), status
    root = tmp / "site"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(running.ROOT / name, root / name)
    shutil.copytree(running.ROOT / "book", root / "book", ignore=shutil.ignore_patterns("chapters"))
    render.build(str(model), runs_dir=runs, root=root)
    html_dir = root / "_build" / "html"
    pages = {p.relative_to(html_dir).as_posix(): p.read_text() for p in (html_dir / "book").rglob("*.html")}
    return model, runs, html_dir, pages, tmp


def _article(page: str) -> str:
    """The page's main article (what the reader reads), without scripts and styles."""
    m = re.search(r'<article class="bd-article"[^>]*>(.*?)</article>', page, re.S)
    body = m.group(1) if m else page
    return re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)


def _visible_text(page: str) -> str:
    """The article's text outside rendered math, code and preformatted blocks."""
    body = _article(page)
    body = re.sub(r'<(span|div) class="math[^"]*"[^>]*>.*?</\1>', " ", body, flags=re.S)
    body = re.sub(r"<(pre|code)\b.*?</\1>", " ", body, flags=re.S)
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", body))


def test_every_figure_is_numbered_captioned_and_linked_to_its_full_size(site):
    _, _, html_dir, pages, _ = site
    n_figures = 0
    for name in CHAPTERS:
        page = pages[f"book/chapters/{name}.html"]
        article = _article(page)
        figures = re.findall(r"<figure\b.*?</figure>", article, re.S)
        images = re.findall(r"<img\b[^>]*>", article)
        in_figures = sum(len(re.findall(r"<img\b", f)) for f in figures)
        assert images or name == "linear_maps", f"{name}: no figure"  # §3.4 draws nothing without a model pair
        assert in_figures == len(images), f"{name}: {len(images) - in_figures} image(s) outside a captioned figure"
        for fig in figures:
            caption = re.search(r"<figcaption>(.*?)</figcaption>", fig, re.S)
            assert caption, f"{name}: a figure without a caption"
            text = re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", "", caption.group(1))))
            assert re.search(r"Fig\. \d+\.\d+", text), f"{name}: caption not numbered: {text[:80]}"
            assert "tiny-llama" in text or name == "linear_maps", (
                f"{name}: caption does not name the model: {text[:120]}"
            )
            assert "Look for" in text or "As Fig." in text, (
                f"{name}: caption does not say what to look at: {text[:120]}"
            )
            link = re.search(r'<a class="reference internal image-reference" href="([^"]+)"', fig)
            if "<img" not in fig:  # a figure this run could not draw (its sentence says why)
                continue
            assert link and (html_dir / "book" / "chapters" / unquote(link.group(1))).resolve().exists(), (
                f"{name}: no link to the full-size image"
            )
            n_figures += 1
    assert n_figures >= 25
    # figures are referenced from the text: a numref link to a figure's id on the same page
    refs = re.findall(r'<a class="reference internal" href="#(fig-[\w-]+)"', pages["book/chapters/contributions.html"])
    assert "fig-contributions-rel" in refs


def test_no_page_shows_raw_tex_or_a_machine_path(site):
    model, _, _, pages, tmp = site
    assert len(pages) >= 10
    for name, page in pages.items():
        text = _visible_text(page)
        assert not re.search(r"\$[^$\n]*[\\^_{}][^$\n]*\$", text), (
            f"{name}: unrendered $…$ math: {re.search(r'.{30}[$].{30}', text)}"
        )
        assert not re.search(r"\\(top|lVert|rVert|frac|cdot|mathrm|alpha|ell|sum)\b", text), f"{name}: raw TeX command"
        article = _article(page)
        for path in (str(tmp), str(model), str(Path.home()), str(running.ROOT)):
            assert path not in article, f"{name}: machine path {path}"
        assert not re.search(
            r"(?<![\w:/.~-])/(tmp|root|home|Users|work)/[\w.-]+", htmllib.unescape(re.sub(r"<[^>]+>", "", article))
        ), f"{name}: an absolute path"


def test_every_link_target_is_well_formed_and_resolves(site):
    _, _, html_dir, pages, _ = site
    ids = {name: set(re.findall(r'\bid="([^"]+)"', page)) for name, page in pages.items()}
    external = set()
    for name, page in pages.items():
        for href in re.findall(r'<a\b[^>]*\bhref="([^"]*)"', _article(page)):
            href = htmllib.unescape(href)
            url = urlparse(href)
            if url.scheme:
                assert url.scheme in ("http", "https") and re.fullmatch(r"[\w.-]+\.[a-z]{2,}", url.netloc), (
                    f"{name}: malformed external link {href!r}"
                )
                external.add(url.netloc)
                continue
            assert href and " " not in href, f"{name}: malformed link {href!r}"
            target = name if not url.path else (Path(name).parent / unquote(url.path)).as_posix()
            target = str(Path(target)).replace("\\", "/")
            resolved = (html_dir / target).resolve()
            assert resolved.exists(), f"{name}: link to a missing file {href!r}"
            if url.fragment and resolved.suffix == ".html":
                key = resolved.relative_to(html_dir.resolve()).as_posix()
                assert url.fragment in ids.get(key, set(re.findall(r'\bid="([^"]+)"', resolved.read_text()))), (
                    f"{name}: link to a missing anchor {href!r}"
                )
    assert {"arxiv.org", "github.com", "ndif.us", "nnsight.net"} <= external


def test_every_page_lists_all_its_parameters_with_the_set_ones_marked(site):
    _, _, _, pages, _ = site
    page = _article(pages["book/chapters/contributions.html"])
    code = htmllib.unescape(re.sub(r"<[^>]+>", "", page))
    assert re.search(r"n_examples\s*=\s*4\s*# set for this run", code)
    assert re.search(r"batch_size\s*=\s*8", code) and re.search(r"seed\s*=\s*0", code)  # defaults shown too
    assert "'tiny-llama'" in code and code.count("n_examples =") == 1  # once, path-free


def test_the_scorecard_is_written_from_the_executed_notebooks(site):
    _, runs, _, pages, _ = site
    intro = _visible_text(pages["book/intro.html"])
    glued = scorecard.glued_values(nbformat.read(runs / "contributions.ipynb", as_version=4))
    intro = re.sub(r"\s+", " ", intro)
    row = re.search(r"Second-half layers write much less.*?Fig 2a\)\. (.*?) §3\.1 ,", intro)
    assert row and glued["paper_shape"] in row.group(1) and "tiny-llama" in row.group(1)  # the verdict and the model
    assert "not run in this build" in intro  # §3.5 did not run: the card says so instead of a verdict
    assert intro.count("Fig.") >= 5  # claims link to their figures


def test_split_points_sentence_counts_what_each_prompt_got():
    from types import SimpleNamespace

    import numpy as np

    from effdepth.chapters.skipping import split_findings

    fut = SimpleNamespace(split_points=np.array([[8, 16, -1, -1], [8, -1, -1, -1], [8, 16, 24, 32]]))
    f = split_findings(fut, n_splits=4, split_step=8)
    assert f.numbers["splits_total"] == 7 and f.numbers["splits_max"] == 4
    assert "1 prompt with 4, 1 prompt with 2, 1 prompt with 1" in f.text["split_text"]


def test_no_page_has_an_uncaptioned_or_empty_figure_a_bad_table_or_an_unresolved_glue(site):
    """The reader's defects of issue 24, on every page of the book (tests/book_checks.py; each check is
    tried on a deliberately broken page in tests/notebooks/test_book_checks.py)."""
    import jupytext

    from tests import book_checks

    _, runs, _, pages, _ = site
    problems = {}
    for name, page in pages.items():
        found = book_checks.figure_defects(page) + book_checks.table_defects(page)
        if found:
            problems[name] = found
    for chapter in CHAPTERS:
        executed = nbformat.read(runs / f"{chapter}.ipynb", as_version=4)
        glued = {
            o.get("metadata", {}).get("scrapbook", {}).get("name")
            for c in executed.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
        }
        markdown = "\n".join(
            c.source for c in jupytext.read(running.NOTEBOOKS / f"{chapter}.md").cells if c.cell_type == "markdown"
        )
        found = book_checks.glue_defects(markdown, glued)
        if found:
            problems[f"notebooks/{chapter}.md"] = found
    assert problems == {}
    tables = sum(page.count("<table") for page in pages.values())
    assert tables >= 10  # the checks did read tables (every chapter's numbers and run-info tables)
