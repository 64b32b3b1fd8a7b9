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
_FACT = re.compile(r"([a-z])>([a-z])")
_QUESTION = re.compile(r"Q: ([a-z]) (\d+) hops\? A:")


def _derive_seed(*parts) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16)


def make_question(rng: random.Random, hops: int, n_chains: int = 2, chain_len: int = 4) -> tuple[str, str, dict]:
    """One (prompt, answer, info) with exactly ``hops`` hops, drawn from ``rng``."""
    if not 1 <= hops <= chain_len:
        raise ValueError(f"hops must be in 1..chain_len={chain_len}, got {hops}.")
    n_ent = n_chains * (chain_len + 1)
    if n_ent > len(ENTITIES):
        raise ValueError(f"{n_chains} chains of {chain_len} facts need {n_ent} entities; only {len(ENTITIES)} exist.")
    ents = rng.sample(ENTITIES, n_ent)
    chains = [ents[i * (chain_len + 1) : (i + 1) * (chain_len + 1)] for i in range(n_chains)]
    facts = [(c[j], c[j + 1]) for c in chains for j in range(chain_len)]
    rng.shuffle(facts)
    start_pos = rng.randint(0, chain_len - hops)
    chain = chains[0]
    start, answer = chain[start_pos], chain[start_pos + hops]
    prompt = "F: " + " ".join(f"{s}>{t}" for s, t in facts) + f" Q: {start} {hops} hops? A:"
    info = {"start": start, "path": chain[start_pos : start_pos + hops + 1], "chains": ["".join(c) for c in chains]}
    return prompt, " " + answer, info


def solve(prompt: str) -> tuple[str, int]:
    """(answer, hops) of a multi-hop prompt, recomputed from its text alone.

    Checks that the facts define each pointer at most once, and follows ``hops`` pointers from the
    start. Returns the answer with its leading separator space, as :class:`Example` stores it.
    """
    q = _QUESTION.search(prompt)
    if q is None:
        raise ValueError(f"No question in {prompt!r}")
    facts_text = prompt[: q.start()]
    pairs = _FACT.findall(facts_text)
    graph: dict[str, str] = {}
    for s, t in pairs:
        if s in graph:
            raise ValueError(f"Entity {s!r} has two facts in {prompt!r}")
        graph[s] = t
    node, hops = q.group(1), int(q.group(2))
    seen = [node]
    for _ in range(hops):
        if node not in graph:
            raise ValueError(f"Chain from {q.group(1)!r} ends before {hops} hops in {prompt!r}")
        node = graph[node]
        if node in seen:
            raise ValueError(f"Cycle in {prompt!r}")
        seen.append(node)
    return " " + node, hops


def multihop_examples(hops=HOPS, n_per_hops: int = 50, seed: int = 0, n_chains: int = 2, chain_len: int = 4) -> list[Example]:
    """Evaluation :class:`Example` s, ``n_per_hops`` per hop count (level = hops), seeded."""
    out = []
    for h in hops:
        rng = random.Random(_derive_seed("multihop", h, seed, n_chains, chain_len))
        for i in range(n_per_hops):
            prompt, answer, info = make_question(rng, h, n_chains, chain_len)
            out.append(Example(prompt, answer, level=h, meta={"dataset": "multihop", "seed": seed, "index": i, **info}))
    return out


def multihop_texts(n: int, seed: int = 0, hops=HOPS, n_chains: int = 2, chain_len: int = 4) -> list[str]:
    """``n`` training texts (prompt + answer) with hop counts drawn uniformly from ``hops``, seeded."""
    rng = random.Random(_derive_seed("multihop-train", seed, n_chains, chain_len))
    out = []
    for _ in range(n):
        prompt, answer, _info = make_question(rng, rng.choice(list(hops)), n_chains, chain_len)
        out.append(prompt + answer)
    return out
