"""The zoo's training mixture, held-out windows and evaluation sets, all generated offline from seeds.

Mixture (weights in :class:`DataSpec`): graded sums (``effdepth.data.arithmetic``, 'train' part of
the hash split, levels 1–5 uniform), in-context multi-hop questions (``effdepth.data.multihop``,
1–4 hops uniform) and DeepMind Mathematics arithmetic (all nine ``arithmetic__*`` modules,
``train`` split, only problems whose text fits a window). Each example is one
``<bos> prompt answer <eos>`` unit, packed into windows without splitting (``train.pack``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..data import arithmetic as A
from ..data import multihop as M
from ..data.examples import Example
from . import train as T


@dataclass(frozen=True)
class DataSpec:
    """What a zoo model is trained on (shared by all zoo models so their data is identical)."""

    window: int = 64
    batch_size: int = 32
    w_graded: float = 0.6  # mixture weights are per example (a multi-hop example is ~5x longer)
    w_multihop: float = 0.3
    w_dm: float = 0.1
    w_walks: float = 0.0  # fact sets followed by their chains written out (dense 1-hop lookups)
    curriculum: int = 0  # the first `curriculum` training examples are walks and multi-hop questions only
    seed: int = 0
    chain_len: int = 4
    n_chains: int = 2
    lookahead: int = 16  # packing look-ahead (train.pack)
    mh_questions: int = 4  # questions per fact set in multi-hop training texts
    mh_hops: tuple[int, ...] | None = None  # hop counts trained on (None: 1 … chain_len)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _dm_stream(split: str, seed: int, max_chars: int, chunk: int = 9) -> Iterator[tuple[str, str]]:
    k = 0
    while True:
        yield from A.dm_mixture(split, chunk, seed=hash_seed(seed, k), max_chars=max_chars)
        k += 1


def hash_seed(*parts) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:12], 16)


def example_stream(spec: DataSpec, part: str = "train") -> Iterator[list[tuple[str, str]]]:
    """An endless seeded stream of examples of the mixture, each a list of (prompt, answer) turns.

    Arithmetic examples have one turn; multi-hop examples have ``spec.mh_questions`` (one fact set,
    several questions; see ``multihop.make_session``).

    part: 'train' (training data) or 'heldout' (graded 'test' questions, fresh multi-hop questions
    from another seed, DeepMind 'interpolate' problems).
    """
    if part not in ("train", "heldout"):
        raise ValueError(f"part must be 'train' or 'heldout', got '{part}'.")
    seed = spec.seed if part == "train" else hash_seed("heldout", spec.seed)
    rng = random.Random(hash_seed("mixture", part, seed))
    graded = {lv: A._graded_stream(lv, "train" if part == "train" else "test", seed) for lv in A.GRADED_LEVELS}
    mh_rng = random.Random(hash_seed("multihop", part, seed))
    max_chars = spec.window - 2  # <bos> and <eos>
    dm = _dm_stream("train" if part == "train" else "interpolate", seed, max_chars) if spec.w_dm > 0 else None
    sources = ["graded", "multihop", "dm", "walks"]
    weights = [spec.w_graded, spec.w_multihop, spec.w_dm, spec.w_walks]
    k = 0
    while True:
        k += 1
        if part == "train" and k <= spec.curriculum:
            src = rng.choices(["multihop", "walks"], [1, 1])[0]
        else:
            src = rng.choices(sources, weights)[0]
        if src == "graded":
            yield [A.format_example(*next(graded[rng.choice(A.GRADED_LEVELS)]))]
        elif src == "multihop":
            hops = tuple(spec.mh_hops or range(1, spec.chain_len + 1))
            yield M.make_session(mh_rng, spec.mh_questions, hops, spec.n_chains, spec.chain_len)
        elif src == "walks":
            yield M.make_walks(mh_rng, spec.n_chains, spec.chain_len)
        else:
            yield [A.format_example(*next(dm))]


def windows(spec: DataSpec, part: str = "train") -> Iterator[tuple[list[int], list[bool]]]:
    """Packed (ids, answer_mask) windows of the mixture.

    Like ``train.pack`` (no example split, first-fit from a look-ahead buffer), with one more rule:
    a window holds at most one fact set (multi-hop question or walk), and it comes first, so a
    question never sees another example's facts and always starts at position 0 as in evaluation.
    """
    facts: list = []
    other: list = []
    stream = example_stream(spec, part)
    W = spec.window
    while True:
        while len(facts) + len(other) < max(2, spec.lookahead):
            turns = next(stream)
            enc = T.encode_turns(turns)
            if len(enc[0]) > W:
                continue
            (facts if turns[0][0].startswith("F: ") else other).append(enc)
        ids: list[int] = []
        mask: list[bool] = []
        if facts:
            f = facts.pop(0)
            ids, mask = list(f[0]), list(f[1])
        rest = []
        for ex in other:
            if len(ids) + len(ex[0]) <= W:
                ids += ex[0]
                mask += ex[1]
            else:
                rest.append(ex)
        other = rest
        yield T._pad(ids, mask, W)


def build_batches(spec: DataSpec, n_batches: int, part: str = "train", progress: bool = False) -> dict:
    """``n_batches`` stacked batches ({'input_ids', 'answer_mask', 'loss_mask'}: [N, B, T])."""
    from tqdm.auto import tqdm

    it = T.batches(windows(spec, part), spec.batch_size)
    out = [next(it) for _ in tqdm(range(n_batches), desc=f"data ({part})", disable=not progress, mininterval=1.0)]
    return T.stack_batches(out)


def cached_batches(spec: DataSpec, n_batches: int, cache: Path, part: str = "train", progress: bool = True) -> dict:
    """:func:`build_batches`, stored under ``cache`` (keyed by the spec) and reused by every zoo model.

    A stored file with at least ``n_batches`` batches is sliced; a damaged one is rebuilt.
    """
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{part}-{spec.key()}.pt"
    if path.exists():
        try:
            stored = torch.load(path, weights_only=True)
            if stored["input_ids"].shape[0] >= n_batches:
                return {k: (v[:n_batches].long() if k == "input_ids" else v[:n_batches]) for k, v in stored.items()}
        except Exception:  # damaged or partial file: rebuild
            pass
    data = build_batches(spec, n_batches, part, progress)
    small = {"input_ids": data["input_ids"].to(torch.uint8), "answer_mask": data["answer_mask"], "loss_mask": data["loss_mask"]}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(small, tmp)
    os.replace(tmp, path)
    return data


def eval_sets(spec: DataSpec, n: int = 100, seed: int = 1234) -> dict[str, list[Example]]:
    """Held-out evaluation sets: graded sums per level ('test' questions, never trained on),
    multi-hop per hop count (fresh seed), and DeepMind 'interpolate' arithmetic (n/10 per module,
    only problems that fit a window)."""
    return {
        "arithmetic": A.graded_examples(A.GRADED_LEVELS, n, "test", seed),
        "arithmetic_train_split": A.graded_examples(A.GRADED_LEVELS, n, "train", seed),
        "multihop": M.multihop_examples(tuple(range(1, spec.chain_len + 1)), n, seed, spec.n_chains, spec.chain_len),
        "dm": _dm_eval(spec, n, seed) if spec.w_dm > 0 else [],
    }


def _dm_eval(spec: DataSpec, n: int, seed: int) -> list[Example]:
    """DeepMind 'interpolate' problems per module; a module none of whose problems fit the window is left out."""
    out = []
    for mod in A.DM_TRAIN_MODULES:
        try:
            out += A.dm_examples(mod, "interpolate", max(1, n // 10), seed, max_chars=spec.window - 2)
        except RuntimeError:
            continue
    return out


def sample_texts(n: int, seed: int = 0, spec: DataSpec | None = None) -> list[str]:
    """``n`` held-out texts of the zoo's mixture (e.g. windows for comparing two zoo models)."""
    spec = spec or DataSpec()
    it = example_stream(DataSpec(**{**asdict(spec), "seed": seed}), "heldout")
    return ["".join(p + a for p, a in next(it)) for _ in range(n)]
