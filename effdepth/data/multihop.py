"""Synthetic multi-hop questions with a known number of hops: pointer chasing over facts in context.

Design (chosen so that models of a few million parameters learn it in minutes on a CPU):

* Entities are single lowercase letters (one token each with the zoo's character tokenizer).
* A question shows ``n_chains`` disjoint chains of ``chain_len`` facts each (``a>b`` reads
  "a points to b"); every entity is the source of at most one fact, so following a pointer is
  unambiguous. The facts of all chains are shuffled together: the other chains are distractors.
* The question asks where ``k`` hops from a start entity lead; the start is drawn uniformly among
  the chain positions that have ``k`` facts after them, so for ``k < chain_len`` the answer is not
  simply the chain's end.

Example (``chain_len=4``, two chains, 2 hops)::

    prompt: "F: q>d a>b m>t b>e d>c e>g t>k g>h Q: a 2 hops? A:"
    answer: " e"

``hops`` is the number of facts the answer needs, by construction; :func:`solve` recomputes it
(and the answer) from the text alone. Each extra hop needs one more sequential lookup (find the
fact whose source is the current entity, read its target), so the depth the task demands grows
with the hop count. Chance level is 1 / (number of entities in the facts), 1/10 by default.

Training text is ``prompt + answer`` (``"F: … Q: a 2 hops? A: e"``).
"""

from __future__ import annotations

import hashlib
import random
import re

from .examples import Example

ENTITIES = "abcdefghijklmnopqrstuvwxyz"
HOPS = (1, 2, 3, 4)
_FACT = re.compile(r"(?<![a-z])([a-z])([a-z])(?![a-z])")
_QUESTION = re.compile(r" Q(\d+): ([a-z])")


def _derive_seed(*parts) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16)


def make_facts(rng: random.Random, n_chains: int = 2, chain_len: int = 4) -> tuple[list[list[str]], str]:
    """``n_chains`` disjoint chains of ``chain_len`` facts and their shuffled text ``"F: a>b c>d …"``."""
    n_ent = n_chains * (chain_len + 1)
    if n_ent > len(ENTITIES):
        raise ValueError(f"{n_chains} chains of {chain_len} facts need {n_ent} entities; only {len(ENTITIES)} exist.")
    ents = rng.sample(ENTITIES, n_ent)
    chains = [ents[i * (chain_len + 1) : (i + 1) * (chain_len + 1)] for i in range(n_chains)]
    facts = [(c[j], c[j + 1]) for c in chains for j in range(chain_len)]
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


def make_question(rng: random.Random, hops: int, n_chains: int = 2, chain_len: int = 4) -> tuple[str, str, dict]:
    """One (prompt, answer, info) with exactly ``hops`` hops, drawn from ``rng``."""
    if not 1 <= hops <= chain_len:
        raise ValueError(f"hops must be in 1..chain_len={chain_len}, got {hops}.")
    chains, facts = make_facts(rng, n_chains, chain_len)
    question, answer, info = make_query(rng, chains[0], hops)
    info["chains"] = ["".join(c) for c in chains]
    return facts + question, answer, info


def make_session(rng: random.Random, n_questions: int, hops=HOPS, n_chains: int = 2, chain_len: int = 4) -> list[tuple[str, str]]:
    """One fact set followed by ``n_questions`` questions (training text): a list of (prompt, answer) turns.

    Each question picks a chain, a hop count from ``hops`` and a start at random. The first turn's
    prompt holds the facts; joined, the turns read ``"F: … Q: a 2 hops? A: e Q: c 1 hops? A: d"``.
    """
    chains, facts = make_facts(rng, n_chains, chain_len)
    turns = []
    for i in range(n_questions):
        question, answer, _ = make_query(rng, rng.choice(chains), rng.choice(list(hops)))
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


def make_walks(rng: random.Random, n_chains: int = 2, chain_len: int = 4) -> list[tuple[str, str]]:
    """A fact set followed by every chain written out in order (training text): (prompt, answer) turns.

    ``"F: ab cd be … W: abeg cdxy"``: each letter after a chain's first is one lookup (1 hop), so a
    walk gives dense supervision for the lookup that multi-hop questions chain. The walks are
    consistent with the facts (every adjacent pair in a walk is a fact).
    """
    chains, facts = make_facts(rng, n_chains, chain_len)
    order = list(range(n_chains))
    rng.shuffle(order)
    turns = []
    for i, c in enumerate(order):
        chain = chains[c]
        turns.append(((facts + " W: " if i == 0 else " ") + chain[0], "".join(chain[1:])))
    return turns


def multihop_examples(hops=HOPS, n_per_hops: int = 50, seed: int = 0, n_chains: int = 2, chain_len: int = 4) -> list[Example]:
    """Evaluation :class:`Example` s, ``n_per_hops`` per hop count (level = hops), seeded."""
    out = []
    for h in hops:
        rng = random.Random(_derive_seed("multihop", h, seed, n_chains, chain_len))
        for i in range(n_per_hops):
            prompt, answer, info = make_question(rng, h, n_chains, chain_len)
            out.append(Example(prompt, answer, level=h, meta={"dataset": "multihop", "seed": seed, "index": i, **info}))
    return out


def multihop_texts(n: int, seed: int = 0, hops=HOPS, n_chains: int = 2, chain_len: int = 4, n_questions: int = 1) -> list[str]:
    """``n`` training texts (facts, then ``n_questions`` questions with answers), hop counts uniform over ``hops``, seeded."""
    rng = random.Random(_derive_seed("multihop-train", seed, n_chains, chain_len, n_questions))
    return ["".join(p + a for p, a in make_session(rng, n_questions, hops, n_chains, chain_len)) for _ in range(n)]
