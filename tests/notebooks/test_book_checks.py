"""The rendered-book checks (tests/book_checks.py) fail on deliberately broken pages and pass on clean
ones; and no notebook types into its prose a number that a run computes."""

from pathlib import Path

import jupytext

from tests import book_checks as C

ROOT = Path(__file__).resolve().parents[2]


def page(body: str) -> str:
    return f'<html><body><article class="bd-article" role="main">{body}</article></body></html>'


CAPTIONED = '<figure class="align-default" id="fig-a"><a class="reference internal image-reference" href="a.png"><img alt="" src="a.png" /></a><figcaption><p><span class="caption-number">Fig. 7.1 </span>Caption. Look for it.</p></figcaption></figure>'


def test_figure_check_fails_on_an_uncaptioned_image_and_an_empty_figure():
    assert C.figure_defects(page(CAPTIONED)) == []
    assert C.figure_defects(
        page('<p>text</p><img alt="" src="b.png" />')
    )  # a bare image (a figure cell shown without glue:figure)
    assert C.figure_defects(page('<figure><img src="a.png" /></figure>'))  # a figure without a caption
    assert C.figure_defects(
        page(
            '<figure id="fig-b"><p><em>Not drawn in this run.</em></p><figcaption><p>Fig. 11.6 Caption.</p></figcaption></figure>'
        )
    )  # empty


def table(header: list[str], row: list[str]) -> str:
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in header)
        + "</tr></thead><tbody><tr>"
        + "".join(f"<td>{c}</td>" for c in row)
        + "</tr></tbody></table>"
    )


def test_table_check_fails_on_nan_snake_case_exponents_and_false_precision():
    clean = table(
        ["source layer", "relative error", "parameters", "accuracy", "version"],
        ["1", "0.628", "135\u2009M", "30\u2009%", "2.13.0"],
    )
    assert C.table_defects(page(clean)) == []
    for header, cell in [
        ("src_layer", "1"),
        ("error", "NaN"),
        ("error", "nan"),
        ("params", "8.19e+03"),
        ("params", "7.06e+10"),
        ("rel", "17.1102"),
        ("gap", "347.0 %"),
    ]:
        assert C.table_defects(page(table([header], [cell]))), (header, cell)


def test_glue_check_fails_on_a_reference_the_run_did_not_glue():
    md = "The ratio is {glue:text}`ratio:.2f`; {glue:md}`verdict_text`.\n\n```{glue:figure} fig_a\n:name: fig-a\n\nCaption.\n```"
    assert C.glue_defects(md, {"ratio", "verdict_text", "fig_a"}) == []
    assert C.glue_defects(md, {"ratio", "fig_a"}) == [
        "{glue} reference 'verdict_text' has no glued value in the executed notebook"
    ]


# Numbers typed into a notebook's prose that are not results of the run: quotes of the paper and the
# project's fixed settings (each with where it comes from). Anything else must be glued.
FIXED = {
    "linear_maps": {"10,000"},  # the paper's SGD recipe
    "objective": {"36 %", "63 %", "41 %", "48 %"},  # the paper's §3.5 extrapolation accuracies
    "skipping": {"1.41"},  # √2, the largest possible change of a probability vector
    "zoo": {
        "50 %",
        "10 %",
        "25 %",
        "15 %",
        "1,200",
        "1.8",
    },  # the zoo's data mixture, curriculum cap and a measured timing note
}


def test_no_notebook_types_a_result_into_its_prose():
    methods = (ROOT / "book" / "methods.md").read_text() + "".join(
        p.read_text() for p in sorted((ROOT / "book" / "methods").glob("*.md"))
    )
    typed = {}
    for path in sorted((ROOT / "notebooks").glob("*.md")):
        nb = jupytext.read(path)
        found = [
            n
            for c in nb.cells
            if c.cell_type == "markdown"
            for n in C.typed_numbers(c.source, methods, FIXED.get(path.stem, set()))
        ]
        if found:
            typed[path.stem] = found
    assert typed == {}, (
        f"numbers typed into notebook prose (glue them from the run, or list a fixed one in FIXED): {typed}"
    )
    # the check finds a typed result: the model page's size ratio as it was typed before it was glued
    assert C.typed_numbers(
        "The paper's main model has about 2.7 times as many layers and some {glue:text}`x:.0f` times.", methods
    ) == ["2.7"]
