"""The chapter registry (`effdepth.chapters.registry`) is the single source of the chapter list: the
TOC, the Makefile's job lists, the profiles, the methods page's rule pages and each chapter's files are
checked against it here."""

import importlib
import re
from pathlib import Path

import pytest
import yaml

import effdepth
from effdepth import calibration, curves, profiles
from effdepth.chapters.registry import BOOK_JOBS, CHAPTERS, by_name, job_chapters

ROOT = Path(__file__).resolve().parents[2]
PARTS = {"Setting": "setting", "The paper's sections": "paper", "Beyond the paper": "beyond"}


def makefile_variable(name: str) -> str:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{name}\s*[?:]?=\s*(.*)$", text, re.M)
    assert m, f"{name} not in the Makefile"
    return m.group(1).strip()


def test_the_toc_lists_the_registered_chapters_in_order_and_in_their_parts():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = [
        (PARTS[p["caption"]], c["file"])
        for p in toc["parts"]
        if p["caption"] in PARTS
        for c in p["chapters"]
        if c["file"].startswith("book/chapters/")
    ]
    assert listed == [(c.part, c.page) for c in CHAPTERS]


def test_the_makefile_job_lists_are_the_registrys():
    assert makefile_variable("ZOO_CHAPTERS").split() == list(BOOK_JOBS["zoo"])
    assert makefile_variable("FREE_CHAPTERS").split() == list(BOOK_JOBS["free"])
    assert makefile_variable("SMOLLM_CHAPTERS").split(",") == list(BOOK_JOBS["pretrained"])


def test_make_book_runs_every_chapter_once_on_its_kind_of_model():
    zoo_side = job_chapters("zoo") + job_chapters("free")
    assert sorted(zoo_side) == sorted(c.name for c in CHAPTERS if not c.pretrained_only)  # each once
    pretrained = job_chapters("pretrained")
    assert len(pretrained) == len(set(pretrained))
    assert all(not by_name(c).zoo_only for c in pretrained)
    assert {c.name for c in CHAPTERS if c.pretrained_only} <= set(pretrained)


def test_an_unknown_chapter_is_named_with_the_list():
    with pytest.raises(ValueError, match="no chapter 'lens'.*logit_lens"):
        by_name("lens")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_every_place_of_a_chapter_exists_and_is_used(chapter):
    notebook = (ROOT / chapter.notebook).read_text()
    module = (ROOT / "effdepth" / "chapters" / f"{chapter.findings}.py").read_text() if chapter.findings else ""
    made = notebook + module  # what the page runs: its notebook, and its chapter module's functions
    if chapter.findings:
        importlib.import_module(f"effdepth.chapters.{chapter.findings}")
        assert any((ROOT / "tests").glob(f"*/test_{pre}{chapter.findings}.py") for pre in ("chapter_", ""))
        assert (ROOT / "book" / "methods" / f"{chapter.name}-rules.md").exists() or chapter.name in (
            "model",
            "comparison",
        )
    if chapter.figures:
        importlib.import_module(f"effdepth.plots.{chapter.figures}")
        assert re.search(
            rf"from effdepth\.plots(?: import {chapter.figures} as \w+|\.{chapter.figures} import)", made
        ), f"{chapter.name} does not draw with effdepth.plots.{chapter.figures}"
    if chapter.curves:
        assert callable(getattr(curves, chapter.curves))
        assert re.search(rf'curves\.save\(\s*"{chapter.name}"', made) and f"curves.{chapter.curves}(" in made
    else:
        assert "curves.save(" not in made
    for name in chapter.measures:
        assert callable(getattr(effdepth, name)), name


def test_profiles_size_registered_chapters_only():
    for profile in profiles.PROFILES.values():
        for values in profile.values():
            for key in values:
                if "." in key:
                    by_name(key.split(".", 1)[0])  # raises for a chapter that does not exist


def test_the_methods_rule_pages_name_exactly_the_rules_the_code_applies():
    """Every `verdicts.Rule` a chapter applies is described on its chapter's rules page under its name,
    and a rules page names no rule the code does not have (the rule table itself is generated)."""
    rules = calibration.rules()
    for chapter in {name.split(".")[0] for name in rules}:
        page = (ROOT / "book" / "methods" / f"{chapter}-rules.md").read_text()
        named = set(re.findall(rf"`({chapter}\.\w+)`", page))
        assert named == {n for n in rules if n.startswith(chapter + ".")}, chapter


def test_every_source_file_the_docs_name_exists():
    """The methods pages, the running and course pages, README and CONTRIBUTING name files of the
    package and the tests by path: after a move, each of them must still be there."""
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "book").rglob("*.md"))]
    missing = []
    for doc in docs:
        if "chapters" in doc.relative_to(ROOT).parts[1:2]:
            continue  # book/chapters/: executed pages copied in at build time
        for path in re.findall(r"`((?:effdepth|tests)/[\w/<>.-]+\.py)`", doc.read_text()):
            if "<" not in path and not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, missing
