"""Data for the measurements: the paper's real datasets (`real`) and offline generators with known
difficulty (`arithmetic`, `multihop`). `load_prompts` is what a notebook calls."""

from __future__ import annotations

import os
import random

from effdepth.data.arithmetic import graded_examples
from effdepth.data.examples import Example
from effdepth.data.multihop import multihop_examples
from effdepth.data.natural import SETS
from effdepth.data.real import gsm8k
from effdepth.data.rows import DataError, DatasetNotAvailable  # noqa: F401
from effdepth.spec import ModelSpec

DATASETS = ("auto", "zoo", "gsm8k", "word_problems", "kinship", "arithmetic")  # the last three: data/natural.py


def is_offline_model(model_spec: str) -> bool:
    """True for the project's own models (zoo, tiny test models): they read the zoo's text distribution.

    A local folder counts when it carries the project's marker (`report.json` from the zoo,
    `effdepth.json` from `testing.save_tiny`).
    """
    base = ModelSpec.parse(
        os.path.expanduser(str(model_spec))
    ).base  # a random-init model reads the data of the model it copies
    if base.is_zoo or base.text.startswith("tiny:"):
        return True
    return any(os.path.exists(os.path.join(base.text, f)) for f in ("report.json", "effdepth.json"))


def zoo_examples(n: int, seed: int = 0) -> list[Example]:
    """Half graded arithmetic, half multi-hop questions from the zoo's own test distribution."""
    arith = graded_examples(n_per_level=n, split="test", seed=seed)
    hops = multihop_examples(n_per_hops=n, seed=seed)
    rng = random.Random(seed)
    rng.shuffle(arith)
    rng.shuffle(hops)
    mixed = [x for pair in zip(arith, hops) for x in pair]
    return mixed[:n]


# What 'auto' falls back to when a real data set is not available here: the generated English set
# of the same kind (data/natural.py), named in every example's meta['note'] (see `data_note`).
FALLBACK = {"gsm8k": ("word_problems", "GSM8K", "the project's generated GSM8K-format word problems")}


def load_examples(dataset: str = "auto", n: int = 20, seed: int = 0, model_spec: str = "") -> list[Example]:
    """`n` examples of `dataset`.

    'auto' is the zoo's distribution for the project's own models, and GSM8K for any other model;
    when GSM8K is not available here (offline, not in the datasets cache, no local file) 'auto' falls
    back to the generated GSM8K-format word problems and says so in each example's meta['note']. An
    explicitly named data set never falls back: it raises DatasetNotAvailable.
    """
    if dataset == "auto":
        if is_offline_model(model_spec):
            return zoo_examples(n, seed)
        try:
            return load_examples("gsm8k", n, seed, model_spec)
        except DatasetNotAvailable as err:
            name, label, what = FALLBACK["gsm8k"]
            note = f"The prompts are {what} (`{name}`) in place of {label}: {err}"
            exs = load_examples(name, n, seed, model_spec)
            return [Example(e.prompt, e.answer, e.level, {**e.meta, "note": note}) for e in exs]
    if dataset == "zoo":
        return zoo_examples(n, seed)
    if dataset == "gsm8k":
        return gsm8k(n=n, seed=seed)
    if dataset in SETS:  # generated English sets, levels interleaved so any n covers every level
        exs = SETS[dataset][2](n_per_level=n, seed=seed)
        by = {}
        for ex in exs:
            by.setdefault(ex.level, []).append(ex)
        return [ex for group in zip(*by.values()) for ex in group][:n]
    raise ValueError(f"Unknown dataset '{dataset}'. Choose one of: {', '.join(DATASETS)}.")


def data_note(examples: list[Example]) -> str:
    """The sentence a chapter shows about where its examples came from: the substitution note of an
    'auto' fallback, and the path and SHA-256 of a local data file; '' when there is nothing to say."""
    meta = examples[0].meta if examples else {}
    parts = [meta["note"]] if meta.get("note") else []
    if meta.get("file"):
        parts.append(
            f"Data file: `{os.path.basename(meta['file'])}` (SHA-256 {meta['sha256'][:16]}…, recorded with the results)."
        )
    return " ".join(parts)


def load_prompts(dataset: str = "auto", n: int = 20, seed: int = 0, model_spec: str = "") -> list[str]:
    """Full teacher-forced texts (prompt + answer) of `load_examples`."""
    return [ex.text for ex in load_examples(dataset, n, seed, model_spec)]
