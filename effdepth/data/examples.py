"""The unit every dataset yields: a prompt, the answer the model should continue with, and labels."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One teacher-forced example.

    prompt: the text the model reads; answer: the continuation that is scored (starts with the
    separator it needs, e.g. " 28"); level: the difficulty label the generator or dataset gives
    (hops for multi-hop questions, MATH level, number of operations …); meta: provenance (dataset,
    split, index in the source) so a sample can be reproduced.
    """

    prompt: str
    answer: str
    level: int | None = None
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def text(self) -> str:
        return self.prompt + self.answer
