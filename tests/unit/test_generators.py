"""Offline data generators: labels checked by independent solvers, determinism, the sympy shim."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import sys
from decimal import Decimal

import pytest

from effdepth.data import arithmetic as A
from effdepth.data import multihop as M
from effdepth.data.examples import Example

# ---------------------------------------------------------------- mathematics_dataset


def test_shim_makes_mathematics_dataset_importable():
    arithmetic = A.import_mathematics_dataset()
    pkg = sys.modules["sympy.solvers.diophantine"]
    from sympy.solvers.diophantine.diophantine import base_solution_linear

    assert pkg.base_solution_linear is base_solution_linear
    assert sorted(arithmetic.train(lambda r: r)) == sorted(A.DM_TRAIN_MODULES)
    assert sorted(arithmetic.test()) == sorted(A.DM_TRAIN_MODULES)
    assert sorted(arithmetic.test_extra()) == sorted(A.DM_EXTRAPOLATE_MODULES)


@pytest.mark.parametrize("split", A.DM_SPLITS)
def test_every_arithmetic_module_generates(split):
    for module in A.dm_module_names(split):
        ((q, a),) = A.dm_problems(module, split, n=1, seed=3)
        assert isinstance(q, str) and isinstance(a, str)
        assert 0 < len(q) <= A.DM_MAX_QUESTION_LENGTH and 0 < len(a) <= A.DM_MAX_ANSWER_LENGTH


def test_dm_is_seeded_and_leaves_global_random_alone():
    import numpy as np

    random.seed(123)
    np.random.seed(123)
    expect_py, expect_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    a = A.dm_problems("add_sub_multiple", "train", n=5, seed=7)
    assert (random.random(), np.random.rand()) == (expect_py, expect_np)
    assert A.dm_problems("add_sub_multiple", "train", n=5, seed=7) == a
    assert A.dm_problems("add_sub_multiple", "train", n=5, seed=8) != a
    # the splits differ (interpolate uses a fixed, larger entropy)
    assert A.dm_problems("add_sub_multiple", "interpolate", n=5, seed=7) != a


_NUM = r"-?\d+(?:\.\d+)?"


def test_dm_mul_answers_are_products():
    """Solve `mul` questions independently: the two numbers in the question multiply to the answer."""
    for q, a in A.dm_problems("mul", "interpolate", n=20, seed=1):
        nums = re.findall(_NUM, q)
        assert len(nums) == 2, q
        assert Decimal(nums[0]) * Decimal(nums[1]) == Decimal(a), (q, a)


def test_dm_extrapolate_is_longer_than_train():
    train = A.dm_problems("add_sub_multiple", "train", n=30, seed=0)
    extra = A.dm_problems("add_sub_multiple_longer", "extrapolate", n=30, seed=0)
    count = lambda pairs: sum(len(re.findall(r"[+-] ", q)) for q, _ in pairs) / len(pairs)
    assert count(extra) > count(train)


def test_dm_examples_format_and_max_chars():
    exs = A.dm_examples("add_or_sub", "interpolate", n=10, seed=0, max_chars=40)
    assert len(exs) == 10
    for e in exs:
        assert isinstance(e, Example)
        assert e.prompt.startswith("Q: ") and e.prompt.endswith(" A:") and e.answer.startswith(" ")
        assert len(e.text) <= 40
        assert e.meta["module"] == "arithmetic__add_or_sub" and e.meta["split"] == "interpolate"
    with pytest.raises(ValueError, match="add_or_sub"):
        A.dm_problems("no_such_module", "train", n=1)
    with pytest.raises(ValueError, match="interpolate"):
        A.dm_problems("mul", "valid", n=1)


# (args, sha256 of the JSON of the pairs, first pair): recorded on the code before the §3.5 grid's
# sampler was folded into dm_problems (effdepth.objective.problems, then a second sampler), so both
# streams are kept exactly: the released generator's and the scaled-entropy one.
_GOLDEN = [
    (("add_sub_multiple", "train", 5, 0, 94), "38a2f81106400f08", ("Evaluate -3 - -3 - (2 - 0).", "-2")),
    (
        ("mul_div_multiple_longer", "extrapolate", 3, 0, 200),
        "d6688cdf55a97093",
        ("Evaluate ((-2*1/(-2))/((21/(3087/(-6)))/((-58)/(-812))))/((-1)/(-20)).", "-35"),
    ),
    (("div", "interpolate", 3, 1), "d6be7bb8ecd7df7b", ("Calculate 2657242 divided by 45038.", "59")),
    (
        ("add_sub_multiple", "train", 4, 3, 94, (1.0, 4.0), (2.0, 6.0)),
        "6ef1538a3d67f71e",
        ("Calculate 3 - (-3 - (-3 + 1)).", "4"),
    ),
    (
        ("mul_div_multiple_longer", "extrapolate", 4, 3, 94, (1.0, 4.0), (2.0, 6.0)),
        "2622422458856ead",
        ("What is the value of ((((-7)/(-8))/7)/((-2)/(-8)))/((-3)/6)?", "-1"),
    ),
    (("add_or_sub_big", "extrapolate", 4, 3, 94, (1.0, 4.0), (2.0, 6.0)), "148cbd8634343c20", ("-8.93+-38", "-46.93")),
    (
        ("div", "interpolate", 4, 3, 94, (1.0, 4.0), (2.0, 6.0)),
        "dd83a9bc1c464bea",
        ("What is 174 divided by -58?", "-3"),
    ),
    (
        ("mixed_longer", "extrapolate", 3, 0, 120, (2.0, 5.0), None),
        "f840294de236772d",
        ("What is the value of (-18)/15 + (-6 - -11)/25 + ((-134)/12 - 23/(-138))?", "-12"),
    ),
]


@pytest.mark.parametrize(
    "args, digest, first",
    _GOLDEN,
    ids=[f"{a[0]}-{a[1]}-{'scaled' if len(a) > 5 else 'generator'}" for a, _, _ in _GOLDEN],
)
def test_the_one_sampler_keeps_both_recorded_streams(args, digest, first):
    pairs = A.dm_problems(*args)
    assert pairs[0] == first
    assert hashlib.sha256(json.dumps([list(p) for p in pairs]).encode()).hexdigest()[:16] == digest


def test_scaled_entropy_offers_only_the_three_splits():
    with pytest.raises(ValueError, match="train, interpolate, extrapolate"):
        A.dm_problems("add_or_sub", "train-easy", 1, 0, None, (1.0, 4.0))


# ---------------------------------------------------------------- graded sums


def _independent_value(question: str) -> int:
    # Python's own parser on the expression, as a second opinion to solve_graded.
    assert re.fullmatch(r"\d([+-]\d)+", question), question
    return eval(question)


@pytest.mark.parametrize("split", A.GRADED_SPLITS)
def test_graded_levels_and_answers(split):
    exs = A.graded_examples(n_per_level=40, split=split, seed=5)
    assert {e.level for e in exs} == set(A.GRADED_LEVELS)
    for e in exs:
        q = e.prompt.removeprefix("Q: ").removesuffix(" A:")
        assert e.prompt == f"Q: {q} A:" and e.answer == f" {_independent_value(q)}"
        assert q.count("+") + q.count("-") == e.level  # level = number of operations
        assert A.solve_graded(e.prompt) == (_independent_value(q), e.level)
        assert A.is_test_question(q) == (split == "test")


def test_graded_test_split_is_the_hash_tenth_and_never_in_training():
    all_level1 = {f"{a}{op}{b}" for a, b in itertools.product(range(10), repeat=2) for op in "+-"}
    test = {q for q in all_level1 if int(hashlib.md5(q.encode()).hexdigest(), 16) % 100 < 10}
    got = {q for q, _ in A.graded_problems(1, 1000, "test", seed=0, unique=True)}
    assert got == test and len(test) == 23
    train_seen = {q for q, _ in A.graded_problems(1, 3000, "train", seed=0)}
    assert train_seen == all_level1 - test
    texts = A.graded_texts(2000, "train", seed=0)
    assert not any(t.removeprefix("Q: ").split(" A:")[0] in test for t in texts)


def test_graded_is_seeded():
    assert A.graded_problems(3, 20, seed=1) == A.graded_problems(3, 20, seed=1)
    assert A.graded_problems(3, 20, seed=1) != A.graded_problems(3, 20, seed=2)
    assert A.graded_texts(50, seed=4) == A.graded_texts(50, seed=4)
    assert len({q for q, _ in A.graded_problems(4, 100, unique=True)}) == 100
    with pytest.raises(ValueError):
        A.graded_problems(6, 1)
    with pytest.raises(ValueError):
        A.solve_graded("Q: 12+3 A:")


# ---------------------------------------------------------------- multi-hop


def _independent_solve(prompt: str) -> tuple[str, int, list[str]]:
    """Second, separately written solver: (answer, hops, entities in the facts)."""
    assert prompt.startswith("F: ")
    facts_part, _, rest = prompt[3:].partition(" Q")
    pairs = [(w[0], w[1]) for w in facts_part.split(" ")]
    assert all(len(w) == 2 for w in facts_part.split(" "))
    last_q = prompt.rsplit(" Q", 1)[1]  # e.g. "2: a"
    hops, start = int(last_q.split(":")[0]), last_q.split(": ")[1]
    node = start
    for _ in range(hops):
        (node,) = [t for s, t in pairs if s == node]
    return node, hops, sorted({x for p in pairs for x in p})


def test_solver_on_a_hand_written_question():
    assert M.solve("F: cd ab bc Q2: a") == ("c", 2)
    assert M.solve("F: cd ab bc Q3: a") == ("d", 3)
    with pytest.raises(ValueError):
        M.solve("F: ab ac Q1: a")  # ambiguous pointer
    with pytest.raises(ValueError):
        M.solve("F: ab Q2: a")  # chain too short


def test_multihop_labels_are_what_they_claim():
    exs = M.multihop_examples(n_per_hops=60, seed=11)
    assert sorted({e.level for e in exs}) == [1, 2, 3, 4]
    for e in exs:
        answer, hops, ents = _independent_solve(e.prompt)
        assert (answer, hops) == (e.answer, e.level) == M.solve(e.prompt)
        assert len(ents) == 8  # a questioned chain of 5 entities and a distractor of 3: chance is 1/8
        # the path has hops+1 distinct entities: the answer is not reachable in fewer hops
        assert e.meta["path"][-1] == answer and len(set(e.meta["path"])) == hops + 1
        assert e.prompt.endswith(f" Q{hops}: {e.meta['start']}") and len(e.answer) == 1


def test_multihop_is_seeded_and_not_position_trivial():
    a = M.multihop_examples(n_per_hops=20, seed=1)
    assert a == M.multihop_examples(n_per_hops=20, seed=1)
    assert a != M.multihop_examples(n_per_hops=20, seed=2)
    # the answer's fact is not always at the same place in the fact list
    positions = {e.prompt.index(e.meta["path"][-2] + e.answer) for e in a}
    assert len(positions) > 4
    # for fewer hops than the chain has, the answer is not always the chain's end
    ends = [e.meta["chains"][0][-1] == e.answer for e in a if e.level == 1]
    assert 0 < sum(ends) < len(ends)


def test_multihop_sessions_every_question_solvable():
    rng = random.Random(0)
    for _ in range(30):
        turns = M.make_session(rng, 4)
        text = ""
        for prompt, answer in turns:
            text += prompt
            assert M.solve(text)[0] == answer
            assert _independent_solve(text)[0] == answer
            text += answer
    assert M.multihop_texts(5, seed=3, n_questions=2) == M.multihop_texts(5, seed=3, n_questions=2)


def follow_or_none(graph, x, k):
    for _ in range(k):
        if x not in graph:
            return None
        x = graph[x]
    return x


def test_walks_follow_the_facts_in_strides_of_k_hops():
    rng = random.Random(2)
    for hops in (1, 2, 3, 4):
        for _ in range(10):
            turns = M.make_walks(rng, hops=hops)
            text = "".join(p + a for p, a in turns)
            facts, walks = text.split(f" W{hops}: ")
            graph = dict(facts.removeprefix("F: ").split(" "))
            walks = walks.split(" ")

            def follow(x, k):
                for _ in range(k):
                    x = graph[x]
                return x

            # consecutive letters of a walk are exactly `hops` facts apart
            assert all(follow(w[i], hops) == w[i + 1] for w in walks for i in range(len(w) - 1))
            # the walks cover, each once, every entity that starts or ends a `hops`-hop path
            ends = {x for x in graph if follow_or_none(graph, x, hops)} | {
                follow_or_none(graph, x, hops) for x in graph
            } - {None}
            covered = "".join(walks)
            assert len(covered) == len(set(covered)) and set(covered) == ends
            assert sum(len(a) for _, a in turns) == len(covered) - len(walks)  # every lookup is an answer token
    with pytest.raises(ValueError, match="5-hop"):
        M.make_walks(rng, hops=5)
