"""Offline arithmetic data: DeepMind `mathematics_dataset` arithmetic modules and a graded generator.

Two sources, both seeded and needing no download:

* **DeepMind Mathematics** (Saxton et al. 2019), the nine ``arithmetic__*`` modules of the
  ``mathematics_dataset`` package, with the generator's own splits: ``train`` (the whole training
  entropy range), ``train-easy`` / ``train-medium`` / ``train-hard`` (its thirds), ``interpolate``
  and ``extrapolate`` (whose module names differ: ``add_or_sub_big``, ``mul_div_multiple_longer`` …).
  The training modules hash-split their numbers so that test questions are not in training, exactly
  as the released data. The package needs a shim on current sympy; :func:`import_mathematics_dataset`
  applies it. With ``entropy=(lo, hi)``, :func:`dm_problems` draws from the same module functions
  with the entropy ranges scaled down (:func:`scaled_module_table`; the §3.5 grid's small problems).

* **Graded sums** (this project's own): ``level`` = number of operations, single-digit operands,
  ``+`` and ``-`` only, e.g. level 3 ``"Q: 5+7-5+3 A:"`` → ``" 10"``. The difficulty is known by
  construction and :func:`solve_graded` checks any question independently. Questions are split by a
  hash of their text into ``train`` and ``test`` (``test`` = 10 % of the question space, never
  produced for training), so a ``test`` question is unseen in training at every level. At level 1
  there are only 200 distinct questions (23 in ``test``), at level 2 4,000.

Training text is ``"Q: {question} A: {answer}"``; evaluation items are :class:`Example` with
``prompt = "Q: {question} A:"`` and ``answer = " {answer}"`` (the answer begins with the separator
space, so ``prompt + answer`` is the training text).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import random
import re
import sys
from collections.abc import Iterator

import numpy as np

from effdepth.data.examples import Example

# ----------------------------------------------------------------------------------------------
# DeepMind mathematics_dataset
# ----------------------------------------------------------------------------------------------

DM_TRAIN_MODULES = (
    "add_or_sub",
    "add_or_sub_in_base",
    "add_sub_multiple",
    "div",
    "mixed",
    "mul",
    "mul_div_multiple",
    "nearest_integer_root",
    "simplify_surd",
)
DM_EXTRAPOLATE_MODULES = (
    "add_or_sub_big",
    "add_sub_multiple_longer",
    "div_big",
    "mixed_longer",
    "mul_big",
    "mul_div_multiple_longer",
)
DM_SPLITS = ("train", "train-easy", "train-medium", "train-hard", "interpolate", "extrapolate")
# The released generator drops questions / answers longer than these (generate_settings.py).
DM_MAX_QUESTION_LENGTH = 160
DM_MAX_ANSWER_LENGTH = 30


def import_mathematics_dataset():
    """Import ``mathematics_dataset.modules.arithmetic`` on a current sympy and return it.

    ``mathematics_dataset`` does ``from sympy.solvers.diophantine import base_solution_linear``;
    since sympy 1.6 that function lives in ``sympy.solvers.diophantine.diophantine``. Re-export it
    from the package before the import. (Note: ``sympy.solvers.diophantine`` as an *attribute* is
    the function ``diophantine``, so the package must be taken from ``sys.modules``.)
    """
    inner = importlib.import_module("sympy.solvers.diophantine.diophantine")
    pkg = sys.modules["sympy.solvers.diophantine"]
    if not hasattr(pkg, "base_solution_linear"):
        pkg.base_solution_linear = inner.base_solution_linear
    from mathematics_dataset.modules import arithmetic

    return arithmetic


def dm_module_names(split: str = "train") -> tuple[str, ...]:
    """The arithmetic module names (without the ``arithmetic__`` prefix) a split offers."""
    _check_split(split)
    return DM_EXTRAPOLATE_MODULES if split == "extrapolate" else DM_TRAIN_MODULES


def _check_split(split: str) -> None:
    if split not in DM_SPLITS:
        raise ValueError(f"Unknown mathematics_dataset split '{split}'. Use one of: {', '.join(DM_SPLITS)}.")


def _entropy_fn(level: int, num_levels: int):
    # Same as mathematics_dataset.generate._make_entropy_fn (not importable: that module defines absl flags).
    lower, upper = level / num_levels, (level + 1) / num_levels

    def modify_entropy(range_):
        length = range_[1] - range_[0]
        return (range_[0] + lower * length, range_[0] + upper * length)

    return modify_entropy


def _dm_module_table(split: str) -> dict:
    arithmetic = import_mathematics_dataset()
    if split == "train":
        return arithmetic.train(_entropy_fn(0, 1))
    if split.startswith("train-"):
        return arithmetic.train(_entropy_fn(("train-easy", "train-medium", "train-hard").index(split), 3))
    if split == "interpolate":
        return arithmetic.test()
    return arithmetic.test_extra()


@contextlib.contextmanager
def _seeded_globals(seed: int):
    """mathematics_dataset draws from the global `random` and `numpy.random`: seed them, then restore."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _derive_seed(*parts) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16)


GENERATOR_ENTROPY = (3.0, 10.0)  # mathematics_dataset: arithmetic _ENTROPY_TRAIN
GENERATOR_ADD_SUB_ENTROPY = (4.0, 16.0)  # _ADD_SUB_ENTROPY_TRAIN
SCALED_SPLITS = ("train", "interpolate", "extrapolate")


def scaled_module_table(split: str, entropy: tuple, add_sub_entropy: tuple) -> dict:
    """The generator's arithmetic module table of ``split`` ('train', 'interpolate', 'extrapolate')
    for scaled entropy ranges, built exactly as ``mathematics_dataset.modules.arithmetic`` builds its
    own from (3, 10) and (4, 16): interpolation at the same relative point of the training range
    (8 of 3–10, 12 of 4–16), extrapolation above it ((10, 12) and (16, 20)) with expressions 1–3
    terms longer than the longest training expression."""
    if split not in SCALED_SPLITS:
        raise ValueError(f"Scaled entropy ranges offer the splits {', '.join(SCALED_SPLITS)}, not '{split}'.")
    ar = import_mathematics_dataset()
    from mathematics_dataset.sample import arithmetic as sample_arithmetic
    from mathematics_dataset.util import composition

    lo, hi = entropy
    alo, ahi = add_sub_entropy
    g_lo, g_hi = GENERATOR_ENTROPY
    ga_lo, ga_hi = GENERATOR_ADD_SUB_ENTROPY
    interp = lo + (hi - lo) * (8 - g_lo) / (g_hi - g_lo)
    a_interp = alo + (ahi - alo) * (12 - ga_lo) / (ga_hi - ga_lo)
    extra = composition.PreSampleArgs(1, 1, hi, hi + (hi - lo) * 2 / 7)
    a_extra = composition.PreSampleArgs(1, 1, ahi, ahi + (ahi - alo) * 4 / 12)
    train_length = sample_arithmetic.length_range_for_entropy(hi)[1]

    def longer():
        return random.randint(train_length + 1, train_length + 3)

    if split == "train":
        return ar._make_modules(entropy=(lo, hi), add_sub_entropy=(alo, ahi))
    if split == "interpolate":
        return ar._make_modules(entropy=(interp, interp), add_sub_entropy=(a_interp, a_interp))
    return {
        "add_or_sub_big": functools.partial(ar.add_or_sub, None, a_extra),
        "mul_big": functools.partial(ar.mul, None, extra),
        "div_big": functools.partial(ar.div, None, extra),
        "add_sub_multiple_longer": lambda: ar.add_sub_multiple(ar._INT, extra, length=longer()),
        "mul_div_multiple_longer": lambda: ar.mul_div_multiple(ar._INT, extra, length=longer()),
        "mixed_longer": lambda: ar.mixed(ar._INT, extra, length=longer()),
    }


def dm_problems(
    module: str,
    split: str = "train",
    n: int = 100,
    seed: int = 0,
    max_chars: int | None = None,
    entropy: tuple | None = None,
    add_sub_entropy: tuple | None = None,
) -> list[tuple[str, str]]:
    """``n`` (question, answer) string pairs from ``arithmetic__<module>`` of ``split``, seeded.

    Questions longer than 160 characters and answers longer than 30 are dropped as the released
    generator does; ``max_chars`` additionally drops pairs whose training text
    ``"Q: {q} A: {a}"`` is longer (for small context windows).

    ``entropy=None``: the released generator's settings. ``entropy=(lo, hi)``: the same module
    functions with the entropy ranges scaled to ``entropy`` / ``add_sub_entropy`` (default: the same
    as ``entropy``; see :func:`scaled_module_table`), splits 'train', 'interpolate', 'extrapolate',
    seeded from (module, split, seed, entropy).
    """
    _check_split(split)
    module = module.removeprefix("arithmetic__")
    if entropy is None:
        table = _dm_module_table(split)
        seed_parts = ("dm", module, split, seed)
    else:
        entropy = tuple(entropy)
        table = scaled_module_table(split, entropy, tuple(add_sub_entropy or entropy))
        seed_parts = ("grid", module, split, seed, entropy)
    if module not in table:
        raise ValueError(f"No module 'arithmetic__{module}' in split '{split}'. It has: {', '.join(sorted(table))}.")
    fn = table[module]
    out: list[tuple[str, str]] = []
    with _seeded_globals(_derive_seed(*seed_parts)):
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise RuntimeError(f"arithmetic__{module}: too few problems fit max_chars={max_chars}.")
            p = fn()
            q, a = str(p.question), str(p.answer)
            if len(q) > DM_MAX_QUESTION_LENGTH or len(a) > DM_MAX_ANSWER_LENGTH:
                continue
            if max_chars is not None and len(format_text(q, a)) > max_chars:
                continue
            out.append((q, a))
    return out


def dm_examples(
    module: str, split: str = "interpolate", n: int = 100, seed: int = 0, max_chars: int | None = None
) -> list[Example]:
    """Evaluation :class:`Example` s from ``arithmetic__<module>`` (level = None: the module sets it)."""
    module = module.removeprefix("arithmetic__")
    pairs = dm_problems(module, split, n, seed, max_chars)
    return [
        Example(
            *format_example(q, a),
            level=None,
            meta={
                "dataset": "mathematics_dataset",
                "module": f"arithmetic__{module}",
                "split": split,
                "seed": seed,
                "index": i,
            },
        )
        for i, (q, a) in enumerate(pairs)
    ]


def dm_mixture(
    split: str = "train", n: int = 100, seed: int = 0, modules=None, max_chars: int | None = None
) -> list[tuple[str, str]]:
    """``n`` pairs drawn evenly (round robin, then shuffled with ``seed``) from several modules."""
    modules = list(modules or dm_module_names(split))
    per = -(-n // len(modules))
    pools = {m: dm_problems(m, split, per, seed, max_chars) for m in modules}
    pairs = [pools[m][i] for i in range(per) for m in modules][:n]
    random.Random(_derive_seed("dm-mix", split, seed)).shuffle(pairs)
    return pairs


# ----------------------------------------------------------------------------------------------
# Text formats
# ----------------------------------------------------------------------------------------------


def format_text(question: str, answer: str) -> str:
    """Training text of one problem: ``"Q: {question} A: {answer}"``."""
    return f"Q: {question} A: {answer}"


def format_example(question: str, answer: str) -> tuple[str, str]:
    """(prompt, answer) with the separator space at the front of the answer."""
    return f"Q: {question} A:", f" {answer}"


# ----------------------------------------------------------------------------------------------
# Graded sums: level = number of operations
# ----------------------------------------------------------------------------------------------

GRADED_LEVELS = (1, 2, 3, 4, 5)
GRADED_SPLITS = ("train", "test")
_TEST_PERCENT = 10


def is_test_question(question: str) -> bool:
    """Whether a graded question belongs to the held-out ``test`` part (10 % of questions by hash)."""
    return int(hashlib.md5(question.encode()).hexdigest(), 16) % 100 < _TEST_PERCENT


def solve_graded(question: str) -> tuple[int, int]:
    """(value, level) of a graded question such as ``"5+7-5+3"``, computed independently.

    Accepts the bare question or the prompt ``"Q: 5+7-5+3 A:"``.
    """
    m = re.fullmatch(r"(?:Q: )?(\d(?:[+-]\d)+)(?: A:)?", question.strip())
    if not m:
        raise ValueError(f"Not a graded question: {question!r}")
    tokens = re.findall(r"[+-]|\d", m.group(1))
    value, level = int(tokens[0]), 0
    for op, num in zip(tokens[1::2], tokens[2::2]):
        value = value + int(num) if op == "+" else value - int(num)
        level += 1
    return value, level


def _graded_question(rng: random.Random, level: int) -> tuple[str, str]:
    nums = [rng.randint(0, 9) for _ in range(level + 1)]
    ops = [rng.choice("+-") for _ in range(level)]
    q = str(nums[0]) + "".join(o + str(x) for o, x in zip(ops, nums[1:]))
    value = nums[0]
    for o, x in zip(ops, nums[1:]):
        value = value + x if o == "+" else value - x
    return q, str(value)


def graded_problems(
    level: int, n: int, split: str = "train", seed: int = 0, unique: bool = False
) -> list[tuple[str, str]]:
    """``n`` (question, answer) pairs of ``level`` operations from ``split`` ('train' or 'test'), seeded.

    Samples are i.i.d. (repeats possible, most of all at level 1) unless ``unique``: then distinct
    questions, fewer than ``n`` when the split has fewer (level 1 'test' has 23).
    """
    if not unique:
        return list(_graded_stream(level, split, seed, n))
    out: dict[str, str] = {}
    misses = 0
    for q, a in _graded_stream(level, split, seed):
        if q in out:
            misses += 1
            if misses > 2000:
                break
            continue
        out[q] = a
        if len(out) >= n:
            break
    return list(out.items())


def _graded_stream(level: int, split: str, seed: int, n: int | None = None) -> Iterator[tuple[str, str]]:
    if level not in GRADED_LEVELS:
        raise ValueError(f"Graded level must be one of {GRADED_LEVELS}, got {level}.")
    if split not in GRADED_SPLITS:
        raise ValueError(f"Graded split must be one of {GRADED_SPLITS}, got '{split}'.")
    rng = random.Random(_derive_seed("graded", level, split, seed))
    want_test = split == "test"
    k = 0
    while n is None or k < n:
        q, a = _graded_question(rng, level)
        if is_test_question(q) == want_test:
            k += 1
            yield q, a


def graded_examples(
    levels=GRADED_LEVELS, n_per_level: int = 50, split: str = "test", seed: int = 0, unique: bool = True
) -> list[Example]:
    """Evaluation :class:`Example` s, ``n_per_level`` distinct questions per level (level = number of operations).

    Level 1 'test' has only 23 distinct questions, so it yields at most 23.
    """
    out = []
    for level in levels:
        for i, (q, a) in enumerate(graded_problems(level, n_per_level, split, seed, unique=unique)):
            out.append(
                Example(
                    *format_example(q, a),
                    level=level,
                    meta={"dataset": "graded-sums", "split": split, "seed": seed, "index": i},
                )
            )
    return out


def graded_texts(n: int, split: str = "train", seed: int = 0, levels=GRADED_LEVELS) -> list[str]:
    """``n`` training texts with levels drawn uniformly from ``levels``, seeded."""
    rng = random.Random(_derive_seed("graded-mix", split, seed))
    streams = {lv: _graded_stream(lv, split, seed) for lv in levels}
    return [format_text(*next(streams[rng.choice(list(levels))])) for _ in range(n)]
