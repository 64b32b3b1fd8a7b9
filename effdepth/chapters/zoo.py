"""The zoo page (notebooks/zoo.md): which zoo models it shows, and its sentences, from the models'
training reports (`effdepth.zoo.book` reads and words them; this module hands them to the page)."""

from __future__ import annotations

import platform

import torch

from effdepth import zoo
from effdepth.chapters import Findings
from effdepth.zoo import book as zb


def model_names(models=None) -> list[str]:
    """The zoo models the page shows: `models` as given, else every model of the zoo."""
    return list(models or zoo.MODELS)


def prepare(names: list[str], train_missing: bool) -> None:
    """Train the models of `names` that are not in the cache yet, when `train_missing`; else the
    page reads whatever the cache holds (a missing model fails where its report is read)."""
    if train_missing:
        zoo.train_all(names, progress=False)


def versions_line() -> str:
    """The software that trained and measured the zoo."""
    import transformers

    return f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}"


def cache_line() -> str:
    """Where the zoo lives and which of its models the book's chapters use."""
    return f"zoo cache: $EFFDEPTH_CACHE/zoo; default model: {zoo.DEFAULT}; linear-map pair: {zoo.SHALLOW} -> {zoo.DEEP}"


def made_by(names: list[str]) -> str:
    """The zoo figures' model slot: every model drawn."""
    return "the zoo: " + ", ".join(names)


def bullets(lines: str) -> str:
    """One Markdown bullet per line of `lines`."""
    return "\n".join(f"- {line}" for line in lines.splitlines())


def findings(names: list[str]) -> Findings:
    """The page's sentences, from the models' reports: training time, the one-hop skill notice, what
    each model learned (one bullet each) and what that means for the rest of the book."""
    return Findings(
        text={
            "training_time_text": zb.training_time_text(names),
            "skill_text": zb.skill_notice(names),
            "learned_text": bullets(zb.learned_summary(names)),
            "reading_text": zb.reading(names),
        }
    )
