"""Checks of a rendered book page for the defects a reader notices (used on the book the tests build,
and tried on deliberately broken pages in tests/notebooks/test_book_checks.py). Each returns a list of
problems, empty when the page is clean.

- `figure_defects`: an image outside a captioned figure, a figure without a caption, a captioned
  figure with nothing drawn in it.
- `table_defects`: in any HTML table, a `NaN`/`nan` cell, a snake_case header, a number in scientific
  notation, false precision (more than 4 significant digits, or a percentage of 100 or more with
  decimals, e.g. 17.1102 or "347.0 %").
- `glue_defects`: a `{glue:…}` reference in a notebook's Markdown with no glued value in its executed
  notebook.
- `typed_numbers`: a number typed into a notebook's prose (outside math, code and glue roles) that is
  neither on the methods page nor in the notebook's list of fixed numbers (`FIXED`): a result must be
  glued from the run, never typed.
"""

from __future__ import annotations

import html as htmllib
import re

SNAKE = re.compile(
    r"\b(?![a-z]_[a-z0-9]\b)[a-z][a-z0-9]*_[a-z0-9_]*[a-z0-9]\b"
)  # not a_l, h_0: a symbol with its index
SCIENTIFIC = re.compile(r"(?<![\w.])[-−]?\d+(?:\.\d+)?[eE][+-]?\d+(?![\w.])")
NAN = re.compile(r"(?<![\w-])(nan|NaN|NAN|<NA>)(?![\w-])")
DECIMAL = re.compile(r"(?<![\w.:/-])[-−]?(\d+)\.(\d+)(?![\w.:/-])")
PERCENT = re.compile(r"(?<![\w.])(\d{3,})\.\d+\s?%")


def article(page: str) -> str:
    """The page's main article, without scripts and styles."""
    m = re.search(r'<article class="bd-article"[^>]*>(.*?)</article>', page, re.S)
    body = m.group(1) if m else page
    return re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def figure_defects(page: str) -> list[str]:
    body = article(page)
    problems = []
    figures = re.findall(r"<figure\b.*?</figure>", body, re.S)
    for fig in figures:
        caption = re.search(r"<figcaption>(.*?)</figcaption>", fig, re.S)
        if not caption or not _text(caption.group(1)):
            problems.append("a figure without a caption")
        if not re.search(r"<img\b", fig):
            problems.append(f"a captioned figure with nothing drawn: {_text(caption.group(1))[:80] if caption else ''}")
    outside = re.sub(r"<figure\b.*?</figure>", "", body, flags=re.S)
    for img in re.findall(r"<img\b[^>]*>", outside):
        problems.append(f"an image outside a captioned figure: {img[:100]}")
    return problems


def _significant(integer: str, fraction: str) -> int:
    digits = (integer + fraction).lstrip("0")
    return len(digits)


def table_defects(page: str) -> list[str]:
    problems = []
    for table in re.findall(r"<table\b.*?</table>", article(page), re.S):
        for th in re.findall(r"<th\b[^>]*>(.*?)</th>", table, re.S):
            text = _text(th)
            if SNAKE.search(text):
                problems.append(f"snake_case header {text!r}")
        for cell in re.findall(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", table, re.S):
            text = _text(cell)
            if NAN.search(text):
                problems.append(f"NaN in a table cell {text!r}")
            if SCIENTIFIC.search(text):
                problems.append(f"scientific notation in a table cell {text!r}")
            for integer, fraction in DECIMAL.findall(text):
                if _significant(integer, fraction) > 4:
                    problems.append(f"false precision in a table cell {text!r}")
            if PERCENT.search(text):
                problems.append(f"false precision in a percentage {text!r}")
    return problems


GLUE_ROLE = re.compile(r"\{glue(?::(?:text|md|any|figure|math))?\}`([^`:]+)(?::[^`]*)?`")
GLUE_DIRECTIVE = re.compile(r"```\{glue(?::(?:figure|md|math|any))?\}\s+(\S+)")


def glue_defects(markdown: str, glued: set[str]) -> list[str]:
    names = GLUE_ROLE.findall(markdown) + GLUE_DIRECTIVE.findall(markdown)
    return [f"{{glue}} reference {n!r} has no glued value in the executed notebook" for n in names if n not in glued]


NUMBER = re.compile(r"(?<![\w.\-/§])(\d+(?:[.,]\d+)+|\d+(?:\.\d+)?\s?%)(?![\w.])")


def prose(markdown: str) -> str:
    """A notebook cell's Markdown without math, code, glue roles and directives' option lines."""
    t = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    t = re.sub(r"\$\$.*?\$\$", " ", t, flags=re.S)
    t = re.sub(r"\$[^$\n]*\$", " ", t)
    t = re.sub(r"\{[\w:]+\}`[^`]*`", " ", t)
    t = re.sub(r"`[^`]*`", " ", t)
    return t


def typed_numbers(markdown: str, allowed: str, fixed: set[str] = frozenset()) -> list[str]:
    """Numbers in `markdown`'s prose found neither in `allowed` (the methods page) nor in `fixed`."""
    allowed = allowed.replace(" ", "").replace("\u2009", "")
    out = []
    for m in NUMBER.finditer(prose(markdown)):
        token = m.group(1)
        if token.replace(" ", "") in allowed or token in fixed:
            continue
        out.append(token)
    return out
