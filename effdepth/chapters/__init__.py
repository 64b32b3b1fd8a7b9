"""Each chapter's reasoning: measured results (trained model AND its random-init controls) -> Findings.

A chapter module exposes `findings(result, controls, **params) -> Findings`; the notebook measures,
draws, and calls `glue_all(findings)`, and its Markdown cites the glued numbers and sentences
(`{glue:md}` / `{glue:text}`); no sentence is built in a notebook cell. The rules are pure functions
of the results, unit-tested on synthetic results in tests/rules/test_chapter_<name>.py, and stated in
book/methods/<chapter>-rules.md.

Every headline verdict is one of the five states of `effdepth.verdicts` (as in the paper; unlike the
paper; the untrained architecture shows it too; inconclusive at n = …; not testable here), decided by
`verdicts.decide` / `verdicts.decide_equivalence` from a stated `verdicts.Rule`, and recorded with
`record` so the scorecard can show the model, n, the effect with its interval and the control's value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from effdepth.spec import ModelSpec
from effdepth.stats import prediction_k
from effdepth.verdicts import AS_PAPER, CONTROL_TOO, UNLIKE, Rule, Verdict
from effdepth.verdicts import INCONCLUSIVE as INCONCLUSIVE  # re-exported for the chapter modules
from effdepth.verdicts import NOT_TESTABLE as NOT_TESTABLE

# The five verdict states (effdepth.verdicts), under the names the chapter modules use.
PAPER = AS_PAPER
NOT_PAPER = UNLIKE
SAME_AS_CONTROL = CONTROL_TOO


@dataclass
class Findings:
    """What a chapter concludes.

    numbers: name -> number (floats/ints, NaN where undefined); verdicts: short key -> verdict key
    (e.g. "paper_shape": "yes" | "no" | "not distinguishable from the control"); text: name ->
    one Markdown sentence (or short paragraph) built from the numbers and verdicts.
    """

    numbers: dict = field(default_factory=dict)
    verdicts: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)

    def merge(self, other: Findings, prefix: str = "") -> Findings:
        """A new Findings with `other`'s entries added (names prefixed by `prefix`)."""
        out = Findings(dict(self.numbers), dict(self.verdicts), dict(self.text))
        for mine, theirs in ((out.numbers, other.numbers), (out.verdicts, other.verdicts), (out.text, other.text)):
            for k, v in theirs.items():
                name = prefix + k
                if name in mine:
                    raise ValueError(f"Findings.merge: '{name}' is defined twice; pass a prefix.")
                mine[name] = v
        return out

    def as_markdown(self) -> str:
        """All sentences, one paragraph each (for reports and debugging)."""
        return "\n\n".join(f"**{k}**: {v}" for k, v in self.text.items())


def record(findings: Findings, key: str, verdict: Verdict, rule: Rule, unit: str = "") -> None:
    """Put a rule's verdict into `findings`: `verdicts[key]` = its words (e.g. "inconclusive at n = 3
    (would need about n = 12)"), numbers `<key>_n`, `_effect`, `_lo`, `_hi`, `_control`, and
    `text[<key>_card]`, the JSON the scorecard reads (rule, statistic, paper's finding, verdict)."""
    findings.verdicts[key] = verdict.words()
    findings.verdicts[f"{key}_state"] = verdict.state
    for name in ("n", "effect", "lo", "hi", "control"):
        findings.numbers[f"{key}_{name}"] = getattr(verdict, name)
    card = {
        **verdict.as_dict(),
        "words": verdict.words(),
        "statistic": rule.statistic,
        "paper": rule.paper,
        "effect_that_matters": rule.effect,
        "unit": unit,
    }
    findings.text[f"{key}_card"] = json.dumps(card, allow_nan=True, default=float)


def paper_verdict(trained_shows: bool, differs: bool) -> str:
    """ "yes" when the trained model shows the paper's pattern and differs from the control in the
    paper's direction; "not distinguishable from the control" when it shows the pattern but the
    control is as extreme; "no" when it does not show the pattern."""
    if not trained_shows:
        return NOT_PAPER
    return PAPER if differs else SAME_AS_CONTROL


def control_k(n_controls: int, k: float | None = None) -> float:
    """How many spreads beyond the controls' mean a trained value must lie (`stats.control_bound`):
    `k` when given; else, with several control seeds, the 97.5 % prediction bound for one more seed
    (`stats.prediction_k`, 4.97 for 3 seeds); with one control (spread = its standard error over
    prompts), 2."""

    if k is not None:
        return float(k)
    return prediction_k(n_controls) if n_controls > 1 else 2.0


def run_text(lm, prompts, dataset: str, seed: int, control_seeds=(), extra: str = "") -> str:
    """The "This run:" sentence every chapter opens with: model, shape, prompts, data, seed, controls."""

    seeds = ", ".join(str(s) for s in control_seeds)
    controls = (
        f"; controls: the same architecture with random initialisation (seeds {seeds}), same prompts" if seeds else ""
    )
    example = prompts[0][:120] if prompts else ""
    return (
        f"This run: **{ModelSpec.parse(lm.spec).short_name}** ({lm.adapter.family} family, {lm.n_layers} layers, d={lm.d_model}), "
        f"{len(prompts)} prompts from the `{dataset}` distribution, seed {seed}{controls}. {extra + ' ' if extra else ''}"
        f"Example prompt: `{example!r}`"
    )


def glue_all(findings: Findings, prefix: str = "", display: bool = False) -> list[str]:
    """`myst_nb.glue` every number (as the plain value, for `{glue:text}`) and every sentence (as
    Markdown, for `{glue:md}`) and verdict key (as text) of `findings`; returns the glued names.

    Names are `prefix + name`; numbers, verdicts and sentences share one namespace, so a name used
    twice raises ValueError.
    """
    from IPython.display import Markdown
    from myst_nb import glue

    names: list[str] = []
    seen: set[str] = set()
    entries = [(k, v) for k, v in findings.numbers.items()]
    entries += [(k, str(v)) for k, v in findings.verdicts.items()]
    entries += [(k, Markdown(v)) for k, v in findings.text.items()]
    for k, v in entries:
        name = prefix + k
        if name in seen:
            raise ValueError(f"glue_all: '{name}' is both a number/verdict/sentence name; rename one.")
        seen.add(name)
        if hasattr(v, "item") and not isinstance(v, Markdown):
            v = v.item()
        glue(name, v, display=display)
        names.append(name)
    return names
