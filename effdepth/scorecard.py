"""The book's scorecard: every claim of the paper, on every model of the book, with its verdict.

Each row reads a chapter's recorded verdict card (`effdepth.chapters.record`: the rule, n, the effect and
its interval, the control's value, one of the five verdict states) from the executed notebook's glued
values; a claim the book could not test says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np

from effdepth.chapters.registry import CHAPTERS
from effdepth.rundata import md
from effdepth.spec import ModelSpec
from effdepth.verdicts import ALPHA, AS_PAPER, CONTROL_TOO, INCONCLUSIVE, NOT_TESTABLE, STATES, UNLIKE


def glued_values(nb) -> dict[str, str]:
    """{name: value} of every `myst_nb.glue`d text in an executed notebook (a verdict key or number
    as its plain text, quotes stripped; a sentence as its Markdown)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            data = o.get("data", {})
            for mime in ("text/markdown", "text/plain"):
                value = data.get(f"application/papermill.record/{mime}", data.get(mime) if name else None)
                if name and value is not None:
                    value = "".join(value) if isinstance(value, list) else str(value)
                    out[name] = value.strip("'\"") if mime == "text/plain" else value
                    break
    return out


# The paper's claims as the scorecard lists them: (chapter, glued verdict key, claim, the figure label
# of the chapter's notebook that shows it, the paper's own finding). A chapter records each claim's
# verdict with `chapters.record`: the glued key holds one of the five states of `effdepth.verdicts`
# in words, and `<key>_card` the JSON the table's columns come from (model, n, effect, interval, control).
CLAIMS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "benchmarks",
        "depth",
        "Deeper models score better, beyond width (Fig 1, App. B).",
        "fig-benchmarks-depth-score",
        "132 leaderboard base models: depth significant at p < 0.0001 in score ~ layers + d_model + d_ff",
    ),
    (
        "contributions",
        "paper_shape",
        "Second-half layers write much less into the residual: a steady first half, then a drop around the middle (§3.1, Fig 2a).",
        "fig-contributions-rel",
        "Llama 3.1 70B: about 0.15–0.2 per layer in the first half, below 0.05 after the middle",
    ),
    (
        "contributions",
        "cos_turn",
        "The writes turn from erasing to strengthening the residual where the contribution drops (§3.1, Fig 2b).",
        "fig-contributions-cos",
        "Llama 3.1 70B: negative layer cosines in the first half, positive after the middle",
    ),
    (
        "skipping",
        "current_paper_pattern",
        "Skipping a second-half layer barely changes what later layers compute for the current token (§3.2, Fig 3a).",
        "fig-skipping-current",
        "Llama 3.1 70B: first-half layers change the next layers strongly, second-half layers barely",
    ),
    (
        "skipping",
        "future_paper_pattern",
        "… nor what they compute for future tokens (§3.2, Fig 3b).",
        "fig-skipping-future",
        "Llama 3.1 70B: second-half layers barely change future tokens' computation",
    ),
    (
        "skipping",
        "output_paper_pattern",
        "Second-half layers still change the current token's output, but barely future tokens' predictions (§3.2, Fig 17).",
        "fig-skipping-output-current",
        "Llama 3.1 70B: late layers refine the current prediction rather than feed future tokens",
    ),
    (
        "logit_lens",
        "settles_late",
        "The logit lens: the prediction is settled only in the second half of the layers (§3.2, Fig 4).",
        "fig-lens-curves",
        "Llama 3.1 70B: KL stays high to about layer 40 of 80, then falls",
    ),
    (
        "logit_lens",
        "knees_agree",
        "… at the depth where the residual contributions drop (§3.2).",
        "fig-lens-curves",
        "Llama 3.1 70B: the lens settles where the contributions drop",
    ),
    (
        "complexity",
        "paper_pattern",
        "Harder problems (more operations, more hops) do not use deeper layers (§3.3, Figs 6, 7).",
        "fig-complexity-depth",
        "Llama 3.1 70B: depth score flat across MATH levels 1–5 and 2/3/4-hop questions",
    ),
    (
        "linear_maps",
        "lm_paper_pattern",
        "A deeper model stretches the same computation: shallow-to-deep linear maps line up at equal relative depth (§3.4, Fig 8).",
        "fig-maps-panels",
        "Qwen2.5 1.5B → 14B: a diagonal at equal relative depth",
    ),
    (
        "objective",
        "ob_any_paper",
        "Training objective and architecture change how much depth is used (§3.5, Fig 9).",
        "fig-objective-erasure",
        "244M models, 100k steps: answer-only loss and MoEUT use more of their depth",
    ),
    (
        "comparison",
        "cmp_kl_stretching",
        "Across depths: deeper models stretch the logit-lens curve to the same relative depth (beyond the paper).",
        "fig-comparison-lens",
        "(not in the paper: this book's extension)",
    ),
)


_SECTIONS = (
    (AS_PAPER, "What reproduced"),
    (UNLIKE, "What did not reproduce"),
    (CONTROL_TOO, "What the untrained architecture shows too"),
    (INCONCLUSIVE, "What this build's sample cannot decide"),
    (NOT_TESTABLE, "What could not be tested here"),
)


def _cell(text) -> str:
    """A table cell from a run's text: `rundata.md` (plain text, one line), and no column break."""
    return md(text).replace("\\|", "/")


def _num(x, nd: int = 2) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return f"{x:.{nd}f}" if np.isfinite(x) else "—"


def _state_of(words: str) -> str:
    """The verdict state a glued verdict's words begin with (`effdepth.verdicts.STATES`)."""
    return next((st for st in STATES if str(words).startswith(st)), str(words))


def write_scorecard(chapter_dir: Path, pages: dict[str, list[str]] | None = None) -> None:
    """book/chapters/scorecard.md: one row per claim of the paper and model of this build that ran its
    chapter: the paper's finding, the model, n, the effect with its interval, the control's value, the
    verdict (one of the five states), and a link to the figure; then the claims grouped by verdict.
    Written from the executed notebooks in `chapter_dir`, so it can only say what this build ran."""

    pages = pages or {}
    lines = [
        "| the paper's claim | the paper's finding | model | n | effect [interval] | control | this build | where |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    grouped: dict[str, list[str]] = {st: [] for st, _ in _SECTIONS}
    for chapter, key, claim, label, paper in CLAIMS:
        title = next((c.title for c in CHAPTERS if c.name == chapter), chapter)
        models = pages.get(chapter) or [None]
        for i, m in enumerate(models):
            page = chapter if i == 0 else f"{chapter}--{ModelSpec.parse(m).slug}"
            path = chapter_dir / f"{page}.ipynb"
            nb = nbformat.read(path, as_version=4) if path.exists() else None
            glued = glued_values(nb) if nb is not None else {}
            where = f"{{doc}}`{title.split(' ')[0] if title.startswith('§') else title} </book/chapters/{page}>`"
            loads = next((c.loads_model for c in CHAPTERS if c.name == chapter), True)
            who = (
                (_cell(ModelSpec.parse(m).short_name) if loads else "its own (see the page)") if m else "—"
            )  # Fig 1 and §3.5 run no model of the book
            said, found = (claim, paper) if i == 0 else ("″", "″")  # the same claim on the book's next model
            if key not in glued:
                lines.append(f"| {said} | {found} | {who} | — | — | — | not run in this build | {where} |")
                continue
            try:
                card = json.loads(glued.get(f"{key}_card", "{}"))
            except ValueError:
                card = {}
            words = card.get("words") or glued[key]
            if nb is not None and any(
                f":name: {label}" in cell.source for cell in nb.cells if cell.cell_type == "markdown"
            ):
                where += f", {{numref}}`{label}`"
            effect = _num(card.get("effect"))
            if effect != "—" and _num(card.get("lo")) != "—":
                effect += f" [{_num(card.get('lo'))}, {_num(card.get('hi'))}]"
            if card.get("unit"):
                effect += f" ({_cell(card['unit'])})"
            control = _num(card.get("control"))
            if card.get("reason") and card.get("state") != NOT_TESTABLE:
                control += " (not compared: its statistic cannot fail)"
            state = card.get("state") or _state_of(words)
            n = card.get("n", "—")
            n = n if isinstance(n, int) else "—"
            shown = f"**{_cell(words)}**" if state == AS_PAPER else _cell(words)
            lines.append(f"| {said} | {found} | {who} | {n} | {effect} | {control} | {shown} | {where} |")
            if state in grouped:
                grouped[state].append(f"- {claim} ({who}{', n = ' + str(n) if n != '—' else ''}): {_cell(words)}.")
    lines += [
        "",
        "The effect is the rule's statistic (its definition and the thresholds are on the {doc}`methods page </book/methods>`), "
        f"with its {100 - 200 * ALPHA:.0f} % interval; the control is the random-init controls' mean of the same statistic.",
    ]
    for st, head in _SECTIONS:
        if grouped[st]:
            lines += ["", f"**{head}**", "", *grouped[st]]
    (chapter_dir / "scorecard.md").write_text("\n".join(lines) + "\n")
