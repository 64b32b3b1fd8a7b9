"""The book's chapters, in order: the single list the runner, the site, the TOC and the Makefile follow.

Each chapter is notebooks/<name>.md (its text and figures), effdepth/chapters/<name>.py (its rules and
findings) and tests/rules/test_chapter_<name>.py; `tests` check `_toc.yml` and the Makefile against this list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book and every place it lives.

    notebooks/<name>.md is its text and figures; `findings` its rules and verdicts (a module of
    `effdepth.chapters`, tested in tests/rules/test_chapter_<name>.py); `figures` the module that draws
    them; `curves` the function of `effdepth.curves` that extracts the key curves a book of several
    models overlays; `measures` the measurement functions it runs; `part` the TOC part it is listed in.
    """

    name: str  # notebooks/<name>.md
    title: str
    part: str = "paper"  # the part of _toc.yml: "setting", "paper" or "beyond"
    findings: str | None = None  # module of effdepth.chapters holding its rules (None: it states no verdict)
    figures: str | None = None  # module of effdepth.plots drawing its figures
    curves: str | None = None  # function of effdepth.curves its notebook saves (None: no curves to overlay)
    measures: tuple[str, ...] = ()  # the measurement functions of effdepth it runs
    zoo_only: bool = False  # needs the project's zoo (e.g. trains models), skipped for other models
    pretrained_only: bool = False  # about a pretrained model (its size, its accuracy), skipped for zoo models
    made_by: str | None = None  # what made the page's figures when it is not the run's model
    loads_model: bool = True  # False: the notebook never loads the run's model (no pre-check, no zoo training needed)

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.name}.md"

    @property
    def page(self) -> str:
        """The page in _toc.yml (the executed notebook copied into book/chapters/)."""
        return f"book/chapters/{self.name}"


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("zoo", "The zoo", part="setting", zoo_only=True),
    Chapter(
        "model",
        "The pretrained model and its prompts",
        part="setting",
        findings="model",
        curves="accuracy",
        pretrained_only=True,
    ),
    Chapter(
        "benchmarks",
        "Fig 1 / App. B: depth and benchmark score",
        findings="benchmarks",
        figures="benchmarks",
        made_by="published numbers of open models (the frozen table, or the live leaderboard when it answers), not a model measured by this book",
        loads_model=False,
    ),
    Chapter(
        "contributions",
        "§3.1 Residual contributions",
        findings="contributions",
        figures="contributions",
        curves="contributions",
        measures=("contributions",),
    ),
    Chapter(
        "skipping",
        "§3.2 Layer skipping and local effects",
        findings="skipping",
        figures="skipping",
        curves="skipping",
        measures=("skip_effects", "local_effects"),
    ),
    Chapter(
        "logit_lens",
        "§3.2 The logit lens",
        findings="logit_lens",
        figures="logit_lens",
        curves="logit_lens",
        measures=("logit_lens",),
    ),
    Chapter(
        "complexity",
        "§3.3 Depth and problem complexity",
        findings="complexity",
        figures="complexity",
        curves="complexity",
        measures=("depth_score", "residual_erasure", "integrated_gradients"),
    ),
    Chapter(
        "linear_maps",
        "§3.4 Shallow-to-deep linear maps",
        findings="linear_maps",
        figures="linear_maps",
        curves="linear_maps",
        measures=("linear_maps",),
    ),
    Chapter(
        "objective",
        "§3.5 Objective or architecture?",
        findings="objective",
        figures="objective",
        measures=("residual_erasure",),
        zoo_only=True,
        made_by="the small models this chapter trains itself (its grid of objectives and architectures), not the zoo's default model",
        loads_model=False,
    ),
    Chapter(
        "comparison",
        "Across depths: the zoo side by side",
        part="beyond",
        findings="comparison",
        figures="comparison",
        measures=("contributions", "skip_effects", "logit_lens"),
        made_by="the zoo's models of every depth (2, 4 and 8 layers), measured the same way",
    ),
)

# `make book`'s jobs, longest first: each job is one process that runs its chapters (joined by +) one
# after another. "zoo": on the zoo's default model once the zoo is trained; "free": chapters that need no
# zoo model (they start at once); "pretrained": the pretrained model's chapters (SmolLM2). The Makefile's
# ZOO_CHAPTERS, FREE_CHAPTERS and SMOLLM_CHAPTERS hold the same lists (tests/unit/test_registry.py checks it).
BOOK_JOBS: dict[str, tuple[str, ...]] = {
    "zoo": ("linear_maps", "complexity+skipping+logit_lens+contributions+comparison+zoo"),
    "free": ("objective", "benchmarks"),
    "pretrained": ("skipping", "complexity", "logit_lens", "contributions+model"),
}


def by_name(name: str) -> Chapter:
    """The chapter called `name` (ValueError naming the chapters when there is none)."""
    for c in CHAPTERS:
        if c.name == name:
            return c
    raise ValueError(f"no chapter '{name}'; the chapters are: {', '.join(c.name for c in CHAPTERS)}")


def job_chapters(kind: str) -> list[str]:
    """The chapters `make book` runs for `kind` ("zoo", "free", "pretrained"), in job order."""
    return [c for job in BOOK_JOBS[kind] for c in job.split("+")]
