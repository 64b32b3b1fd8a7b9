"""English prompt sets the project generates itself, for pretrained models when the Hub is offline.

Three sets, each deterministic from a seed, each `Example(prompt, answer, level, meta)`:

* **Word problems** (`word_problems`): GSM8K-style stories in the methods page §8 GSM8K prompt format (the
  instruction, the problem, then the worked solution and "The final answer is N" as the answer).
  A name and a kind of object, a starting amount, then `level` steps (buy, give away, double/triple,
  share equally), each one arithmetic operation; the worked solution has one sentence per step,
  "… has 12 + 5 = 17 apples." `meta['scored']` are the character spans (in the answer) of every
  step's result, the numbers that need computing under teacher forcing. Level = number of steps (1–4).
  (GSM8K's calculator annotations "<<12+5=17>>" are left out: they are not English.)
* **Kinship questions** (`kinship_questions`): "The mother of Ann is Beth. …" facts of two shuffled
  four-generation lines, then "Question: Who is the grandmother of Ann?\\nAnswer: The grandmother of
  Ann is" → " Carol" (the answer sentence is begun: after a bare "Answer:" SmolLM2-Instruct predicts
  its end-of-turn token).
  Level = hops = facts the answer needs (1 mother, 2 grandmother, 3 great-grandmother,
  4 great-great-grandmother); `solve_kinship` recomputes answer and hops from the text alone.
* **Arithmetic** (`arithmetic_problems`): "Question: What is 12 + 7 - 5?\\nAnswer: 12 + 7 - 5 =" → " 14";
  level = number of operations (1–5), operands 1–20, `+` and `-`, every partial result in 0–99.

`natural_sets` returns all three by name; `chance` gives each example's guessing baseline.
"""

from __future__ import annotations

import hashlib
import random
import re

from effdepth.data.examples import Example
from effdepth.data.real import GSM8K_TEMPLATE

NAMES = (
    "Ann",
    "Ben",
    "Carl",
    "Dan",
    "Emma",
    "Frank",
    "Grace",
    "Henry",
    "Jack",
    "James",
    "Kate",
    "Leo",
    "Lily",
    "Mark",
    "Mary",
    "Nick",
    "Paul",
    "Peter",
    "Sam",
    "Tom",
)
MOTHERS = (
    "Alice",
    "Beth",
    "Carol",
    "Diana",
    "Ellen",
    "Fiona",
    "Helen",
    "Irene",
    "Julia",
    "Laura",
    "Linda",
    "Lucy",
    "Maria",
    "Nancy",
    "Olivia",
    "Rose",
    "Sarah",
    "Susan",
    "Tina",
    "Wendy",
)
ITEMS = ("apples", "books", "cards", "coins", "cookies", "eggs", "marbles", "pencils", "stamps", "stickers")
RELATIONS = {1: "mother", 2: "grandmother", 3: "great-grandmother", 4: "great-great-grandmother"}
WORD_LEVELS, HOPS, ARITH_LEVELS = (1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4, 5)


def _rng(*parts) -> random.Random:
    return random.Random(int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16))


def _generate(
    dataset: str, key: str, make, levels, n_per_level: int, seed: int, wrap=lambda prompt: prompt
) -> list[Example]:
    """`n_per_level` examples per level from `make(rng, level) -> (prompt, answer, info)`; each level has
    its own seeded stream (named by `key`), so adding a level leaves the others' examples unchanged."""
    out = []
    for lv in levels:
        rng = _rng(key, lv, seed)
        for i in range(n_per_level):
            prompt, answer, info = make(rng, lv)
            out.append(Example(wrap(prompt), answer, lv, {"dataset": dataset, "seed": seed, "index": i, **info}))
    return out


# -- word problems -----------------------------------------------------------------------------

_MULT = {2: "doubles", 3: "triples"}


def _step(rng: random.Random, x: int, name: str, friend: str, items: str) -> tuple[str, str, int]:
    """One step on the running amount x: (story sentence, solution sentence up to the result, result)."""
    shares = [k for k in (2, 3, 4) if x % k == 0 and x // k >= 2]
    ops = ["add"] + (["sub"] if x >= 3 else []) + (["mul"] if x <= 40 else []) + (["div"] if shares else [])
    op = rng.choice(ops)
    if op == "add":
        b = rng.randint(2, 30)
        return f"Then {name} buys {b} more {items}.", f"After buying {b} more, {name} has {x} + {b} = ", x + b
    if op == "sub":
        b = rng.randint(1, x - 2)
        return (
            f"Then {name} gives {b} {items} to {friend}.",
            f"After giving {b} to {friend}, {name} has {x} - {b} = ",
            x - b,
        )
    if op == "mul":
        k = rng.choice(tuple(_MULT))
        return (
            f"Then the number of {items} {name} has {_MULT[k]}.",
            f"After it {_MULT[k]}, {name} has {x} * {k} = ",
            x * k,
        )
    k = rng.choice(shares)
    return (
        f"Then {name} shares the {items} equally among {k} friends and keeps one share.",
        f"Sharing {x} {items} among {k} friends, {name} keeps {x} / {k} = ",
        x // k,
    )


def word_problem(rng: random.Random, steps: int) -> tuple[str, str, dict]:
    """(question, worked solution ending in "The final answer is N", info) with `steps` operations."""
    name, friend = rng.sample(NAMES, 2)
    items = rng.choice(ITEMS)
    x = rng.randint(3, 30)
    story, solution, scored, values = [f"{name} has {x} {items}."], [], [], [x]
    for _ in range(steps):
        s, sol, y = _step(rng, x, name, friend, items)
        story.append(s)
        offset = sum(len(t) + 1 for t in solution) + len(sol)
        scored.append((offset, offset + len(str(y))))
        solution.append(f"{sol}{y} {items}.")
        values.append(y)
        x = y
    question = " ".join(story) + f" How many {items} does {name} have now?"
    answer = "\n".join(solution) + f"\nThe final answer is {x}"
    return question, answer, {"scored": scored, "values": values, "final": x}


def word_problems(levels=WORD_LEVELS, n_per_level: int = 20, seed: int = 0) -> list[Example]:
    """GSM8K-format word problems, `n_per_level` per number of steps; the answer is the worked solution."""
    return _generate(
        "word_problems",
        "word",
        word_problem,
        levels,
        n_per_level,
        seed,
        wrap=lambda q: GSM8K_TEMPLATE.format(question=q),
    )


_STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def solve_word_problem(answer: str) -> list[int]:
    """The result of every "a op b = c" in a worked solution, recomputed (raises if one is wrong)."""
    out = []
    for a, op, b, c in _STEP.findall(answer):
        a, b, c = int(a), int(b), int(c)
        want = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
        if want != c:
            raise ValueError(f"{a} {op} {b} = {c} is wrong in {answer!r}")
        out.append(c)
    return out


# -- kinship questions -------------------------------------------------------------------------


def kinship_question(rng: random.Random, hops: int, generations: int = 4) -> tuple[str, str, dict]:
    """Facts of two shuffled lines of `generations` mothers each; a question `hops` generations up."""
    if not 1 <= hops <= generations:
        raise ValueError(f"hops must be in 1..{generations}, got {hops}.")
    kids = rng.sample(NAMES, 2)
    mothers = rng.sample(MOTHERS, 2 * generations)
    lines = [[kids[0]] + mothers[:generations], [kids[1]] + mothers[generations:]]
    facts = [(line[j], line[j + 1]) for line in lines for j in range(generations)]
    rng.shuffle(facts)
    text = " ".join(f"The mother of {c} is {m}." for c, m in facts)
    rel, kid = RELATIONS[hops], lines[0][0]
    prompt = f"{text}\nQuestion: Who is the {rel} of {kid}?\nAnswer: The {rel} of {kid} is"
    return prompt, f" {lines[0][hops]}", {"path": lines[0][: hops + 1], "n_names": len(kids) + len(mothers)}


def kinship_questions(hops=HOPS, n_per_level: int = 20, seed: int = 0) -> list[Example]:
    return _generate("kinship", "kinship", kinship_question, hops, n_per_level, seed)


_FACT = re.compile(r"The mother of (\w+) is (\w+)\.")
_ASK = re.compile(r"Who is the ((?:great-)*(?:grand)?mother) of (\w+)\?")


def solve_kinship(prompt: str) -> tuple[str, int]:
    """(answer with its leading space, hops) recomputed from the prompt's text."""
    mother: dict[str, str] = {}
    for c, m in _FACT.findall(prompt):
        if c in mother:
            raise ValueError(f"{c} has two mothers in {prompt!r}")
        mother[c] = m
    q = _ASK.search(prompt)
    if not q:
        raise ValueError(f"No question in {prompt!r}")
    rel = q.group(1)
    hops = 1 + rel.count("great-") + (1 if "grand" in rel else 0)
    node = q.group(2)
    for _ in range(hops):
        node = mother[node]
    return f" {node}", hops


# -- arithmetic --------------------------------------------------------------------------------


def arithmetic_problem(rng: random.Random, n_ops: int) -> tuple[str, str, dict]:
    x = rng.randint(1, 20)
    expr, values = str(x), [x]
    for _ in range(n_ops):
        ops = [o for o in "+-" if 0 <= (x + 1 if o == "+" else x - 1) <= 99]
        op = rng.choice(ops)
        b = rng.randint(1, min(20, 99 - x) if op == "+" else min(20, x))
        x = x + b if op == "+" else x - b
        expr += f" {op} {b}"
        values.append(x)
    return f"Question: What is {expr}?\nAnswer: {expr} =", f" {x}", {"expression": expr, "values": values}


def arithmetic_problems(levels=ARITH_LEVELS, n_per_level: int = 20, seed: int = 0) -> list[Example]:
    return _generate("arithmetic", "arith", arithmetic_problem, levels, n_per_level, seed)


# -- all sets ----------------------------------------------------------------------------------

SETS = {
    "word_problems": ("Word problems (GSM8K format)", "Steps", word_problems),
    "kinship": ("Kinship questions", "Hops", kinship_questions),
    "arithmetic": ("Arithmetic", "Operations", arithmetic_problems),
}


def natural_sets(n_per_level: int = 20, seed: int = 0) -> dict[str, list[Example]]:
    """All three sets by name ('word_problems', 'kinship', 'arithmetic')."""
    return {name: make(n_per_level=n_per_level, seed=seed) for name, (_, _, make) in SETS.items()}


def chance(examples: list[Example]) -> float:
    """The accuracy of guessing without working the problem out, for one level's examples: kinship:
    a name of the prompt drawn uniformly (1 / names); otherwise always giving the level's most common
    answer; with `meta['scored']` spans (word problems), the product over spans of the rate at which
    each span's most common value occurs (guessing every step's value independently)."""
    if not examples:
        raise ValueError("chance() needs at least one example.")
    if all("n_names" in ex.meta for ex in examples):
        return sum(1 / ex.meta["n_names"] for ex in examples) / len(examples)
    keys = [[ex.answer[a:b] for a, b in ex.meta.get("scored", [(0, len(ex.answer))])] for ex in examples]
    rate = 1.0
    for j in range(max(map(len, keys))):
        col = [k[j] for k in keys if len(k) > j]
        rate *= max(col.count(v) for v in set(col)) / len(keys)
    return rate
