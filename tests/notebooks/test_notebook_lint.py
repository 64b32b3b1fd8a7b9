"""The notebook rule, checked on every notebook (notebooks/*.md and notebooks/course/*.md) without
running one: a notebook orchestrates, a chapter module decides and writes (DESIGN.md, "How a chapter
is cut"). The checks read the MyST Markdown with jupytext and each code cell with Python's `ast`.

Code cells of every notebook:

- (a) no conditional: no `if` statement, no conditional expression (`x if c else y`), no `if` in a
  comprehension, no `match`. A decision belongs in a chapter function with a unit test of both sides.
- (b) no sentence building: no name `Markdown`, `HTML` or `Latex` (a cell that makes markup) and no
  string constant of 60 characters or more (a sentence typed into code). In a chapter notebook
  (notebooks/*.md) no string is built at all: no f-string, no `+`/`%` with a string constant, no
  `"…".format(…)`, no `"…".join(…)`; labels and sentences come from the chapter modules. Stated
  exception for the course's exercises (notebooks/course/*.md, code the reader writes and reads):
  an f-string may label a plot, when its constant text is at most 24 characters with no newline
  and no Markdown (`*`, `` ` ``, `#`, `[`, `|`).

Chapter notebooks (notebooks/*.md) also:

- (c) glue: a name is glued by a string literal (`glue("x", …)`; `show("x", …)` glues `x` and
  `x_model`) or by `glue_all(findings, prefix="p_")`. Every literally glued name is cited in the
  Markdown (`{glue:…}`\\`x\\``, ```` ```{glue:…} x ````), and every cited name is glued literally or
  carries the prefix of a `glue_all` of the notebook (those names come from the chapter modules;
  that each of them is glued by a run is checked on executed notebooks: tests/test_book_reader.py,
  tests/test_chapter_*.py). `glue_all` glues more than a page cites: the numbers and verdict keys
  the scorecard reads (`chapters.record`'s `<key>`, `<key>_state`, `<key>_card`, …).
- (d) every figure is a numbered, captioned ```` ```{glue:figure} ```` with a `:name:`, a non-empty
  caption that says which model made it (`{glue:md}`\\`<name>_model\\``), drawn by `show` under that
  name; every name given to `show` has its figure directive; no cell draws into its own output
  (`plt.show()`, `fig.show()`, `display(fig)`).
- (e) a cell that makes a figure (calls `show`) carries `hide-input` (the reader can open the code
  that made the figure) and none of `remove-cell`, `remove-input`, `hide-cell`. Other cells keep
  their tags: the setup and measurement cells are `remove-cell` (they display nothing; their calls
  are the Method paragraph's and the run-info table's), and table cells `remove-input` (their output
  is the table; `show_table` is all their code).

The course's exercises have no glued names and no figure directives: their code is the exercise,
shown in full, and their figures are drawn inline by that code ((c)-(e) do not apply).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTER_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.md"))
COURSE_NOTEBOOKS = sorted((ROOT / "notebooks" / "course").glob("*.md"))

LONG_STRING = 60
COURSE_LABEL = 24
MARKUP_NAMES = {"Markdown", "HTML", "Latex"}
MARKDOWN_CHARS = set("*`#[|\n")
FIGURE_HIDING = {"remove-cell", "remove-input", "hide-cell"}

GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([A-Za-z0-9_]+)(?::[^`]*)?`")
GLUE_DIRECTIVE = re.compile(r"^```\{glue(?::\w+)?\}\s+([A-Za-z0-9_]+)\s*$", re.M)
GLUE_FIGURE = re.compile(r"^```\{glue:figure\}\s+([A-Za-z0-9_]+)\s*\n(.*?)^```\s*$", re.M | re.S)


def _is_str(node) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _constant_text(node: ast.JoinedStr) -> str:
    return "".join(v.value for v in node.values if isinstance(v, ast.Constant))


def _format_specs(tree) -> set[int]:
    """ids of the JoinedStr nodes that are format specs (`{x:.2f}`), not strings of their own."""
    return {
        id(n.format_spec) for n in ast.walk(tree) if isinstance(n, ast.FormattedValue) and n.format_spec is not None
    }


def code_problems(source: str, course: bool = False) -> list[str]:
    """Rules (a) and (b) on one code cell's source."""
    tree = ast.parse(source)
    specs = _format_specs(tree)
    out = []
    for n in ast.walk(tree):
        line = getattr(n, "lineno", "?")
        if isinstance(n, ast.If):
            out.append(f"line {line}: an `if` statement")
        elif isinstance(n, ast.IfExp):
            out.append(f"line {line}: a conditional expression")
        elif isinstance(n, ast.comprehension) and n.ifs:
            out.append(f"line {n.ifs[0].lineno}: an `if` in a comprehension")
        elif isinstance(n, ast.Match):
            out.append(f"line {line}: a `match` statement")
        elif isinstance(n, ast.Name) and n.id in MARKUP_NAMES:
            out.append(f"line {line}: `{n.id}` (markup made in a cell)")
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) >= LONG_STRING:
            out.append(f"line {line}: a string of {len(n.value)} characters ({n.value[:40]!r}…)")
        elif isinstance(n, ast.JoinedStr) and id(n) not in specs:
            text = _constant_text(n)
            if not course or len(text) > COURSE_LABEL or MARKDOWN_CHARS & set(text):
                out.append(f"line {line}: an f-string ({ast.unparse(n)[:50]})")
        elif (
            not course
            and isinstance(n, ast.BinOp)
            and isinstance(n.op, (ast.Add, ast.Mod))
            and (_is_str(n.left) or _is_str(n.right))
        ):
            out.append(f"line {line}: a string built with `{'+' if isinstance(n.op, ast.Add) else '%'}`")
        elif (
            not course
            and isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("format", "join")
            and _is_str(n.func.value)
        ):
            out.append(f"line {line}: a string built with `.{n.func.attr}`")
    return out


def _calls(tree, name: str):
    """Calls of the function `name` (`name(…)`, not a method `x.name(…)`)."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name:
            yield n


def _literal_first(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def chapter_problems(nb) -> list[str]:
    """Rules (c), (d) and (e) on one chapter notebook (a jupytext notebook)."""
    out = []
    markdown = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    glued, figures, prefixes = set(), set(), set()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        tags = set(cell.metadata.get("tags", []))
        for call in _calls(tree, "glue"):
            name = _literal_first(call)
            if name is None:
                out.append(f"cell {i}: `glue` with a name that is not a string literal")
            glued.add(name)
        shows = list(_calls(tree, "show"))
        for call in shows:
            name = _literal_first(call)
            if name is None:
                out.append(f"cell {i}: `show` with a name that is not a string literal")
                continue
            glued |= {name, name + "_model"}
            figures.add(name)
        for call in _calls(tree, "glue_all"):
            prefix = next((k.value for k in call.keywords if k.arg == "prefix"), ast.Constant(""))
            if not isinstance(prefix, ast.Constant):
                out.append(f"cell {i}: `glue_all` with a prefix that is not a string literal")
                continue
            prefixes.add(prefix.value)
        methods = [
            c
            for c in ast.walk(tree)
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "show" and not c.args
        ]
        for call in list(_calls(tree, "display")) + methods:
            if isinstance(call.func, ast.Attribute) or any(
                isinstance(a, ast.Name) and a.id in ("fig", "figure") for a in call.args
            ):
                out.append(f"cell {i}: a figure drawn into the cell's own output ({ast.unparse(call)[:40]})")
        if shows and (FIGURE_HIDING & tags or "hide-input" not in tags):
            out.append(f"cell {i}: makes a figure but is tagged {sorted(tags)} (want hide-input, not remove-cell)")
    cited = set(GLUE_ROLE.findall(markdown)) | set(GLUE_DIRECTIVE.findall(markdown))
    glued.discard(None)
    for name in sorted(glued - cited):
        out.append(f"`{name}` is glued but the Markdown never cites it")
    for name in sorted(cited - glued):
        if not any(name.startswith(p) for p in prefixes):
            out.append(f"`{name}` is cited but nothing glues it (no glue/show of it, no glue_all with its prefix)")
    directives = {}
    for m in GLUE_FIGURE.finditer(markdown):
        name, body = m.group(1), m.group(2)
        directives[name] = body
        lines = body.splitlines()
        caption = "\n".join(line for line in lines if not line.startswith(":")).strip()
        if not any(line.startswith(":name:") and line.split(":name:")[1].strip() for line in lines):
            out.append(f"figure `{name}` has no :name: (it cannot be numbered or referenced)")
        if not caption:
            out.append(f"figure `{name}` has no caption")
        elif f"{{glue:md}}`{name}_model`" not in caption:
            out.append(f"figure `{name}`'s caption does not say which model made it ({{glue:md}}`{name}_model`)")
    for name in sorted(figures - set(directives)):
        out.append(f"figure `{name}` is drawn by `show` but has no glue:figure directive (no number, no caption)")
    for name in sorted(set(directives) - figures):
        out.append(f"glue:figure `{name}` is not drawn by any `show` call")
    return out


def notebook_problems(path: Path) -> list[str]:
    import jupytext

    nb = jupytext.read(path)
    course = path.parent.name == "course"
    out = [
        f"cell {i}: {p}"
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for p in code_problems(c.source, course=course)
    ]
    return out if course else out + chapter_problems(nb)


@pytest.mark.parametrize(
    "path", CHAPTER_NOTEBOOKS + COURSE_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "notebooks"))
)
def test_notebook_follows_the_notebook_rule(path):
    assert notebook_problems(path) == []


def test_every_notebook_is_linted():
    names = {p.stem for p in CHAPTER_NOTEBOOKS}
    assert {
        "contributions",
        "skipping",
        "logit_lens",
        "complexity",
        "linear_maps",
        "objective",
        "comparison",
        "benchmarks",
        "model",
        "zoo",
    } <= names
    assert len(COURSE_NOTEBOOKS) >= 6


# --- the checks find what they are for -------------------------------------------------------------


def test_conditionals_are_found():
    assert len(code_problems("if x:\n    y = 1")) == 1
    assert len(code_problems("y = 1 if x else 2")) == 1
    assert len(code_problems("y = [a for a in b if a]")) == 1
    assert len(code_problems("match x:\n    case 1:\n        pass")) == 1
    assert code_problems("y = [a for a in b]\nz = f(a=1)") == []
    assert code_problems("if x:\n    y = 1", course=True)  # the course's exception is for labels only


def test_sentence_building_is_found():
    assert code_problems('Markdown("x")') and code_problems("display(Markdown(t))") and code_problems("HTML(page)")
    assert code_problems('t = f"{n} models"')  # any f-string in a chapter notebook
    assert code_problems('t = "the zoo: " + ", ".join(names)')
    assert code_problems('t = "%d models" % n') and code_problems('t = "{} models".format(n)')
    assert code_problems("x = '" + "a" * 60 + "'")  # a sentence typed into code
    assert code_problems("x = '" + "a" * 59 + "'") == []
    assert code_problems('t = f"{x:.2f}"') == [
        "line 1: an f-string (f'{x:.2f}')"
    ]  # its format spec is not a second string
    # the course: a short label passes; a long one, one with Markdown or a newline does not
    assert code_problems('ax.set_title(f"row b = {b}")', course=True) == []
    assert code_problems('ax.set_title(f"row of skipped layer {s} in the figure")', course=True)
    assert code_problems('t = f"**{b}**"', course=True) and code_problems('t = f"a\\n{b}"', course=True)
    assert code_problems('d = dict(a=1, b="short label")') == []


def _nb(*cells):
    import nbformat

    return nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(src, metadata={"tags": tags})
            if tags is not None
            else nbformat.v4.new_markdown_cell(src)
            for src, tags in cells
        ]
    )


FIGURE_MD = "```{glue:figure} fig_a\n:name: fig-a\n\n**A**, for {glue:md}`fig_a_model`. Look for it.\n```"


def test_glue_figure_and_tag_problems_are_found():
    good = _nb(
        ('show("fig_a", fig, lm)\nglue("ratio", r)\nglue_all(f, prefix="p_")', ["hide-input"]),
        (FIGURE_MD + "\n\n{glue:text}`ratio:.2f` {glue:md}`p_text`", None),
    )
    assert chapter_problems(good) == []
    removed = _nb(('show("fig_a", fig, lm)', ["remove-cell"]), (FIGURE_MD, None))
    assert chapter_problems(removed) == [
        "cell 0: makes a figure but is tagged ['remove-cell'] (want hide-input, not remove-cell)"
    ]
    uncited = _nb(('show("fig_a", fig, lm)\nglue("ratio", r)', ["hide-input"]), (FIGURE_MD, None))
    assert chapter_problems(uncited) == ["`ratio` is glued but the Markdown never cites it"]
    unglued = _nb(('show("fig_a", fig, lm)', ["hide-input"]), (FIGURE_MD + "\n\n{glue:md}`p_text`", None))
    assert chapter_problems(unglued) == [
        "`p_text` is cited but nothing glues it (no glue/show of it, no glue_all with its prefix)"
    ]
    bare = _nb(
        ('show("fig_a", fig, lm)', ["hide-input"]),
        ("```{glue:figure} fig_a\n:name: fig-a\n```\n{glue:md}`fig_a_model`", None),
    )
    assert chapter_problems(bare) == ["figure `fig_a` has no caption"]
    nameless = _nb(
        ('show("fig_a", fig, lm)', ["hide-input"]),
        (FIGURE_MD.replace(":name: fig-a\n", "").replace("{glue:md}`fig_a_model`", "the model"), None),
    )
    assert set(chapter_problems(nameless)) == {
        "figure `fig_a` has no :name: (it cannot be numbered or referenced)",
        "figure `fig_a`'s caption does not say which model made it ({glue:md}`fig_a_model`)",
        "`fig_a_model` is glued but the Markdown never cites it",
    }
    undirected = _nb(
        ('show("fig_a", fig, lm)\nplt.show()', ["hide-input"]), ("{glue:md}`fig_a` {glue:md}`fig_a_model`", None)
    )
    assert chapter_problems(undirected) == [
        "cell 0: a figure drawn into the cell's own output (plt.show())",
        "figure `fig_a` is drawn by `show` but has no glue:figure directive (no number, no caption)",
    ]
