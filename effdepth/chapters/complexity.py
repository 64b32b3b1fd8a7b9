"""§3.3 reasoning: from depth-score results (trained model AND random-init controls) to findings.

Input: {dataset name: `DepthScore`} of the trained model and {dataset name: [DepthScore, …]} of its
random-init controls (one per control seed, the same examples), and each set's chance rate per level.
Output: a `Findings` object.

The paper's claim (Csordás et al. §3.3, Fig 7): the depth score is **flat** across difficulty (MATH
levels 1–5, 2/3/4-hop MQuAKE): harder problems do not use deeper layers. The rules (the methods
page states them, with their simulated error rates):

- **Testable levels**: a level counts only where the model answers above chance (one-sided exact
  binomial test of its teacher-forced accuracy against the level's chance rate, p < 0.05; the chance
  rate is guessing without working the problem out, `effdepth.data.natural.chance`). A set with fewer
  than two such levels is "not testable here": a model that does not compute the answers says
  nothing about how answering uses depth.
- **Flat** (`FLAT`): on the testable levels, the OLS slope of the per-example depth score (layers)
  on the level, tested for equivalence (TOST at α) within ±margin, margin = `DEPTH_SHIFT` (10 %) of
  the depth (L − 1 layers) across the span of the testable levels: "harder problems use 10 % more
  depth" is the effect that would matter. As in the paper when the (1 − 2α) interval lies inside
  ±margin; unlike the paper when the one-sided bound nearest 0 lies beyond it (rising or falling by
  more than the margin, Bonferroni-corrected over the chapter's scores); else inconclusive.
  The skip effects E[s, l] are clipped to [0, 1] (the paper's colour scale).
- The chapter: as in the paper when every tested score is; unlike when any is; not testable when
  none is testable; else inconclusive.

Numbers beside the paper's max-aggregated score per level (its percentile-bootstrap interval is
known to under-cover): the mean of the per-example scores with its Student-t 95 % interval.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from effdepth import stats, verdicts
from effdepth.accuracy import at_chance
from effdepth.chapters import INCONCLUSIVE, NOT_PAPER, NOT_TESTABLE, PAPER, Findings, record
from effdepth.data import is_offline_model, load_prompts
from effdepth.data.arithmetic import graded_examples
from effdepth.data.multihop import multihop_examples
from effdepth.data.natural import chance, kinship_questions, word_problems
from effdepth.data.real import math_problems, mquake
from effdepth.errors import DatasetNotAvailable
from effdepth.spec import ModelSpec

IG_MAX_GAP = 0.05  # integrated gradients' attribution shares are read only below this completeness gap
DEPTH_SHIFT = 0.1  # the effect that would matter: harder problems use 10 % more of the depth
MARGIN = DEPTH_SHIFT  # (name kept for callers)
SCORES = {"layer": "layer-effect", "output": "logit-effect"}
FLAT = verdicts.Rule(
    name="complexity.flat",
    statistic="OLS slope of the per-example depth score (layers) on the level, levels the model answers above chance",
    direction=+1,
    threshold=0.0,
    margin=float("nan"),  # set per set: DEPTH_SHIFT × (L − 1) / span of the tested levels
    effect="harder problems using 10 % more of the depth across the tested levels",
    paper="Llama 3.1 70B (Fig 7): the depth score is flat across MATH levels 1–5 and across 2-, 3- and 4-hop questions",
)


def n_layers(result) -> int:
    return int(np.asarray(result.max_E).shape[-1])


def level_positions(result) -> np.ndarray:
    """The x of each example in the slope: its level if levels are numbers, else the level's rank."""
    lv = np.asarray(result.example_level)
    levels = np.asarray(result.levels)
    if np.issubdtype(levels.dtype, np.number):
        return lv.astype(float)
    return np.searchsorted(levels, lv).astype(float)


def slope(
    result,
    which: str = "layer",
    margin: float = DEPTH_SHIFT,
    alpha: float = 0.05,
    correct_only: bool = False,
    levels=None,
) -> dict:
    """`stats.slope_equivalence` of the per-example `which` score on the level (only `levels`, when
    given); margin is `margin` × (L − 1) layers across the span of those levels. Adds 'margin_layers'
    (the margin in layers per level)."""
    x = level_positions(result)
    y = _scores(result, which)
    keep = np.ones(x.size, bool)
    if correct_only:
        keep &= np.asarray(result.example_correct, bool)
    if levels is not None:
        keep &= np.isin(np.asarray(result.example_level), list(levels))
    x, y = x[keep], y[keep]
    ok = np.isfinite(y)
    span = float(np.ptp(x[ok])) if ok.sum() else 0.0
    m = margin * max(n_layers(result) - 1, 1) / max(span, 1.0)
    out = stats.slope_equivalence(x, y, m, alpha=alpha)
    out["margin_layers"] = m
    return out


SATURATED = 0.5  # share of E[s, l > s] at ≥ 0.99 above which the depth score cannot move


def saturation(result) -> float:
    """Share of the per-example skip effects right of the diagonal at the top of the scale (≥ 0.99)."""
    E = np.asarray(getattr(result, "example_E", np.zeros((0, 1, 1))), float)
    if E.size == 0:
        return float("nan")
    L = E.shape[-1]
    upper = E[:, np.triu_indices(L, 1)[0], np.triu_indices(L, 1)[1]]
    upper = upper[np.isfinite(upper)]
    return float(np.mean(upper >= 0.99)) if upper.size else float("nan")


def tested_levels(result, chance: dict | None) -> list:
    """The levels the model answers above chance (one-sided binomial, p < 0.05); every level when no
    chance rates are given."""
    lv = np.asarray(result.example_level)
    correct = np.asarray(result.example_correct, bool)
    out = []
    for level in result.levels:
        sel = lv == level
        rate = (chance or {}).get(level, (chance or {}).get(str(level)))
        if chance is None or (
            rate is not None and not at_chance(int(correct[sel].sum()), int(sel.sum()), float(rate))[0]
        ):
            out.append(level)
    return out


def flat_verdict(
    result, which: str, chance: dict | None, depth_shift: float = DEPTH_SHIFT, n_tests: int = 1
) -> verdicts.Verdict:
    """The FLAT rule on one score of one set."""
    levels = tested_levels(result, chance)
    if len(levels) < 2:
        return verdicts.decide_equivalence(
            FLAT, [], not_testable=f"the model answers {len(levels)} level(s) above chance; a trend needs two"
        )
    sat = saturation(result)
    if np.isfinite(sat) and sat > SATURATED:
        return verdicts.decide_equivalence(
            FLAT,
            [],
            not_testable=(
                f"{sat:.0%} of the skip effects E[s, l > s] are at the top of the scale: every layer looks equally important, "
                "so the depth score is the same at every level whatever the model does"
            ),
        )
    sl = slope(result, which, depth_shift, levels=levels)
    rule = replace(FLAT, margin=sl["margin_layers"])
    est = verdicts.Estimate(sl["slope"], sl["se"], float(max(sl["n"] - 2, 0)), int(sl["n"]))
    v = verdicts.decide_equivalence(rule, estimate=est, unlike_alpha=FLAT.alpha / max(n_tests, 1))
    v.details = {"margin": sl["margin_layers"], "levels": [str(x) for x in levels]}
    return v


def accuracy(result) -> float:
    """Teacher-forced greedy exact match over all examples."""
    return float(np.mean(np.asarray(result.example_correct, bool)))


def _scores(result, which):
    return np.asarray(getattr(result, f"example_depth_{which}"), float)


def level_table(result, controls: list | None = None, which: str = "layer") -> pd.DataFrame:
    """One row per level: the paper's max-aggregated score (bootstrap interval, under-covers), the mean
    of the per-example scores with its t-interval, accuracy; and the controls' mean score."""
    lv_all = np.asarray(result.example_level)
    y = _scores(result, which)
    rows = []
    for k, lv in enumerate(result.levels):
        sel = lv_all == lv
        finite = y[sel][np.isfinite(y[sel])]
        m, lo, hi = stats.mean_ci(finite) if finite.size else (np.nan, np.nan, np.nan)
        ci = np.asarray(getattr(result, f"depth_{which}_ci"))[k]
        row = {
            "level": lv,
            "n": int(sel.sum()),
            "accuracy": float(np.asarray(result.accuracy)[k]),
            "paper score (max over examples)": float(np.asarray(getattr(result, f"depth_{which}"))[k]),
            "its bootstrap 95% (under-covers)": f"[{ci[0]:.2f}, {ci[1]:.2f}]",
            "mean of per-example scores": m,
            "t 95% interval": f"[{lo:.2f}, {hi:.2f}]",
        }
        if controls:
            cm = [np.nanmean(_scores(c, which)[np.asarray(c.example_level) == lv]) for c in controls]
            row["control mean score"] = float(np.nanmean(cm))
            row["control accuracy"] = float(np.mean([np.asarray(c.accuracy)[k] for c in controls]))
        rows.append(row)
    return pd.DataFrame(rows).set_index("level")


def _f(x, nd=2):
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{0.0 if abs(x) < 0.5 * 10**-nd else x:.{nd}f}"  # no "-0.00"


def chance_rates(sets: dict) -> dict:
    """{set name: {level: chance rate}} of `difficulty_datasets`' sets (`effdepth.data.natural.chance`)."""

    return {name: {lv: chance(exs) for lv, exs in s["examples"].items() if exs} for name, s in sets.items()}


def dataset_findings(
    name: str, result, controls: list, chance: dict | None = None, depth_shift: float = DEPTH_SHIFT, n_tests: int = 2
) -> tuple[Findings, dict]:
    """Findings of one set: per score, the FLAT verdict, the slope and a sentence; returns (findings,
    {score: Verdict})."""
    f = Findings()
    L = n_layers(result)
    acc = accuracy(result)
    cacc = [accuracy(c) for c in controls]
    levels = tested_levels(result, chance)
    f.numbers.update(
        {
            "accuracy": acc,
            "control_accuracy": float(np.mean(cacc)) if cacc else float("nan"),
            "n_layers": L,
            "n_tested_levels": len(levels),
        }
    )
    a = np.asarray(result.accuracy, float)
    rates = ", ".join(
        f"{lv}: {100 * acc_:.0f} %"
        + (f" (chance {100 * float((chance or {}).get(lv, np.nan)):.1f} %)" if chance and lv in chance else "")
        for lv, acc_ in zip(result.levels, a)
    )
    parts = [
        f"**{name}** ({L} layers): accuracy per level {rates}; above chance at "
        + (f"level{'s' if len(levels) > 1 else ''} {', '.join(str(x) for x in levels)}" if levels else "no level")
        + (f"; the random-init control answers {np.mean(cacc):.0%}" if cacc else "")
        + "."
    ]
    found = {}
    for which, label in SCORES.items():
        v = flat_verdict(result, which, chance, depth_shift, n_tests)
        found[which] = v
        cs = [slope(c, which, depth_shift, levels=levels or None)["slope"] for c in controls]
        v.control = (
            float(np.nanmean(cs)) if cs else float("nan")
        )  # the card's control: the controls' slope on the same levels
        f.verdicts[f"{which}_paper_pattern"] = v.words()
        f.verdicts[f"{which}_state"] = v.state
        f.numbers.update(
            {
                f"{which}_slope": v.effect,
                f"{which}_slope_lo": v.lo,
                f"{which}_slope_hi": v.hi,
                f"{which}_margin": v.details.get("margin", float("nan")),
                f"{which}_control_slope": v.control,
            }
        )
        if v.state == NOT_TESTABLE:
            parts.append(f"{label} score: not testable here ({v.reason})")
            continue
        m = v.details["margin"]
        sentence = (
            f"{label} score: slope {_f(v.effect)} layers per level ({100 - 200 * FLAT.alpha:.0f} % interval [{_f(v.lo)}, {_f(v.hi)}]) "
            f"against a margin of ±{_f(m)} layers per level ({depth_shift:.0%} of the depth across the tested levels); "
            f"random-init control slope {_f(np.nanmean(cs)) if cs else 'n/a'}"
        )
        sentence += {
            PAPER: " — **as in the paper**, flat across difficulty",
            NOT_PAPER: " — **unlike the paper**, the score "
            + ("rises" if v.effect > 0 else "falls")
            + " with difficulty by more than the margin",
        }.get(v.state, f" — {v.words()}")
        parts.append(sentence)
    f.text["sentence"] = parts[0] + " " + ". ".join(p[0].upper() + p[1:] for p in parts[1:]) + "."
    return f, found


def findings(results: dict, controls: dict, chance: dict | None = None, depth_shift: float = DEPTH_SHIFT) -> Findings:
    """The chapter's findings over all difficulty sets. results: {name: DepthScore}; controls: {name:
    [DepthScore per control seed]} (every name of `results`); chance: {name: {level: rate}}
    (`chance_rates`; None: every level counts). Numbers and verdicts are prefixed `d<i>_` (i =
    position of the set in `results`); `text['per_dataset']` is a bullet list, `text['summary']` the
    chapter's verdict, recorded as `paper_pattern`."""
    missing = [n for n in results if n not in controls]
    if missing:
        raise ValueError(f"controls has no entry for {missing}: pass [] for a set measured without controls.")
    f = Findings()
    bullets, found = [], []
    n_tests = len(results) * len(SCORES)
    for i, (name, r) in enumerate(results.items()):
        d, v = dataset_findings(
            name,
            r,
            list(controls[name]),
            (chance or {}).get(name) if chance is not None else None,
            depth_shift,
            n_tests,
        )
        f = f.merge(Findings(d.numbers, d.verdicts, {}), prefix=f"d{i}_")
        bullets.append("- " + d.text["sentence"])
        found += [(name, which, x) for which, x in v.items()]
    f.text["per_dataset"] = "\n".join(bullets)
    states = [x.state for _, _, x in found]
    tested = [x for _, _, x in found if x.state != NOT_TESTABLE]
    overall = verdicts.combine_all(states)
    lead = next((x for x in tested if x.state == overall), tested[0] if tested else found[0][2])
    n_examples = sum(
        max((x.n for n, _, x in found if n == name and x.state != NOT_TESTABLE), default=0) for name in results
    )
    v = verdicts.Verdict(
        FLAT.name,
        overall,
        int(n_examples),
        lead.effect,
        lead.lo,
        lead.hi,
        control=lead.control,
        reason=lead.reason if overall == NOT_TESTABLE else "",
        n_needed=max((x.n_needed for x in tested if x.n_needed), default=None) if overall == INCONCLUSIVE else None,
    )
    first = next((f"{n} ({SCORES[w]} score)" for n, w, x in found if x is lead), "")
    record(f, "paper_pattern", v, FLAT, unit=f"slope in layers per level, {first}")
    f.numbers.update({"n_paper": sum(s == PAPER for s in states), "n_scores": len(states), "depth_shift": depth_shift})
    f.text["summary"] = {
        PAPER: "**As in the paper**, every depth score is shown flat across difficulty (within 10 % of the depth), on levels the model answers above chance.",
        NOT_PAPER: "**Unlike the paper**, a depth score rises or falls with difficulty by more than 10 % of the depth.",
        NOT_TESTABLE: f"**Not testable here**: {lead.reason}.",
    }.get(
        overall,
        f"Whether harder problems use deeper layers is **{v.words()}**: the intervals reach beyond the ±10 %-of-depth margin.",
    ) + (f" ({verdicts.tally(states)}, over {len(states)} scores.)")
    return f


def describe_example(ig, er, frac: float = 0.1) -> dict:
    """Numbers for the prose under Fig 6, from one example's IG and erasure results.

    last_layer_question: the highest residual index at which erasing some question token (positions
    1 … answer_start-2, i.e. neither the front nor the last prompt token, whose own prediction is
    scored) still changes the answer by at least `frac` of the largest such change; ig_second_half:
    the share of Σ|attribution| (position 0 left out) in layers ≥ L/2; ig_gap_rel: the largest
    completeness gap over layers relative to the largest |P(x) − P(x')| over layers.
    """
    eff = np.asarray(er.effect, float)
    a0 = int(er.answer_start)
    q = eff[:, 1 : max(a0 - 1, 1)]
    out = {"n_layers": eff.shape[0] - 1, "max_question_effect": float(np.nanmax(q)) if q.size else float("nan")}
    if q.size and np.nanmax(q) > 0:
        rows = np.flatnonzero(np.nanmax(q, axis=1) >= frac * np.nanmax(q))
        out["last_layer_question"] = int(rows.max())
    else:
        out["last_layer_question"] = None
    attr = np.abs(np.asarray(ig.attribution, float)[:, 1:])
    L = attr.shape[0]
    out["ig_second_half"] = float(attr[L // 2 :].sum() / attr.sum()) if attr.sum() > 0 else float("nan")
    delta = float(ig.p_input) - np.asarray(ig.p_baseline, float)
    out["ig_gap_max"] = float(np.nanmax(np.abs(ig.completeness_gap)))
    out["ig_delta_max"] = float(np.nanmax(np.abs(delta)))
    out["ig_gap_rel"] = out["ig_gap_max"] / max(out["ig_delta_max"], 1e-12)
    out["p_input"] = float(ig.p_input)
    out["n_answer_tokens"] = int(len(ig.token_ids) - int(ig.answer_start))
    out["ig_top_layer"] = int(np.argmax(attr.sum(-1)))
    return out


def examples_findings(panels: dict, prompts: dict, ig_steps: int, control_panels: dict | None = None) -> Findings:
    """The prose under Fig 6: per example, until which residual index a question token is still read
    (erasure), where the attribution lies (IG) and IG's completeness gap; the control's beside.
    panels / control_panels: {name: (ig, erasure)}; prompts: {name: (prompt, answer)}. Descriptive:
    the paper uses these heatmaps as pictures, its test is the depth score."""
    f = Findings()
    lines = []
    for i, (name, (ig, er)) in enumerate(panels.items()):
        d = describe_example(ig, er)
        L = d["n_layers"]
        prompt, answer = prompts[name]
        where = (
            f"erasing a question token still changes the answer by at least a tenth of the largest such change up to residual index "
            f"**{d['last_layer_question']}** of {L} ({d['last_layer_question'] / L:.0%} of the depth)"
            if d["last_layer_question"] is not None
            else "no question token's erasure changes the answer"
        )
        ctl = ""
        if control_panels and name in control_panels:
            c = describe_example(*control_panels[name])
            ctl = f" (random-init control: {'up to residual index ' + str(c['last_layer_question']) if c['last_layer_question'] is not None else 'no question token matters'}; {c['ig_second_half']:.0%} of its attribution in layers ≥ {L // 2})"
        f.numbers.update(
            {
                f"ex{i}_last_layer_question": d["last_layer_question"]
                if d["last_layer_question"] is not None
                else float("nan"),
                f"ex{i}_ig_second_half": d["ig_second_half"],
            }
        )
        unsure = (
            d["p_input"] < 0.5 * d["n_answer_tokens"]
        )  # less than half the probability on the answer, per answer token
        complete = d["ig_gap_rel"] < IG_MAX_GAP
        f.numbers[f"ex{i}_ig_gap_rel"] = d["ig_gap_rel"]
        ig = (
            f"the layer whose output carries the most attribution is layer {d['ig_top_layer']}, and {d['ig_second_half']:.0%} of the "
            f"total |attribution| (position 0 left out) lies in layers ≥ {L // 2}{ctl}. IG completeness with {ig_steps} steps: per "
            f"layer the attributions sum to P(x) − P(x') up to a gap of {d['ig_gap_rel']:.1%} of the largest P(x) − P(x')"
            if complete
            else f"no attribution shares are read from integrated gradients: with {ig_steps} steps its completeness gap is "
            f"{d['ig_gap_rel']:.0%} of P(x) − P(x') (the shares are trusted below {IG_MAX_GAP:.0%}; more steps, `ig_steps`, shrink it)"
        )
        lines.append(
            f"- **{name}** (`{prompt!r}` → `{answer!r}`; summed teacher-forced probability of its {d['n_answer_tokens']} answer tokens "
            f"{d['p_input']:.2f} of {d['n_answer_tokens']}"
            + (
                "; **the model puts less than half its probability on this answer, so the heatmaps show how a mostly wrong prediction is made**"
                if unsure
                else ""
            )
            + f"): {where}; {ig}."
        )
    f.text["examples"] = "\n".join(lines)
    return f


def run_findings(lm, sets: dict, notes: list, reference_source: str, n_controls: int, n_splits: int = 4) -> Findings:
    """The sentence naming what this run measured (model, sets, erasing vectors, controls); a worked
    solution's number of split points is named when it differs from the paper's four."""
    f = Findings()
    f.numbers.update({"n_layers": lm.n_layers, "n_controls": n_controls})
    f.text["run"] = (
        f"This run: **{ModelSpec.parse(lm.spec).short_name}** ({lm.adapter.family} family, {lm.n_layers} layers, d={lm.d_model}), beside "
        f"{n_controls} random-init control(s) of the same architecture on the same examples. Difficulty sets: "
        + "; ".join(
            f"{name} ({', '.join(f'{lv}: {len(exs)}' for lv, exs in s['examples'].items())} examples per level)"
            for name, s in sets.items()
        )
        + f". Erasing vectors: mean residuals of {reference_source}. "
        + (
            f"Worked solutions are split at {n_splits} point(s) each, not the paper's 4 (`n_splits`, sized for this machine). "
            if n_splits != 4
            else ""
        )
        + " ".join(notes)
    )
    return f


def data_list(sets: dict) -> str:
    """The difficulty data sets of the run, for the run-info table."""
    return "; ".join(sets)


def notes_text(notes: list) -> str:
    """The data loaders' notes (a fallback, a local file) for the run-info table; "none" without any."""
    return " ".join(notes) or "none"


def depth_sets(sets: dict, chosen=None) -> tuple[dict, dict]:
    """(measured, left out): the difficulty sets the depth score is measured on (every set when
    `chosen` is None; else those whose name starts with one of the `chosen` strings) and the rest."""
    if chosen is None:
        return dict(sets), {}
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    measured = {n: s for n, s in sets.items() if any(n.lower().startswith(c.lower()) for c in chosen)}
    if not measured:
        raise ValueError(
            f"depth_sets={chosen!r} names none of this run's difficulty sets: {', '.join(repr(n) for n in sets)}."
        )
    return measured, {n: s for n, s in sets.items() if n not in measured}


def left_out_findings(model_name: str, table: pd.DataFrame) -> Findings:
    """The sentence on difficulty sets whose depth score this run did not measure (`depth_sets`).

    table: `effdepth.accuracy.accuracy_table` of the model on those sets (one row per set and level,
    with its 'at chance' label). A set the model answers at chance at every level loses nothing: its
    depth score could not be the paper's pattern (the rules need the model to answer better than its
    control); a set it answers above chance somewhere is a real gap, and the sentence says so."""
    f = Findings()
    if table is None or len(table) == 0:
        f.text["left_out"] = "The depth score is measured on every difficulty set of this run."
        f.numbers["n_left_out"] = 0
        return f
    parts, gaps = [], []
    for name, rows in table.groupby("set", sort=False):
        levels = ", ".join(
            f"level {lv}: {100 * a:.0f} % of {n} (chance {100 * c:.0f} %)"
            for lv, a, n, c in zip(rows["level"], rows["accuracy"], rows["n"], rows["chance"])
        )
        above = [str(lv) for lv, lab in zip(rows["level"], rows["label"]) if lab != "at chance"]
        parts.append(f"{name} ({model_name}'s accuracy: {levels})")
        if above:
            gaps.append(f"{name} (above chance at level {', '.join(above)})")
    head = (
        "**Not measured on this model in this run** (`depth_sets`, sized for this machine): the depth score on "
        + "; ".join(parts)
        + ". "
    )
    if gaps:
        tail = (
            f"That leaves a gap: the model answers {'; '.join(gaps)} better than guessing, so its depth score there could be "
            "informative; run the chapter with `depth_sets=None` (every set) on a faster machine."
        )
    else:
        tail = (
            "No level is distinguishable from chance (one-sided binomial test), so a depth score there would say nothing about how answering "
            "uses depth: a model that does not compute the answers is never the paper's pattern (see the rules). The zoo's "
            "page measures the same kind of set on a model that answers it."
        )
    f.text["left_out"] = head + tail
    f.numbers["n_left_out"] = int(table["set"].nunique())
    return f


# -- the chapter's data ------------------------------------------------------------------------


def difficulty_datasets(
    model_spec: str, n_per_level: int = 20, seed: int = 0, source: str = "auto"
) -> tuple[dict, list[str]]:
    """The labelled-difficulty sets the §3.3 chapter measures, and notes on what was substituted.

    source 'real': the paper's MATH intermediate_algebra levels 1–5 (worked solutions) and
    MQuAKE-Remastered CF3k 2/3/4 hops (`effdepth.data.real`, seed 42 as the paper); 'generated':
    the zoo's own graded arithmetic (level = number of operations) and in-context multi-hop questions
    (1–4 hops); 'natural': the project's generated English sets for pretrained models
    (`effdepth.data.natural`: GSM8K-format word problems with worked solutions, 1–4 steps, in place
    of MATH; kinship questions with 1–4 hops in place of MQuAKE); 'auto': 'generated' for the project's own models (their training distribution), 'real'
    otherwise, where a real set not available here is replaced (with a note) by the English set of
    the same kind.
    Returns ({name: {'examples': {level: [Example]}, 'xlabel', 'level_fmt'}}, notes).
    """

    if source not in DIFFICULTY_SOURCES:
        raise ValueError(f"source must be one of {', '.join(repr(s) for s in DIFFICULTY_SOURCES)}, not '{source}'")
    if source == "auto":
        source = "generated" if is_offline_model(model_spec) else "real"

    by = lambda exs: {lv: [e for e in exs if e.level == lv] for lv in sorted({e.level for e in exs})}  # noqa: E731
    generated = {
        "Graded arithmetic": lambda: {
            "examples": by(graded_examples(levels=(1, 2, 3, 4, 5), n_per_level=n_per_level, split="test", seed=seed)),
            "xlabel": "Number of operations",
            "level_fmt": "{}",
        },
        "Multi-hop questions": lambda: {
            "examples": by(multihop_examples(hops=(1, 2, 3, 4), n_per_hops=n_per_level, seed=seed)),
            "xlabel": "Hops",
            "level_fmt": "{}",
        },
    }
    natural = {
        "Word problems (GSM8K format)": lambda: {
            "examples": by(word_problems(n_per_level=n_per_level, seed=seed)),
            "xlabel": "Steps of the worked solution",
            "level_fmt": "{}",
        },
        "Kinship questions": lambda: {
            "examples": by(kinship_questions(n_per_level=n_per_level, seed=seed)),
            "xlabel": "Hops",
            "level_fmt": "{}",
        },
    }
    if source in ("generated", "natural"):
        return {name: make() for name, make in (generated if source == "generated" else natural).items()}, []

    sets, notes = {}, []
    for name, load, levels, xlabel, fmt, stand_in in (
        (
            "MATH (intermediate algebra)",
            math_problems,
            (1, 2, 3, 4, 5),
            "Difficulty level",
            "Level {}",
            "Word problems (GSM8K format)",
        ),
        ("MQuAKE (CF3k)", mquake, (2, 3, 4), "Hops", "{} hops", "Kinship questions"),
    ):
        try:
            sets[name] = {
                "examples": {lv: load(lv, n=n_per_level, seed=42) for lv in levels},
                "xlabel": xlabel,
                "level_fmt": fmt,
            }
        except DatasetNotAvailable as err:
            notes.append(
                f"{name} is not available here ({str(err).rstrip('.')}). The project's generated set '{stand_in}' is used in its place."
            )
            sets[stand_in] = natural[stand_in]()
    return sets, notes


DIFFICULTY_SOURCES = ("auto", "real", "generated", "natural")


def fig6_examples(model_spec: str, sets: dict, n_reference: int = 10, seed: int = 0) -> tuple[dict, list[str], str]:
    """The two Fig 6 examples, the reference prompts of the erasing vectors, and a phrase naming them.

    For the project's own models: a 5-operation arithmetic question and a two-hop question from their
    own distribution, and `n_reference` prompts of that distribution; for pretrained models: the
    paper's two prompts, and `n_reference` examples drawn (seeded) from the chapter's difficulty sets.
    Returns ({name: (prompt, answer)}, reference prompts, description).
    """

    if is_offline_model(model_spec):
        arith = graded_examples(levels=(5,), n_per_level=1, split="test", seed=seed)[0]
        twohop = multihop_examples(hops=(2,), n_per_hops=1, seed=seed)[0]
        reference = load_prompts("auto", n_reference, seed, model_spec=model_spec)
        return (
            {"Arithmetic": (arith.prompt, arith.answer), "Two-hop question": (twohop.prompt, twohop.answer)},
            reference,
            f"{len(reference)} prompts of the model's own distribution (seed {seed})",
        )
    pool = [ex.text for s in sets.values() for exs in s["examples"].values() for ex in exs]
    reference = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:n_reference]]
    return (
        {
            "Arithmetic": ("5 + 7 + 5 + 3 + 1 + 7 = ", "28"),
            "Two-hop question": ("The spouse of the performer of Imagine is", " Yoko Ono"),
        },
        reference,
        f"{len(reference)} examples drawn (seed {seed}) from the chapter's difficulty sets",
    )
