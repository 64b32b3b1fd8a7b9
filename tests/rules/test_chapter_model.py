"""The model page's rules: levels at chance are named as such, and only those."""

import pandas as pd

from effdepth.chapters import model as ch


def _table(rows):
    return pd.DataFrame(rows, columns=["set", "level", "n", "accuracy", "chance", "p", "label"])


def test_levels_at_chance_are_labelled_and_the_rest_listed_with_accuracy():
    t = _table(
        [
            ("Word problems", 1, 20, 0.55, 0.0, 1e-9, "above chance"),
            ("Word problems", 2, 20, 0.25, 0.0, 1e-4, "above chance"),
            ("Word problems", 3, 20, 0.05, 0.0, 0.2, "at chance"),
            ("Kinship", 1, 20, 0.15, 0.125, 0.5, "at chance"),
            ("Kinship", 2, 20, 0.10, 0.125, 0.7, "at chance"),
        ]
    )
    f = ch.accuracy_findings(t, {"Word problems": "steps", "Kinship": "hops"})
    assert f.numbers["n_at_chance"] == 3 and f.numbers["Word problems above"] == 2 and f.numbers["Kinship above"] == 0
    assert f.verdicts == {"any_at_chance": "yes", "all_at_chance": "no"}
    text = f.text["accuracy_text"]
    assert "above chance at steps 1, 2 (55 %, 25 %)" in text and "**at chance** at steps 3" in text
    assert "**Kinship**: **at chance** at hops 1, 2." in text
    assert "3 of 5 levels are at chance" in f.text["chance_text"]


def test_a_model_above_chance_everywhere_is_not_called_at_chance():
    t = _table([("Arithmetic", lv, 20, 0.9, 0.01, 1e-12, "above chance") for lv in (1, 2, 3, 4)])
    f = ch.accuracy_findings(t, {"Arithmetic": "operations"})
    assert f.verdicts == {"any_at_chance": "no", "all_at_chance": "no"}
    assert "at chance" not in f.text["accuracy_text"].replace("above chance", "")
    assert "above chance at operations 1–4" in f.text["accuracy_text"]


def test_a_model_at_chance_everywhere_says_no_axis_can_test_the_claim():
    t = _table([("Kinship", lv, 20, 0.1, 0.125, 0.8, "at chance") for lv in (1, 2, 3, 4)])
    f = ch.accuracy_findings(t)
    assert f.verdicts["all_at_chance"] == "yes" and "no difficulty axis" in f.text["chance_text"]


def test_scale_table_states_how_far_the_model_is_from_the_paper():
    df = ch.scale_table("SmolLM2-135M", 30, 576, 134_515_008, 49152)
    assert df.loc["paper / this", "layers"] == 80 / 30
    assert round(df.loc["paper / this", "parameters"]) == round(70.6e9 / 134_515_008)


def test_model_notebook_runs_on_a_tiny_model(tmp_path):
    import nbformat
    import pytest

    from effdepth import running
    from effdepth.testing import save_tiny

    pytest.importorskip("papermill")
    folder = save_tiny(tmp_path / "tiny", "llama", n_layers=2)
    out = running.execute(
        running.NOTEBOOKS / "model.md", tmp_path / "model.ipynb", {"model": str(folder), "n_per_level": 2}
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    glued = {
        o["metadata"]["scrapbook"]["name"]: "".join(next(iter(o["data"].values())))
        for o in outputs
        if "scrapbook" in o.get("metadata", {})
    }
    text = glued["accuracy_text"]
    assert (
        "Word problems (GSM8K format)" in text and "Kinship questions" in text and "Arithmetic" in text
    )  # one line per set
    assert "at chance" in text and glued["any_at_chance"].strip("'\"") == "yes"  # an untrained model is at chance


def test_run_info_lists_the_prompt_sets():
    assert ch.set_list({"Arithmetic": [], "Kinship questions": []}) == "Arithmetic, Kinship questions"
