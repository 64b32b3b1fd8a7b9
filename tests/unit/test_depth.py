"""§4c depth score: the pure score of hand-made matrices, the statistics, and the measurement."""

import numpy as np
import pytest
import torch

from effdepth import depth_score
from effdepth.data.examples import Example
from effdepth.measures.depth_score import (
    bootstrap_levels,
    depth_from_weights,
    depth_scores,
    example_splits,
    greedy_correct,
    greedy_correct_batch,
    layer_importance,
    skip_positions,
    split_mode_of,
    trend_test,
)
from effdepth.measures.residual_erasure import encode_example
from effdepth.measures.skip_effects import prompt_effects


def test_score_of_a_hand_made_matrix():
    E = np.zeros((4, 4))
    E[0, 1:] = 1.0  # layer 0 changes all three later layers fully: e_0 = 3 / 3
    E[1, 3] = 0.5  # e_1 = 0.5 / 2
    E[2, 3] = 0.3  # e_2 = 0.3 / 1
    E[3, 0] = 9.0  # below the diagonal: not a later layer, ignored
    E[2, 2] = 7.0  # the diagonal is ignored too
    e = layer_importance(E)
    np.testing.assert_allclose(e, [1.0, 0.25, 0.3, 0.0])
    d_layer, d_out = depth_scores(E, np.array([0.0, 0.0, 0.0, 2.0]))
    assert d_layer == pytest.approx((0 * 1 + 1 * 0.25 + 2 * 0.3) / 1.55)
    assert d_out == pytest.approx(3.0)  # all output importance on the last layer
    assert depth_from_weights(np.ones(5)) == pytest.approx(2.0)  # uniform weights: the middle
    assert np.isnan(depth_from_weights(np.zeros(3)))
    # batched over leading axes
    np.testing.assert_allclose(depth_scores(np.stack([E, 2 * E]), np.ones((2, 4)))[0], [d_layer, d_layer])


def test_bootstrap_and_trend_statistics():
    rng = np.random.default_rng(0)
    L = 6
    E_one = np.triu(rng.uniform(0.1, 1, (L, L)), 1)
    E = np.stack([E_one] * 10)
    o = np.stack([np.linspace(0.1, 1, L)] * 10)
    levels = np.repeat([1, 2], 5)
    boot = bootstrap_levels(E, o, levels, n_boot=50, seed=0)
    d_layer, d_out = depth_scores(E_one, o[0])
    np.testing.assert_allclose(boot["max_layer"], [[d_layer, d_layer]] * 2)  # identical examples: no spread
    np.testing.assert_allclose(boot["mean_output"], [[d_out, d_out]] * 2)
    lv = np.repeat([1, 2, 3, 4], 25)
    rising = trend_test(lv, lv + rng.normal(0, 0.5, lv.size), n_boot=200)
    assert rising["rho"] > 0.5 and rising["p"] < 1e-3 and rising["lo"] > 0
    flat = trend_test(lv, rng.normal(0, 1, lv.size), n_boot=200)
    assert flat["lo"] < flat["rho"] < flat["hi"] and flat["lo"] < 0 < flat["hi"]
    falling = trend_test(lv, -lv + rng.normal(0, 0.5, lv.size), n_boot=200)
    assert falling["hi"] < 0 and falling["p"] < 1e-3


def test_split_points_of_answers_and_solutions():
    assert example_splits(20, 12, "answer") == [12]
    assert example_splits(20, 2, "answer") == []  # nothing before a0 - 1 = 1 to intervene on
    # worked solutions (methods page §4, the authors' code): offsets range(0, n_answer - 4, 4), shuffled
    # with the seed, up to 4 kept -- not the first four offsets
    T, a0 = 60, 10  # n_answer = 50: offsets 0, 4, …, 44 (12 of them)
    draws = {tuple(example_splits(T, a0, "solution", seed=seed, key="ex")) for seed in range(6)}
    assert all(len(d) == 4 and set(d) <= {a0 + x for x in range(0, 46, 4)} for d in draws)
    assert len(draws) > 1 and draws != {(10, 14, 18, 22)}  # shuffled: seeds give different picks
    assert example_splits(T, a0, "solution", seed=3, key="ex") == example_splits(T, a0, "solution", seed=3, key="ex")
    assert example_splits(20, 10, "solution", seed=1, key="k") == [10, 14]  # n_answer 10: offsets 0 and 4 only
    assert example_splits(14, 10, "solution") == []  # an answer of 4 tokens has no offset below n - 4
    assert split_mode_of(Example("p", "a", 1, {"dataset": "math"}), "auto") == "solution"
    assert split_mode_of(Example("p", "a", 2, {"dataset": "mquake"}), "auto") == "answer"
    with pytest.raises(ValueError, match="split must be"):
        split_mode_of(Example("p", "a"), "middle")


def test_depth_positions_measure_the_answer_predicting_position():
    """Methods page §4: split point a0 = the first answer token; intervene [1, a0 - 1), measure from a0 - 1
    (the position whose prediction is the answer). The authors' literal rule measured from a0."""
    inter, meas = skip_positions(12, 9)
    assert list(inter) == list(range(1, 8)) and list(meas) == [8, 9, 10, 11]
    assert 8 in meas and 8 not in inter  # the answer-predicting position is measured, not intervened


def test_greedy_correct_is_teacher_forced_exact_match(tiny_models):
    model = tiny_models["llama"]
    prompt = "Q: 5+7-5 A:"
    ids = model.encode(prompt)
    greedy = []
    with torch.no_grad():
        for _ in range(3):  # the model's own greedy continuation is, by definition, correct
            nxt = int(
                model.hf(input_ids=torch.cat([ids, torch.tensor(greedy, dtype=torch.long)])[None])
                .logits[0, -1]
                .argmax()
            )
            greedy.append(nxt)
    full = torch.cat([ids, torch.tensor(greedy)])
    assert greedy_correct(model, full, len(ids))
    wrong = full.clone()
    wrong[-1] = (wrong[-1] + 1) % model.vocab_size
    assert not greedy_correct(model, wrong, len(ids))
    # batched with right padding: the same verdicts, whatever the lengths
    short = full[:-1]
    assert greedy_correct_batch(model, [short, wrong, full], [len(ids)] * 3) == [True, False, True]
    # scored tokens only (a worked solution's step results): the wrong last token is not scored
    assert greedy_correct_batch(model, [wrong, wrong], [len(ids)] * 2, [[0, 1], [2]]) == [True, False]


def test_depth_score_counts_an_example_answered_as_the_model_page_does(tiny_models):
    """A worked solution is answered when each step's result is the greedy prediction (the spans in
    meta['scored']), the rule of `accuracy.exact_match`, not when every token of the solution is."""
    from effdepth.accuracy import exact_match

    model = tiny_models["llama"]
    prompt = "Q: 5+7-5 A:"
    ids = model.encode(prompt)
    greedy = []
    with torch.no_grad():
        for _ in range(6):
            greedy.append(
                int(
                    model.hf(input_ids=torch.cat([ids, torch.tensor(greedy, dtype=torch.long)])[None])
                    .logits[0, -1]
                    .argmax()
                )
            )
    right = model.tokenizer.decode(greedy[:3])
    filler = "".join(c for c in "qwertyuiopzxcv" if c not in right)[:8]
    ex = Example(prompt, right + filler, level=1, meta={"scored": [(0, len(right))]})
    strict = Example(prompt, right + filler, level=1)
    assert exact_match(model, [ex, strict]) == [True, False]
    r = depth_score(model, [ex, strict], split="solution", n_splits=1, n_boot=10)
    assert list(np.asarray(r.example_correct, bool)) == [True, False]


def test_measurement_matches_the_skip_test_and_aggregates(tiny_models):
    model = tiny_models["llama"]
    L = model.n_layers
    answers = [" seven is it", " eight is it", " nine is it!"]
    by_level = {
        1: [Example("Q: 5+7-5 A:", answers[0], 1), Example("Q: 1+2-3 A:", answers[1], 1)],
        2: [Example("Q: 5+7-5+1 A:", answers[2], 2), Example("Q: 9-7-5+3 A:", answers[0], 2)],
    }
    res = depth_score(model, by_level, split="answer", n_boot=100)
    assert list(res.levels) == [1, 2] and list(res.n_examples) == [2, 2]
    assert res.example_E.shape == (4, L, L) and res.max_E.shape == (2, L, L)
    # the split point is the answer start a0; the numbers are the future skip test that intervenes
    # on [1, a0 - 1) and measures from a0 - 1 (methods page §4), not the authors' literal boundary a0
    ex = by_level[1][0]
    ids, a0 = encode_example(model, ex.prompt, ex.answer)
    assert list(res.example_splits[0][:1]) == [a0] and (res.example_splits[0][1:] == -1).all()
    ours = prompt_effects(model, ids, "future", [a0 - 1], "fast")
    literal = prompt_effects(model, ids, "future", [a0], "fast")
    np.testing.assert_allclose(res.example_E[0], ours["max_layer"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res.example_o[0], ours["max_output"], rtol=1e-6, atol=1e-7)
    assert not np.allclose(res.example_o[0], literal["max_output"], rtol=1e-3, atol=1e-6)
    # aggregation: max and mean over a level's examples, then the pure scores
    np.testing.assert_allclose(res.max_E[0], res.example_E[:2].max(0))
    np.testing.assert_allclose(res.mean_o[1], res.example_o[2:].mean(0))
    np.testing.assert_allclose(res.depth_layer, depth_scores(res.max_E, res.max_o)[0])
    np.testing.assert_allclose(res.example_depth_output, depth_scores(res.example_E, res.example_o)[1])
    assert (
        res.max_E[:, np.tril_indices(L)[0], np.tril_indices(L)[1]] < 1e-6
    ).all()  # future setting: nothing at or below the diagonal
    assert np.all(
        (res.depth_layer_ci[:, 0] <= res.depth_layer + 1e-9) & (res.depth_layer <= res.depth_layer_ci[:, 1] + 1e-9)
    )
    assert ((res.accuracy >= 0) & (res.accuracy <= 1)).all() and res.example_correct.dtype == bool
    frame = res.to_frame()
    assert list(frame.index) == [1, 2] and {"accuracy", "depth_layer", "depth_output_lo"} <= set(frame.columns)
    assert set(res.trend("layer")) == {"rho", "p", "lo", "hi"}  # numbers only; verdicts live in chapters.complexity


# The generated levels themselves (hops, number of operations) are checked against independent
# solvers in tests/unit/test_generators.py (test_multihop_labels_are_what_they_claim,
# test_graded_levels_and_answers); not repeated here.


@pytest.mark.slow
def test_complexity_notebook_runs_on_a_tiny_model(tmp_path):
    """The §3.3 chapter executes under papermill on a tiny random model, with all its figures, the
    controls beside the model, and every sentence glued from the chapter module."""
    import re

    import nbformat

    from effdepth import running
    from effdepth.testing import save_tiny

    model = save_tiny(tmp_path / "m", "llama", n_layers=3)
    out = running.execute(
        running.NOTEBOOKS / "complexity.md",
        tmp_path / "complexity.ipynb",
        {"model": str(model), "n_per_level": 3, "ig_steps": 4, "n_reference": 3, "n_boot": 50, "n_controls": 2},
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    text = "\n".join(str(v) for o in outputs for v in o.get("data", {}).values())
    assert (
        model.name in text and "nnsight" in text
    )  # names its model (by its folder name: no machine path), stamps versions
    assert "Graded arithmetic" in text and "Multi-hop questions" in text  # a tiny model reads the generated sets
    assert "layers per level" in text and "random-init control" in text
    assert "As in the paper" not in text  # an untrained model never gets the paper's verdict
    images = [o for o in outputs if any(k.endswith("image/png") for k in o.get("data", {}))]
    assert len(images) == 4  # Figs 6, 7, 38 and the interval plot
    glued = {o["metadata"]["scrapbook"]["name"] for o in outputs if "scrapbook" in o.get("metadata", {})}
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    cited = set(re.findall(r"\{glue:(?:md|text)\}`([a-z0-9_]+)", md)) | set(
        re.findall(r"```\{glue:md\} ([a-z0-9_]+)", md)
    )
    assert {"summary", "per_dataset", "examples", "run"} <= cited <= glued
    # no sentences built in code cells: tests/test_notebook_lint.py checks every notebook's code cells


def test_real_sets_from_local_files_use_solution_split_points(tmp_path, monkeypatch, tiny_models):
    """MATH / MQuAKE through their local-file overrides; worked solutions get up to 4 split points."""
    import json

    from effdepth.chapters.complexity import difficulty_datasets

    math_rows = [
        {
            "problem": f"Find x if x+{i}={i + lv}.",
            "level": f"Level {lv}",
            "type": "Intermediate Algebra",
            "solution": f"We have x = {i + lv} - {i} = {lv}, so the answer is {lv}.",
        }
        for lv in (1, 2, 3, 4, 5)
        for i in range(3)
    ]
    (tmp_path / "math.jsonl").write_text("\n".join(json.dumps(r) for r in math_rows))
    mq_rows = [
        {
            "questions": [f"Who is {h} hops away from a{i}?"],
            "answer": f"b{i}",
            "orig": {"triples": [["s", "r", "o"]] * h},
        }
        for h in (2, 3, 4)
        for i in range(3)
    ]
    (tmp_path / "mquake.json").write_text(json.dumps(mq_rows))
    monkeypatch.setenv("EFFDEPTH_MATH", str(tmp_path / "math.jsonl"))
    monkeypatch.setenv("EFFDEPTH_MQUAKE", str(tmp_path / "mquake.json"))
    sets, notes = difficulty_datasets("Some/hub-model", n_per_level=2, seed=0)
    assert notes == [] and list(sets) == ["MATH (intermediate algebra)", "MQuAKE (CF3k)"]
    assert list(sets["MATH (intermediate algebra)"]["examples"]) == [1, 2, 3, 4, 5]
    assert list(sets["MQuAKE (CF3k)"]["examples"]) == [2, 3, 4]
    math = {lv: exs for lv, exs in sets["MATH (intermediate algebra)"]["examples"].items() if lv <= 2}
    model = tiny_models["llama"]
    res = depth_score(model, math, n_boot=20)
    for ex_splits, (_lv, exs) in zip(res.example_splits, [(lv, e) for lv, es in math.items() for e in es]):
        ids, a0 = encode_example(model, exs.prompt, exs.answer)
        # 'auto' → solution split points: 4 of a0 + range(0, n_answer - 4, 4), shuffled with the seed
        assert list(ex_splits) == example_splits(len(ids), a0, "solution", seed=0, key=exs.prompt + exs.answer)
        assert len(ex_splits) == 4 and set(ex_splits) <= set(range(a0, len(ids) - 4, 4))
    mq = sets["MQuAKE (CF3k)"]["examples"]
    res = depth_score(model, {2: mq[2]}, n_boot=20)
    _, a0 = encode_example(model, mq[2][0].prompt, mq[2][0].answer)
    assert list(res.example_splits[0]) == [a0, -1, -1, -1]  # 'auto' → one split at the answer
