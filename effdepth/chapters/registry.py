"""The book's chapters, in order: the single list the runner, the site, the TOC and the Makefile follow.

Each chapter is notebooks/<name>.md (its text and figures), effdepth/chapters/<name>.py (its rules and
findings) and tests/test_chapter_<name>.py; `tests` check `_toc.yml` and the Makefile against this list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    name: str  # notebooks/<name>.md
    title: str
    zoo_only: bool = False  # needs the project's zoo (e.g. trains models), skipped for other models
    pretrained_only: bool = False  # about a pretrained model (its size, its accuracy), skipped for zoo models
    made_by: str | None = None  # what made the page's figures when it is not the run's model
    loads_model: bool = True  # False: the notebook never loads the run's model (no pre-check, no zoo training needed)


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("zoo", "The zoo", zoo_only=True),
    Chapter("model", "The pretrained model and its prompts", pretrained_only=True),
    Chapter("benchmarks", "Fig 1 / App. B: depth and benchmark score", made_by="published numbers of open models (the frozen table, or the live leaderboard when it answers), not a model measured by this book", loads_model=False),
    Chapter("contributions", "§3.1 Residual contributions"),
    Chapter("skipping", "§3.2 Layer skipping and local effects"),
    Chapter("logit_lens", "§3.2 The logit lens"),
    Chapter("complexity", "§3.3 Depth and problem complexity"),
    Chapter("linear_maps", "§3.4 Shallow-to-deep linear maps", zoo_only=False),
    Chapter("objective", "§3.5 Objective or architecture?", zoo_only=True, made_by="the small models this chapter trains itself (its grid of objectives and architectures), not the zoo's default model", loads_model=False),
    Chapter("comparison", "Across depths: the zoo side by side", made_by="the zoo's models of every depth (2, 4 and 8 layers), measured the same way"),
)
