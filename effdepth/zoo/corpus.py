"""The zoo's training mixture, held-out windows and evaluation sets, all generated offline from seeds.

Mixture (weights in :class:`DataSpec`): graded sums (``effdepth.data.arithmetic``, 'train' part of
the hash split, levels 1–5 uniform), in-context multi-hop questions (``effdepth.data.multihop``,
1–4 hops uniform) and DeepMind Mathematics arithmetic (all nine ``arithmetic__*`` modules,
``train`` split, only problems whose text fits a window). Each example is one
``<bos> prompt answer <eos>`` unit, packed into windows without splitting (``train.pack``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from effdepth.data import arithmetic as A
from effdepth.data import multihop as M
from effdepth.data.examples import Example
from effdepth.training import _pad, batches, encode_turns, make_batch, stack_batches


@dataclass(frozen=True)
class DataSpec:
    """What a zoo model is trained on (shared by all zoo models, so their batches are identical).

    Mixture weights are per example: graded sums, multi-hop questions, walks (a fact set followed by
    its chains written out in strides of k facts, k drawn from ``walk_hops``: dense k-hop lookups),
    DeepMind arithmetic. A window holds at most one
    fact set (question or walk), first, then sums / DeepMind problems fill it (first fit).
    Curriculum: before the mixture, the model trains on walks alone (one per window of
    ``curriculum_window`` tokens, loss on the walk letters only) until the logged loss is below
    ``curriculum_stop`` or ``curriculum_steps`` batches are used: this gets the single lookup learned
    quickly, which the questions then chain (see ``effdepth.data.multihop``).
    ``fact_loss="answers"``: in the mixture, a fact-set example counts only its answer / walk letters
    in the loss (its facts are random letters: pure noise as targets); sums count every token.
    """

    window: int = 64
    batch_size: int = 32
    w_graded: float = 0.5
    w_multihop: float = 0.25
    w_walks: float = 0.15
    w_dm: float = 0.1
    curriculum_steps: int = (
        1600  # a cap: the curriculum stops once the walk loss is below curriculum_stop (860-920 steps measured)
    )
    curriculum_batch: int = 64
    curriculum_window: int = 40
    curriculum_stop: float = 0.15
    seed: int = 0
    chain_len: int = 4
    n_chains: int = 2
    distractor_len: int = 2
    lookahead: int = 16
    dm_pool: int = 1800  # DeepMind problems generated per part (then drawn with replacement)
    fact_loss: str = "answers"  # loss on fact-set examples: "answers" (walk letters, answers) or "all" tokens
    mh_questions: int = 1  # questions per fact set in multi-hop training texts
    mh_hops: tuple[int, ...] | None = None  # hop counts of training questions (None: 1 … chain_len)
    walk_hops: tuple[int, ...] = (1,)  # strides of the walks in the mixture (the curriculum's are 1)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _dm_stream(split: str, seed: int, max_chars: int, pool: int) -> Iterator[tuple[str, str]]:
    """DeepMind problems drawn (with replacement, seeded) from a pool of ``pool`` generated ones
    (sympy makes each problem cost milliseconds; the pool bounds the data-building time)."""
    problems = A.dm_mixture(split, pool, seed=seed, modules=DM_MODULES, max_chars=max_chars)
    rng = random.Random(hash_seed("dm-draw", split, seed))
    while True:
        yield rng.choice(problems)


# DeepMind arithmetic modules in the zoo's mixture: those whose problems fit a 64-token window in
# both the 'train' and 'interpolate' splits ('nearest_integer_root' and 'simplify_surd' rarely do).
DM_MODULES = ("add_or_sub", "add_or_sub_in_base", "add_sub_multiple", "div", "mixed", "mul", "mul_div_multiple")


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
    dm = (
        _dm_stream(
            "train" if part == "train" else "interpolate",
            seed,
            max_chars,
            spec.dm_pool if part == "train" else min(spec.dm_pool, 270),
        )
        if spec.w_dm > 0
        else None
    )
    sources = ["graded", "multihop", "dm", "walks"]
    weights = [spec.w_graded, spec.w_multihop, spec.w_dm, spec.w_walks]
    while True:
        src = rng.choices(sources, weights)[0]
        if src == "graded":
            yield [A.format_example(*next(graded[rng.choice(A.GRADED_LEVELS)]))]
        elif src == "multihop":
            hops = tuple(spec.mh_hops or range(1, spec.chain_len + 1))
            yield M.make_session(mh_rng, spec.mh_questions, hops, spec.n_chains, spec.chain_len, spec.distractor_len)
        elif src == "walks":
            yield M.make_walks(
                mh_rng, spec.n_chains, spec.chain_len, spec.distractor_len, mh_rng.choice(spec.walk_hops)
            )
        else:
            yield [A.format_example(*next(dm))]


def windows(spec: DataSpec, part: str = "train") -> Iterator[tuple[list[int], list[bool]]]:
    """Packed (ids, answer_mask) windows of the mixture.

    Like ``train.pack`` (no example split, first-fit from a look-ahead buffer), with one more rule:
    a window holds at most one fact set (multi-hop question or walk), and it comes first, so a
    question never sees another example's facts and always starts at position 0 as in evaluation.
    """
    W = spec.window
    facts: list = []
    other: list = []
    stream = example_stream(spec, part)
    while True:
        while len(facts) + len(other) < max(2, spec.lookahead):
            turns = next(stream)
            enc = encode_turns(turns)
            if len(enc[0]) > W:
                continue
            (facts if turns[0][0].startswith("F: ") else other).append(enc)
        ids: list[int] = []
        mask: list[bool] = []
        weight: list[float] = []
        if facts:
            f = facts.pop(0)
            ids, mask = list(f[0]), list(f[1])
            weight = [float(m) for m in mask] if spec.fact_loss == "answers" else [1.0] * len(ids)
        rest = []
        for ex in other:
            if len(ids) + len(ex[0]) <= W:
                ids += ex[0]
                mask += ex[1]
                weight += [1.0] * len(ex[0])
            else:
                rest.append(ex)
        other = rest
        ids, mask = _pad(ids, mask, W)
        if spec.fact_loss == "answers":
            yield ids, mask, weight + [1.0] * (W - len(weight))
        else:
            yield ids, mask


def curriculum_batches(spec: DataSpec, n_batches: int | None = None) -> dict:
    """Stacked curriculum batches: one walk per window of ``curriculum_window`` tokens, loss weight
    on the walk letters (and ``<eos>``) only."""
    rng = random.Random(hash_seed("curriculum", spec.seed))
    out = []
    for _ in range(spec.curriculum_steps if n_batches is None else n_batches):
        wins = []
        for _ in range(spec.curriculum_batch):
            ids, mask = encode_turns(M.make_walks(rng, spec.n_chains, spec.chain_len, spec.distractor_len))
            ids, mask = _pad(ids, mask, spec.curriculum_window)
            wins.append((ids, mask, [float(m) for m in mask]))
        out.append(make_batch(wins))
    return stack_batches(out)


def build_batches(spec: DataSpec, n_batches: int, part: str = "train", progress: bool = False) -> dict:
    """``n_batches`` stacked batches ({'input_ids', 'answer_mask', 'loss_mask'}: [N, B, T])."""
    it = batches(windows(spec, part), spec.batch_size)
    out = [next(it) for _ in tqdm(range(n_batches), desc=f"data ({part})", disable=not progress, mininterval=1.0)]
    return stack_batches(out)


def cached_batches(spec: DataSpec, n_batches: int, cache: Path, part: str = "train", progress: bool = True) -> dict:
    """:func:`build_batches` (or :func:`curriculum_batches` for ``part="curriculum"``), stored under
    ``cache`` (keyed by the spec) and reused by every zoo model.

    A stored file with at least ``n_batches`` batches is sliced; a damaged one is rebuilt.
    """
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{part}-{spec.key()}.pt"
    with _locked(path.with_suffix(".lock")):  # zoo models trained at once in separate processes build it once
        return _cached_batches(spec, n_batches, path, part, progress)


@contextmanager
def _locked(lock: Path):
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached_batches(spec: DataSpec, n_batches: int, path: Path, part: str, progress: bool) -> dict:
    if path.exists():
        try:
            stored = torch.load(path, weights_only=True)
            if stored["input_ids"].shape[0] >= n_batches:
                return {k: (v[:n_batches].long() if k == "input_ids" else v[:n_batches]) for k, v in stored.items()}
        except Exception:  # damaged or partial file: rebuild
            pass
    data = (
        curriculum_batches(spec, n_batches) if part == "curriculum" else build_batches(spec, n_batches, part, progress)
    )
    small = {**data, "input_ids": data["input_ids"].to(torch.uint8)}
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
        "multihop": M.multihop_examples(
            tuple(range(1, spec.chain_len + 1)), n, seed, spec.n_chains, spec.chain_len, spec.distractor_len
        ),
        "dm": _dm_eval(spec, n, seed) if spec.w_dm > 0 else [],
    }


def one_hop_check_set(spec: DataSpec, n: int = 100, seed: int = 4321) -> list[Example]:
    """One-hop questions on fresh fact sets of another seed than :func:`eval_sets`: what training
    checks its skill on (so the reported accuracies stay measured on questions nothing was chosen by)."""
    return M.multihop_examples((1,), n, seed, spec.n_chains, spec.chain_len, spec.distractor_len)


def _dm_eval(spec: DataSpec, n: int, seed: int) -> list[Example]:
    """DeepMind 'interpolate' problems, ``n // 10`` per module of :data:`DM_MODULES`."""
    return [
        e
        for mod in DM_MODULES
        for e in A.dm_examples(mod, "interpolate", max(1, n // 10), seed, max_chars=spec.window - 2)
    ]


def sample_texts(n: int, seed: int = 0, spec: DataSpec | None = None) -> list[str]:
    """``n`` held-out texts of the zoo's mixture (e.g. windows for comparing two zoo models)."""
    spec = spec or DataSpec()
    it = example_stream(DataSpec(**{**asdict(spec), "seed": seed}), "heldout")
    return ["".join(p + a for p, a in next(it)) for _ in range(n)]
