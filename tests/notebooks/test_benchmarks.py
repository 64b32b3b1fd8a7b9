"""Fig 1 / App. B: the frozen table's facts are consistent, the loader falls back offline, the
regression finds a depth effect where there is one (and not where there is none), the chapter runs."""

import nbformat
import numpy as np
import pandas as pd
import pytest

from effdepth import running
from effdepth.chapters import benchmarks as chapter
from effdepth.chapters import registry
from effdepth.data import open_models
from effdepth.verdicts import AS_PAPER, INCONCLUSIVE, UNLIKE


def test_frozen_table_has_sources_and_consistent_architecture_numbers():
    df = open_models.frozen_table()
    assert len(df) == 18 and df["model"].is_unique and df["family"].nunique() == 5
    assert df["score_source"].str.len().gt(10).all() and df["architecture_source"].str.contains("config.json").all()
    assert ((df["score"] > 25) & (df["score"] < 100)).all()  # MMLU in %, above chance (25 %)
    mlp = 3 * df["layers"] * df["d_model"] * df["d_ff"]  # gated MLP weights alone
    bound = mlp + 4 * df["layers"] * df["d_model"] ** 2 + 2 * 260_000 * df["d_model"]  # + full attention + embeddings
    assert (df["params_b"] * 1e9 >= mlp).all() and (df["params_b"] * 1e9 <= bound).all()
    assert np.allclose(df["d_ff_eff"], 1.5 * df["d_ff"])  # every row has a gated MLP


def test_offline_the_loader_falls_back_to_the_frozen_table_and_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    table, note = open_models.load_table("auto")
    assert len(table) == 18 and "frozen table" in note and "not reachable" in note
    assert open_models.load_table("frozen")[1].startswith("the frozen table")
    with pytest.raises(ValueError, match="source must be one of"):
        open_models.load_table("leaderboard")


def test_live_loader_raises_one_line_when_the_data_set_cannot_be_read(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(open_models.LiveUnavailable, match="cannot read open-llm-leaderboard/contents: ConnectionError"):
        open_models.live_table()


def _synthetic(depth_effect, n=40, seed=0):
    rng = np.random.default_rng(seed)
    layers = rng.integers(12, 80, n)
    d_model = rng.integers(1, 9, n) * 1024
    d_ff = d_model * rng.uniform(2.5, 4, n)
    score = 30 + depth_effect * layers + 0.001 * d_model + rng.normal(0, 2, n)
    return open_models._derived(
        pd.DataFrame(
            {
                "model": [f"m{i}" for i in range(n)],
                "family": ["a", "b"] * (n // 2),
                "layers": layers,
                "d_model": d_model,
                "d_ff": d_ff,
                "gated_mlp": True,
                "params_b": layers * d_model**2 * 12 / 1e9,
                "score": score,
                "architecture_source": "x",
                "score_source": "y",
            }
        )
    )


@pytest.mark.parametrize(
    "effect, verdict",
    [(0.5, "reproduced"), (0.0, "not distinguishable from zero with this table"), (-0.5, "opposite to the paper")],
)
def test_regression_finds_the_depth_effect_that_is_there(effect, verdict):
    df = _synthetic(effect)
    reg = open_models.regression(df)
    assert abs(reg.params["layers"] - effect) < 0.1
    f = chapter.findings(df, open_models.depth_fit(df), reg, "a synthetic table")
    assert f.verdicts["depth_words"] == verdict and verdict in f.text["regression_text"]
    state = {"reproduced": AS_PAPER, "opposite to the paper": UNLIKE}.get(verdict, INCONCLUSIVE)
    assert f.verdicts["depth_state"] == state and f.verdicts["depth"].startswith(state)
    table = open_models.coefficient_table(reg)
    assert list(table.index) == ["Intercept", "layers", "d_model", "d_ff_eff"]
    assert (table["95% low"] <= table["coef"]).all() and (table["coef"] <= table["95% high"]).all()


def test_depth_verdict_needs_the_papers_p_value_for_reproduced():
    assert chapter.depth_verdict(0.3, 1e-5) == "reproduced"
    assert chapter.depth_verdict(0.3, 0.01) == "in the paper's direction"
    assert (
        chapter.depth_verdict(0.3, 0.2)
        == chapter.depth_verdict(-0.3, 0.2)
        == "not distinguishable from zero with this table"
    )


def test_regression_refuses_a_table_too_small_to_fit():
    with pytest.raises(ValueError, match="at least 5 models"):
        open_models.regression(open_models.frozen_table().head(4))


@pytest.mark.slow
def test_chapter_executes_and_shows_the_figure_the_table_and_the_regression(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "benchmarks" in [c.name for c in registry.CHAPTERS]
    out = running.execute(running.NOTEBOOKS / "benchmarks.md", tmp_path / "benchmarks.ipynb", {"model": "zoo:default"})
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert (
        sum(any(k.endswith("image/png") for k in o.get("data", {})) for o in outputs) == 1
    )  # Fig 1, glued for its caption
    html = "\n".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "effective MLP width" in html and "Qwen/Qwen2.5-72B" in html  # the regression table and the data table
    glued = "\n".join(str(o.get("data", {})) for o in outputs)
    assert "18 models" in glued and "not reachable" in glued


def test_score_axis_is_mmlu_for_the_frozen_table_and_the_average_for_the_live_one():
    table, note = open_models.load_table("frozen")
    assert chapter.score_label(note) == "MMLU (5-shot, %)"
    assert (
        chapter.score_label("the Open LLM Leaderboard v2 (live), average of six benchmarks")
        == "Leaderboard average score"
    )
    assert chapter.made_by(table) == f"{len(table)} open base models"
