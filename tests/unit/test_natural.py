"""The project's own English prompt sets (answers, hop counts, determinism) and the accuracy table."""

import pytest
import torch

from effdepth.access.model import wrap_module
from effdepth.accuracy import accuracy_table, at_chance, exact_match, scored_tokens
from effdepth.data.examples import Example
from effdepth.data.natural import (
    RELATIONS,
    arithmetic_problems,
    chance,
    kinship_questions,
    natural_sets,
    solve_kinship,
    solve_word_problem,
    word_problems,
)
from effdepth.data.real import GSM8K_TEMPLATE, final_answer
from effdepth.testing import char_tokenizer, tiny_model


def test_word_problems_have_correct_worked_solutions():
    exs = word_problems(n_per_level=15, seed=3)
    assert sorted({e.level for e in exs}) == [1, 2, 3, 4]
    head = GSM8K_TEMPLATE.split("{question}")[0]
    for e in exs:
        assert e.prompt.startswith(head) and e.prompt.endswith("\n\n")
        results = solve_word_problem(e.answer)  # recomputes every "a op b = c"
        assert results == e.meta["values"][1:] and len(results) == e.level
        assert final_answer(e.text) == str(e.meta["final"]) == str(results[-1])
        assert [e.answer[a:b] for a, b in e.meta["scored"]] == [str(v) for v in results]
        assert all(v >= 1 for v in results)
    with pytest.raises(ValueError, match="is wrong"):
        solve_word_problem("Ann has 3 + 4 = 8 apples.")


def test_kinship_answers_and_hop_counts_from_the_text():
    exs = kinship_questions(n_per_level=10, seed=1)
    assert sorted({e.level for e in exs}) == [1, 2, 3, 4]
    for e in exs:
        assert solve_kinship(e.prompt) == (e.answer, e.level)
        assert f"Who is the {RELATIONS[e.level]} of " in e.prompt and e.prompt.endswith(
            f"\nAnswer: The {RELATIONS[e.level]} of {e.meta['path'][0]} is"
        )
        assert e.prompt.split("\nQuestion")[0].count("The mother of") == 8 and e.meta["n_names"] == 10
        assert e.meta["path"][-1] == e.answer.strip() and len(e.meta["path"]) == e.level + 1
    with pytest.raises(ValueError, match="two mothers"):
        solve_kinship("The mother of Ann is Beth. The mother of Ann is Rose.\nQuestion: Who is the mother of Ann?")


def test_arithmetic_levels_are_operation_counts():
    exs = arithmetic_problems(n_per_level=20, seed=0)
    assert sorted({e.level for e in exs}) == [1, 2, 3, 4, 5]
    for e in exs:
        expr = e.meta["expression"]
        assert e.prompt == f"Question: What is {expr}?\nAnswer: {expr} ="
        assert eval(expr) == int(e.answer) and e.answer.startswith(" ")
        assert expr.count("+") + expr.count("-") == e.level
        assert all(0 <= v <= 99 for v in e.meta["values"])


def test_sets_are_deterministic_from_the_seed():
    a, b, c = natural_sets(5, seed=0), natural_sets(5, seed=0), natural_sets(5, seed=1)
    for name in a:
        assert [e.text for e in a[name]] == [e.text for e in b[name]]
        assert [e.text for e in a[name]] != [e.text for e in c[name]]
        assert len(a[name]) == 5 * len({e.level for e in a[name]})


def test_chance_rates():
    assert chance(kinship_questions(hops=(2,), n_per_level=4)) == pytest.approx(0.1)
    assert chance([Example("q", " 5"), Example("q", " 5"), Example("q", " 7")]) == pytest.approx(2 / 3)
    w = lambda a, b: Example("q", f"so {a} then {b}", 2, {"scored": [(3, 4), (10, 11)]})
    assert chance([w(2, 4), w(2, 4), w(2, 5), w(3, 4)]) == pytest.approx(9 / 16)  # "2" then "4": 3/4 each
    with pytest.raises(ValueError):
        chance([])


def test_at_chance_both_sides():
    assert at_chance(2, 20, 0.1)[0]  # 10 % of 20 is what guessing gives
    assert not at_chance(12, 20, 0.1)[0]
    assert at_chance(0, 10, 0.0)[0] and not at_chance(1, 10, 0.0)[0]


@pytest.fixture
def tiny():
    torch.set_num_threads(1)
    tok = char_tokenizer()
    return wrap_module(tiny_model("llama", vocab_size=len(tok), n_layers=2), tok, spec="tiny:llama")


def test_scored_tokens_follow_character_spans(tiny):
    ex = Example("Q: 12+5 A:", " 17 ok", 1, {"scored": [(1, 3)]})
    ids, idx = scored_tokens(tiny, ex)
    text = ex.prompt + ex.answer
    assert tiny.tokenizer.decode(ids[idx]) == "17"
    assert len(ids) == len(text) + 1  # characters plus BOS
    whole = scored_tokens(tiny, Example("Q:", " ab"))[1]
    assert tiny.tokenizer.decode(scored_tokens(tiny, Example("Q:", " ab"))[0][whole]) == " ab"


def test_exact_match_is_teacher_forced_argmax(tiny):
    exs = [
        Example("The cat sat on ", "the mat"),
        Example("ab", "c", meta={"scored": [(0, 1)]}),
        Example("Q: 1+1 A:", " 2 yes", meta={"scored": [(1, 2)]}),
    ]
    # make the scored answer characters the model's own greedy continuations (one at a time: each
    # changes what later positions read), then break one
    fixed = []
    for ex in exs:
        ans = list(ex.answer)
        for i in scored_tokens(tiny, ex)[1]:
            ids = scored_tokens(tiny, Example(ex.prompt, "".join(ans), ex.level, ex.meta))[0]
            with torch.no_grad():
                best = int(tiny.hf(input_ids=ids[None, :i]).logits[0, -1].argmax())
            assert best >= 4, "the tiny model predicted a special token"
            ans[i - len(ex.prompt) - 1] = tiny.tokenizer.decode([best])  # -1: the BOS shifts tokens by one
        fixed.append(Example(ex.prompt, "".join(ans), ex.level, ex.meta))
    assert exact_match(tiny, fixed, batch_size=2) == [True, True, True]
    wrong = Example(fixed[0].prompt, fixed[0].answer[:-1] + ("x" if fixed[0].answer[-1] != "x" else "y"))
    assert exact_match(tiny, [wrong, fixed[1]]) == [False, True]
    table = accuracy_table(tiny, {"mix": fixed[:2] + [wrong]})
    assert list(table.columns) == ["set", "level", "n", "accuracy", "chance", "p", "label"]
    assert table.loc[0, "accuracy"] == pytest.approx(2 / 3) and table.loc[0, "n"] == 3


def test_sets_are_looked_up_by_name():
    from effdepth.data import load_examples, load_prompts

    exs = load_examples("kinship", n=6, seed=2)
    assert [e.level for e in exs] == [1, 2, 3, 4, 1, 2]
    assert load_prompts("word_problems", n=3)[0].startswith("Given the following problem")
    assert load_examples("arithmetic", n=5)[4].level == 5
    with pytest.raises(ValueError, match="word_problems, kinship, arithmetic"):
        load_examples("nope")
