"""Synthetic multi-hop questions with a known number of hops: pointer chasing over facts in context.

Design (chosen so that models of a million parameters learn it in minutes on a CPU):

* Entities are single lowercase letters (one token each with the zoo's character tokenizer).
* A fact is two adjacent letters: ``xy`` reads "x points to y". A question shows a shuffled list of
  facts forming ``n_chains`` disjoint chains: the questioned chain has ``chain_len`` facts (4), the
  other (distractor) chains ``distractor_len`` facts (2 by default; ``None``: also ``chain_len``).
  Every entity is the source of at most one fact, so following a pointer is unambiguous.
* The question ``Qk: s`` asks for the entity ``k`` hops from ``s`` along the questioned chain; the
  start is drawn uniformly among the positions that have ``k`` facts after them, so for
  ``k < chain_len`` the answer is not simply the chain's end. The answer is the single letter that
  follows the prompt directly (no separator), so the answer is predicted at the position of ``s``.

Example (two hops)::

    prompt: "F: dq ub yu ry qz xr Q2: x"
    answer: "y"            (x -> r -> y)

``hops`` is the number of facts the answer needs, by construction; :func:`solve` recomputes the
answer and the hop count from the text alone. One hop is an induction-style lookup (find the fact
whose first letter is the current entity, read its second letter); every extra hop needs one more
such lookup on the result, so the depth the task demands grows with the hop count. Chance level is
1 / (number of entities in the facts): 1/8 by default.

Why this format: the query letter sits at the predicting position and a fact's target sits right
after its source, so one hop is exactly the induction-head pattern (previous-token head + matching
head), the lookup small transformers learn fastest. With ``"a>b"`` facts and ``"Q: a 2 hops? A:"``
questions, 1-4 layer models trained for ~1,000 steps stayed at chance in our trials.
:func:`make_walks` writes the chains out after their facts (``"W1: xryub dqz"``; in strides of k
facts for ``W{k}``): each letter is one k-hop answer, a dense training signal for the lookups that
questions chain.

Training text is ``prompt + answer``.
"""

from __future__ import annotations

import hashlib
import random
import re

from effdepth.data.examples import Example

ENTITIES = "abcdefghijklmnopqrstuvwxyz"
HOPS = (1, 2, 3, 4)
DISTRACTOR_LEN = 2  # facts in each distractor chain (the questioned chain has chain_len = 4)
_FACT = re.compile(r"(?<![a-z])([a-z])([a-z])(?![a-z])")
_QUESTION = re.compile(r" Q(\d+): ([a-z])")


def _derive_seed(*parts) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16)


def _lengths(n_chains: int, chain_len: int, distractor_len: int | None) -> list[int]:
    return [chain_len] + [chain_len if distractor_len is None else distractor_len] * (n_chains - 1)


def make_facts(
    rng: random.Random, n_chains: int = 2, chain_len: int = 4, distractor_len: int | None = DISTRACTOR_LEN
) -> tuple[list[list[str]], str]:
    """Disjoint chains (the first of ``chain_len`` facts, the other ``n_chains - 1`` of
    ``distractor_len``, default ``chain_len``) and their shuffled text ``"F: ab cd …"``."""
    lengths = _lengths(n_chains, chain_len, distractor_len)
    n_ent = sum(n + 1 for n in lengths)
    if n_ent > len(ENTITIES):
        raise ValueError(f"chains of {lengths} facts need {n_ent} entities; only {len(ENTITIES)} exist.")
    ents = rng.sample(ENTITIES, n_ent)
    chains, i = [], 0
    for n in lengths:
        chains.append(ents[i : i + n + 1])
        i += n + 1
    facts = [(c[j], c[j + 1]) for c in chains for j in range(len(c) - 1)]
    rng.shuffle(facts)
    return chains, "F: " + " ".join(f"{s}{t}" for s, t in facts)


def make_query(rng: random.Random, chain: list[str], hops: int) -> tuple[str, str, dict]:
    """A question of exactly ``hops`` hops along ``chain``: (``" Q2: a"``, ``"e"``, info)."""
    chain_len = len(chain) - 1
    if not 1 <= hops <= chain_len:
        raise ValueError(f"hops must be in 1..chain_len={chain_len}, got {hops}.")
    start_pos = rng.randint(0, chain_len - hops)
    start, answer = chain[start_pos], chain[start_pos + hops]
    info = {"start": start, "path": chain[start_pos : start_pos + hops + 1]}
    return f" Q{hops}: {start}", answer, info


def make_question(
    rng: random.Random, hops: int, n_chains: int = 2, chain_len: int = 4, distractor_len: int | None = DISTRACTOR_LEN
) -> tuple[str, str, dict]:
    """One (prompt, answer, info) with exactly ``hops`` hops along the first (longest) chain, drawn from ``rng``."""
    if not 1 <= hops <= chain_len:
        raise ValueError(f"hops must be in 1..chain_len={chain_len}, got {hops}.")
    chains, facts = make_facts(rng, n_chains, chain_len, distractor_len)
    question, answer, info = make_query(rng, chains[0], hops)
    info["chains"] = ["".join(c) for c in chains]
    return facts + question, answer, info


def make_session(
    rng: random.Random,
    n_questions: int,
    hops=HOPS,
    n_chains: int = 2,
    chain_len: int = 4,
    distractor_len: int | None = DISTRACTOR_LEN,
) -> list[tuple[str, str]]:
    """One fact set followed by ``n_questions`` questions (training text): a list of (prompt, answer) turns.

    Each question picks a chain, a hop count from ``hops`` and a start at random. The first turn's
    prompt holds the facts; joined, the turns read ``"F: … Q: a 2 hops? A: e Q: c 1 hops? A: d"``.
    """
    chains, facts = make_facts(rng, n_chains, chain_len, distractor_len)
    turns = []
    for i in range(n_questions):
        h = rng.choice(list(hops))
        question, answer, _ = make_query(rng, rng.choice([c for c in chains if len(c) > h]), h)
        turns.append(((facts if i == 0 else "") + question, answer))
    return turns


def solve(prompt: str) -> tuple[str, int]:
    """(answer, hops) of a multi-hop prompt, recomputed from its text alone.

    The facts are those before the first question; with several questions the last one is solved.

    Checks that the facts define each pointer at most once, and follows ``hops`` pointers from the
    start. Returns the answer with its leading separator space, as :class:`Example` stores it.
    """
    qs = list(_QUESTION.finditer(prompt))
    if not qs:
        raise ValueError(f"No question in {prompt!r}")
    q = qs[-1]  # the last question is the one the prompt asks
    facts_text = prompt[: qs[0].start()]
    pairs = _FACT.findall(facts_text)
    graph: dict[str, str] = {}
    for s, t in pairs:
        if s in graph:
            raise ValueError(f"Entity {s!r} has two facts in {prompt!r}")
        graph[s] = t
    hops, node = int(q.group(1)), q.group(2)
    seen = [node]
    for _ in range(hops):
        if node not in graph:
            raise ValueError(f"Chain from {q.group(2)!r} ends before {hops} hops in {prompt!r}")
        node = graph[node]
        if node in seen:
            raise ValueError(f"Cycle in {prompt!r}")
        seen.append(node)
    return node, hops


def make_walks(
    rng: random.Random,
    n_chains: int = 2,
    chain_len: int = 4,
    distractor_len: int | None = DISTRACTOR_LEN,
    hops: int = 1,
) -> list[tuple[str, str]]:
    """A fact set followed by its chains written out in strides of ``hops`` (training text):
    (prompt, answer) turns.

    ``hops=1``: ``"F: ab cd be … W1: abeg cdx"``, every chain in order; each letter after a walk's
    first is one lookup. ``hops=2``: ``"W2: aeh bg cx"``: each letter is the entity two facts after
    the previous one, a 2-hop question answered in place. Walks give dense supervision (one target
    per letter) for exactly the lookups that multi-hop questions chain; every ``hops``-strided pair
    in a walk is a ``hops``-hop path in the facts.
    """
    if hops < 1:
        raise ValueError(f"hops must be at least 1, got {hops}.")
    chains, facts = make_facts(rng, n_chains, chain_len, distractor_len)
    walks = [c[r::hops] for c in chains for r in range(hops) if len(c[r::hops]) > 1]
    if not walks:
        raise ValueError(f"No chain of {_lengths(n_chains, chain_len, distractor_len)} facts has a {hops}-hop path.")
    rng.shuffle(walks)
    return [((f"{facts} W{hops}: " if i == 0 else " ") + w[0], "".join(w[1:])) for i, w in enumerate(walks)]


def multihop_examples(
    hops=HOPS,
    n_per_hops: int = 50,
    seed: int = 0,
    n_chains: int = 2,
    chain_len: int = 4,
    distractor_len: int | None = DISTRACTOR_LEN,
) -> list[Example]:
    """Evaluation :class:`Example` s, ``n_per_hops`` per hop count (level = hops), seeded."""
    out = []
    for h in hops:
        rng = random.Random(_derive_seed("multihop", h, seed, n_chains, chain_len, distractor_len))
        for i in range(n_per_hops):
            prompt, answer, info = make_question(rng, h, n_chains, chain_len, distractor_len)
            out.append(Example(prompt, answer, level=h, meta={"dataset": "multihop", "seed": seed, "index": i, **info}))
    return out


def multihop_texts(
    n: int,
    seed: int = 0,
    hops=HOPS,
    n_chains: int = 2,
    chain_len: int = 4,
    n_questions: int = 1,
    distractor_len: int | None = DISTRACTOR_LEN,
) -> list[str]:
    """``n`` training texts (facts, then ``n_questions`` questions with answers), hop counts uniform over ``hops``, seeded."""
    rng = random.Random(_derive_seed("multihop-train", seed, n_chains, chain_len, n_questions, distractor_len))
    return [
        "".join(p + a for p, a in make_session(rng, n_questions, hops, n_chains, chain_len, distractor_len))
        for _ in range(n)
    ]
