"""Hostile run folders (issue 25): whatever a runs/<slug>/ holds — curves.json and status.json copied,
edited or damaged, markup in any string — the book and `effdepth runs` show it as data, name the
file that is wrong and leave that model out with a note; never a traceback, never live markup."""

import json
import os

import numpy as np
import pytest

from effdepth import curves, render, rundata, running, side_by_side
from effdepth.chapters import registry
from effdepth.cli import main

SECRET = "SECRET-7f3a"


def _render(markdown: str) -> str:
    """The page as HTML, through MyST's own parser with the book's extensions (what jupyter-book does)."""
    from docutils.core import publish_string
    from myst_parser.parsers.docutils_ import Parser

    return publish_string(
        markdown,
        parser=Parser(),
        writer_name="html5",
        settings_overrides={
            "myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence"],
            "report_level": 5,
            "output_encoding": "unicode",
            "file_insertion_enabled": True,
        },
    )


def _hostile(tmp_path) -> list[str]:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    return [
        "<script>alert(1)</script>",
        f"x\n\n```{{eval-rst}}\n.. include:: {secret}\n```\n",
        f"x\n:::{{include}} {secret}\n:::",
        f"{{include}}`{secret}` and $\\\\unknowncommand{{$ and <img src=x onerror=alert(1)>",
        "| a | b |\n| --- | --- |\n[link](javascript:alert(1)) ![i](file:///etc/passwd) &lt;b&gt;",
    ]


def _run(folder, model, n_layers=3, **curve_kw):
    folder.mkdir(parents=True, exist_ok=True)
    c = {
        "rel_attn": curves.curve(
            range(n_layers),
            np.linspace(1, 0, n_layers),
            curve_kw.get("xlabel", "Layer"),
            curve_kw.get("ylabel", "y"),
            curve_kw.get("title", "t"),
        )
    }
    curves.save("contributions", (model, n_layers), c, path=curves.path_of(folder, "contributions"))
    return folder


def _safe(html: str):
    """No local file's contents, no script, no image but the page's own figures, no javascript: link."""
    import re

    body = html.split("<main", 1)[1]
    assert SECRET not in body, "a local file's contents reached the page"
    assert (
        "<script" not in body
        and 'href="javascript' not in body
        and "<a " not in body.replace('<a class="reference internal"', "")
    )
    assert all(
        re.search(r'src="contributions--side-by-side-[\w-]+\.png"', tag) for tag in re.findall(r"<img [^>]*>", body)
    ), body


@pytest.mark.parametrize("field", ["title", "xlabel", "ylabel"])
def test_markup_in_a_curves_file_is_text_on_the_side_by_side_page(tmp_path, field):
    """issue 25 #1: a title or axis label holding <script> or a MyST include was written as markup."""
    out = tmp_path / "chapters"
    out.mkdir()
    for i, bad in enumerate(_hostile(tmp_path)):
        runs = [
            ("zoo:a", _run(tmp_path / f"a{i}", "zoo:a", **{field: bad})),
            ("zoo:b", _run(tmp_path / f"b{i}", "zoo:b", **{field: bad})),
        ]
        page = side_by_side.page("contributions", "T", runs, out)
        text = (out / f"{page}.md").read_text()
        html = _render(text)
        _safe(html)
        assert "alert(1)" in html or SECRET not in text  # the hostile text is shown as text


def test_markup_in_status_json_is_text_on_the_runs_page_and_the_placeholder(tmp_path):
    """issue 25 #1: status.json's "model" went unescaped into the Runs page (even for a run not in
    the book), and a chapter's failed state into its placeholder page."""
    for i, bad in enumerate(_hostile(tmp_path)):
        d = tmp_path / "runs" / f"r{i}"
        d.mkdir(parents=True)
        (d / "status.json").write_text(
            json.dumps(
                {
                    "model": bad,
                    "chapters": {"contributions": "failed: " + bad},
                    "runs": {"contributions": {"state": "failed: " + bad, "finished": bad[:60]}},
                }
            )
        )
    (tmp_path / "runs" / "<b>odd {folder}`x`").mkdir()
    (tmp_path / "runs" / "<b>odd {folder}`x`" / "status.json").write_text("{}")
    table = running.runs_table(running.runs_index(tmp_path / "runs"), markdown=True, shown=set())
    _safe(_render("# Runs\n\n" + table))
    assert "<b>" not in _render(table).split("<main")[1]
    chapter = registry.CHAPTERS[3]
    for i, bad in enumerate(_hostile(tmp_path)):
        target = tmp_path / f"p{i}.ipynb"
        render._placeholder(target, chapter, "zoo:a", "failed: " + bad)
        import nbformat

        _safe(_render(nbformat.read(target, as_version=4).cells[0].source))


def test_markup_in_a_failed_records_line_and_a_traceback_stays_inside_the_banner(tmp_path):
    bad = _hostile(tmp_path)[1]
    banner = render._error_banner("error", f"failed ({rundata.md(bad)})", bad, "Traceback\n```\n" + bad + "\n```")
    html = _render(banner)
    assert SECRET not in html


def test_matplotlib_text_from_a_curves_file_never_crashes_the_figure(tmp_path):
    """new: a label with broken mathtext ('$\\frac{') made savefig raise for every model of the book."""
    out = tmp_path / "chapters"
    out.mkdir()
    runs = [
        (m, _run(tmp_path / m[-1], m, title="$\\frac{", ylabel="a $x^$ b", xlabel="$$")) for m in ("zoo:a", "zoo:b")
    ]
    page = side_by_side.page("contributions", "T", runs, out)
    assert (out / f"{page}-rel_attn.png").stat().st_size > 1000


def test_curves_saved_by_another_model_are_left_out_with_a_note(tmp_path):
    """issue 25 #2: a curves.json copied into another run folder was drawn under this model's name."""
    out = tmp_path / "chapters"
    out.mkdir()
    a, b, c = _run(tmp_path / "a", "zoo:a"), _run(tmp_path / "b", "zoo:b"), _run(tmp_path / "c", "zoo:c")
    (c / "contributions.curves.json").write_text((a / "contributions.curves.json").read_text())  # copied
    page = side_by_side.page("contributions", "T", [("zoo:a", a), ("zoo:b", b), ("zoo:c", c)], out)
    text = (out / f"{page}.md").read_text()
    assert "zoo:c left out" in text and "was saved by the model zoo:a, not by zoo:c" in text
    have, _ = side_by_side.usable_runs("contributions", [("zoo:a", a), ("zoo:b", b), ("zoo:c", c)])
    assert [m for m, _ in have] == ["zoo:a", "zoo:b"]


BAD_CURVES = {
    "y not numbers": lambda d: d["curves"]["rel_attn"].update(y=["a", "b", "c"]),
    "control a scalar": lambda d: d["curves"]["rel_attn"].update(control=3),
    "huge int": lambda d: d["curves"]["rel_attn"]["y"].__setitem__(0, 10**400),
    "key with a slash": lambda d: d["curves"].__setitem__("../../x", d["curves"].pop("rel_attn")),
    "n_layers 0": lambda d: d.update(n_layers=0),
    "n_layers negative": lambda d: d.update(n_layers=-3),
    "n_layers a bool": lambda d: d.update(n_layers=True),
    "x a bool list": lambda d: d["curves"]["rel_attn"].update(x=[True, False, True]),
    "curves a list": lambda d: d.update(curves=[]),
    "a curve a string": lambda d: d["curves"].__setitem__("rel_attn", "x"),
    "labels not strings": lambda d: d["curves"]["rel_attn"].update(xlabel=["a"]),
    "depth unknown": lambda d: d["curves"]["rel_attn"].update(depth="token"),
    "lengths differ": lambda d: d["curves"]["rel_attn"]["y"].pop(),
    "infinity": lambda d: d["curves"]["rel_attn"]["y"].__setitem__(0, float("inf")),
    "model a number": lambda d: d.update(model=3),
    "top level a list": None,
    "not JSON": None,
    "not UTF-8": None,
    "deeply nested": None,
}


@pytest.mark.parametrize("what", list(BAD_CURVES))
def test_a_bad_curves_file_names_the_file_and_leaves_only_that_model_out(tmp_path, what):
    """issue 25 #3: one bad file raised a raw TypeError / OverflowError for every model of the book."""
    out = tmp_path / "chapters"
    out.mkdir()
    good = [("zoo:a", _run(tmp_path / "a", "zoo:a")), ("zoo:b", _run(tmp_path / "b", "zoo:b"))]
    bad_dir = _run(tmp_path / "bad", "zoo:bad")
    f = curves.path_of(bad_dir, "contributions")
    data = json.loads(f.read_text())
    if what == "top level a list":
        f.write_text("[1, 2]")
    elif what == "not JSON":
        f.write_text('{"model": ')
    elif what == "not UTF-8":
        f.write_bytes(b"\xff\xfe{")
    elif what == "deeply nested":
        f.write_text("[" * 100000 + "]" * 100000)
    else:
        BAD_CURVES[what](data)
        f.write_text(json.dumps(data))
    loaded, why = curves.read(f)
    assert loaded is None and str(f) in why and "rerun the chapter" in why and "\n" not in why
    page = side_by_side.page("contributions", "T", good + [("zoo:bad", bad_dir)], out)
    text = (out / f"{page}.md").read_text()
    assert (
        "zoo:bad left out" in text
        and "runs/bad/contributions.curves.json" in text
        and "zoo:a" in text
        and "zoo:b" in text
    )
    assert not list(tmp_path.rglob("x.png")) and not list(out.parent.glob("*.png"))


def test_the_side_by_side_page_says_when_the_latest_run_failed(tmp_path):
    """issue 25 (partial): the older run's curves were drawn silently."""
    out = tmp_path / "chapters"
    out.mkdir()
    a, b = _run(tmp_path / "a", "zoo:a"), _run(tmp_path / "b", "zoo:b")
    (b / "status.json").write_text(
        json.dumps(
            {
                "model": "zoo:b",
                "chapters": {"contributions": "failed: boom"},
                "runs": {
                    "contributions": {
                        "state": "failed: boom",
                        "finished": "2026-01-02 10:00:00 UTC",
                        "last_ok": {"finished": "2025-12-01 09:00:00 UTC", "parameters": {}},
                    }
                },
            }
        )
    )
    page = side_by_side.page("contributions", "T", [("zoo:a", a), ("zoo:b", b)], out)
    text = (out / f"{page}.md").read_text()
    assert (
        "its latest run of this chapter (2026-01-02 10:00:00 UTC) failed" in text
        and "last successful run (2025-12-01 09:00:00 UTC)" in text
    )


STATUS_BAD = {
    "chapters a list": {"model": "m", "chapters": ["contributions"]},
    "runs a list": {"model": "m", "runs": [1]},
    "a record a string": {"model": "m", "runs": {"contributions": "ok"}},
    "a state a dict": {"model": "m", "chapters": {"contributions": {"x": 1}}},
    "model a dict": {"model": {"a": 1}},
    "seconds a string": {"model": "m", "runs": {"contributions": {"seconds": "long"}}},
    "a chapter name with a slash": {"model": "m", "chapters": {"../x": "ok"}},
    "top level a list": [1],
}


@pytest.mark.parametrize("what", list(STATUS_BAD))
def test_a_malformed_status_json_is_named_and_ignored_not_a_crash(tmp_path, capsys, what):
    """issue 25 #4: "chapters" a list crashed `effdepth runs` and every `effdepth book`."""
    runs = tmp_path / "runs"
    d = runs / "bad"
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps(STATUS_BAD[what]))
    (d / "contributions.ipynb").write_text("{}")
    status, why = running.load_status(d)
    assert status == {} and str(d / "status.json") in why and "delete it" in why
    assert running.read_status(d) == {}
    assert main(["runs", "--dir", str(runs)]) == 0
    printed = capsys.readouterr().out
    (entry,) = running.runs_index(runs)
    assert entry["problem"] == why and entry["ok"] == ["contributions"]
    assert "status.json is not a valid status.json file" in running.runs_table([entry], markdown=True)
    assert "bad" in printed


def test_runs_and_status_files_are_validated_by_one_schema_function():
    assert rundata.validate.__module__ == "effdepth.rundata"
    with pytest.raises(rundata.InvalidRunFile, match=r"x/status.json is not a valid status.json file \(at chapters"):
        rundata.validate({"chapters": []}, rundata.STATUS, "x/status.json")
    assert rundata.md("a|b`c<d>{e}[f](g)$h$ i\nj::k") == "a\\|b\\`c\\<d\\>\\{e\\}\\[f\\]\\(g\\)\\$h\\$ i j\\::k"


def test_an_earlier_builds_pages_are_unpublished(tmp_path):
    """issue 25 #1: pages from an earlier build stayed published after a later build without them."""
    chapters = tmp_path / "book" / "chapters"
    chapters.mkdir(parents=True)
    (chapters / "contributions.ipynb").write_text("{}")
    html = tmp_path / "_build" / "html" / "book" / "chapters"
    sources = tmp_path / "_build" / "html" / "_sources" / "book" / "chapters"
    html.mkdir(parents=True)
    sources.mkdir(parents=True)
    for name in ("contributions.html", "contributions--side-by-side.html", "contributions--Qwen-Qwen2.5-1.5B.html"):
        (html / name).write_text("x")
    (sources / "contributions--side-by-side.md").write_text("x")
    (sources / "contributions.ipynb").write_text("x")
    (chapters / "contributions--Qwen-Qwen2.5-1.5B.ipynb").write_text("{}")
    render._remove_stale_pages(tmp_path, chapters)
    assert sorted(p.name for p in html.iterdir()) == ["contributions--Qwen-Qwen2.5-1.5B.html", "contributions.html"]
    assert [p.name for p in sources.iterdir()] == ["contributions.ipynb"]


@pytest.mark.parametrize(
    "models, says",
    [
        (",", "No model to build the book of"),
        (" , ,", "No model to build the book of"),
        ("zoo:a,zoo:a", "names zoo:a more than once"),
        ("zoo:default,zoo:" + __import__("effdepth.zoo", fromlist=["DEFAULT"]).DEFAULT, "more than once"),
    ],
)
def test_book_models_empty_or_repeated_is_one_line(capsys, models, says):
    """issue 25 (partial): `--models ","` was a raw IndexError, `--models a,a` overlaid a model on itself."""
    assert main(["book", "--models", models]) == 1
    assert says in capsys.readouterr().err


def test_a_run_folder_that_cannot_be_written_or_belongs_to_another_model_stops_the_run_first(
    tmp_path, capsys, monkeypatch
):
    """issue 25 (partial): a read-only runs/ gave two chained OSError traces after the model loaded."""
    from effdepth import cli

    monkeypatch.setattr(cli, "_check_model", lambda *a: pytest.fail("loaded the model before checking the run folder"))
    monkeypatch.setattr(running, "RUNS", tmp_path / "runs")
    (tmp_path / "runs").write_text("not a folder")  # as unwritable as a read-only runs/, also for root
    assert main(["run", "--model", "zoo:llama-2l", "--chapters", "contributions"]) == 2
    err = capsys.readouterr().err
    assert "Cannot write the run folder" in err and "make it writable" in err and "Traceback" not in err
    (tmp_path / "runs").unlink()
    (tmp_path / "runs").mkdir()
    os.chmod(tmp_path / "runs", 0o555)
    try:
        if os.access(tmp_path / "runs", os.W_OK) is False:  # root writes anywhere: checked above instead
            assert main(["run", "--model", "zoo:llama-2l", "--chapters", "contributions"]) == 2
            assert "Cannot write the run folder" in capsys.readouterr().err
    finally:
        os.chmod(tmp_path / "runs", 0o755)
    d = tmp_path / "runs" / "zoo-llama-2l"
    d.mkdir()
    (d / "status.json").write_text(json.dumps({"model": "zoo:other"}))
    assert main(["run", "--model", "zoo:llama-2l", "--chapters", "contributions"]) == 2
    assert "holds the runs of zoo:other, not of zoo:llama-2l" in capsys.readouterr().err
