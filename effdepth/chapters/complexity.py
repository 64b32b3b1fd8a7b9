"""§3.3 reasoning: from depth-score results (trained model AND random-init controls) to findings.

Input: {dataset name: `DepthScore`} of the trained model and {dataset name: [DepthScore, …]} of its
random-init controls (one per control seed, the same examples). Output: a `Findings` object.

The paper's claim (Csordás et al. §3.3, Fig 7): the depth score is **flat** across difficulty (MATH
levels 1–5, 2/3/4-hop MQuAKE): harder problems do not use deeper layers. The rules
(book/methods/complexity-rules.md states the same):

- `trend` per dataset and score (layer effect, logit effect): the OLS slope of the per-example
  depth score (layers) on the level, in layers per level, with its 95 % interval, and a TOST
  equivalence test against ±margin, margin = MARGIN (5 %) of the depth (L − 1 layers) per level
  (`stats.slope_equivalence`): "rising" / "falling" when the 95 % interval excludes 0 (even inside
  the margin: a falling trend is never called flat); "flat" when the 90 % interval lies inside
  ±margin and the 95 % interval contains 0; else "undetermined" ("not distinguishable from flat
  with this sample"). A failed trend test alone is never "flat".
- `informative`: the model answers these questions better than its control: its accuracy
  (teacher-forced greedy exact match, all levels) lies above `stats.control_bound(control
  accuracies, "greater")`, above every control and their mean by K_SPREAD (2) spreads, the spread
  combining the sd across control seeds and the accuracy's own binomial standard error. A depth score of a model that does not compute the answers says nothing
  about how answering uses depth.
- `paper_pattern`: "yes" (as in the paper) only when the trend is "flat" AND the model is
  informative; "not distinguishable from the control" when flat but not informative; "no" when the
  score rises or falls (a falling trend is never the paper's flat finding); "undetermined" otherwise.
- `vs_control` (rising or falling trends): "beyond the control" when the slope lies beyond
  `control_bound(control slopes)` in its own direction (beyond every control and their mean by 2
  spreads, the spread combining the sd across seeds and the slope's own standard error), else "as
  the control" (the trend then comes from the prompts — e.g. their length — not from anything learned).

The chapter's verdict: "yes" when every score of every set is; "not distinguishable from the control"
when the model answers no set better than its controls; else "no" when any score rises or falls,
"not distinguishable from the control" when the flat ones are uninformative, else "undetermined".

Numbers beside the paper's max-aggregated score per level (its percentile-bootstrap interval is
known to under-cover): the mean of the per-example scores with its Student-t 95 % interval
(`stats.mean_ci`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from . import NOT_PAPER, PAPER, SAME_AS_CONTROL, Findings
from ..plots import short_name

MARGIN = 0.05  # "flat": |slope| shown below 5 % of the depth (L − 1 layers) per level
K_SPREAD = 2.0
UNDETERMINED = "undetermined"
SCORES = {"layer": "layer-effect", "output": "logit-effect"}


def n_layers(result) -> int:
    return int(np.asarray(result.max_E).shape[-1])


def level_positions(result) -> np.ndarray:
    """The x of each example in the slope: its level if levels are numbers, else the level's rank."""
    lv = np.asarray(result.example_level)
    levels = np.asarray(result.levels)
    if np.issubdtype(levels.dtype, np.number):
        return lv.astype(float)
    return np.searchsorted(levels, lv).astype(float)


def slope(result, which: str = "layer", margin: float = MARGIN, alpha: float = 0.05, correct_only: bool = False) -> dict:
    """`stats.slope_equivalence` of the per-example `which` score on the level; margin is a share
    of the depth (L − 1 layers) per level. Adds 'margin_layers' (the margin in layers per level)."""
    x = level_positions(result)
    y = _scores(result, which)
    if correct_only:
        keep = np.asarray(result.example_correct, bool)
        x, y = x[keep], y[keep]
    m = margin * max(n_layers(result) - 1, 1)
    out = stats.slope_equivalence(x, y, m, alpha=alpha)
    if out["verdict"] == stats.FLAT and (out["lo"] > 0 or out["hi"] < 0):  # inside the margin, but a clear trend
        out["verdict"] = stats.RISING if out["lo"] > 0 else stats.FALLING
    out["margin_layers"] = m
    return out


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


def _spread(control_values, own_se: float) -> float:
    """The spread a trained value must clear: the controls' sd across seeds and the trained value's
    own standard error, combined (√(sd² + se²)); a trained model is one draw too."""
    c = np.asarray([x for x in control_values if np.isfinite(x)], float)
    sd = float(c.std(ddof=1)) if c.size > 1 else 0.0
    return float(np.sqrt(sd**2 + (own_se if np.isfinite(own_se) else 0.0) ** 2))


def _verdict(trend: str, informative: bool) -> str:
    if trend == stats.FLAT:
        return PAPER if informative else SAME_AS_CONTROL
    if trend in (stats.RISING, stats.FALLING):
        return NOT_PAPER
    return UNDETERMINED


def _f(x, nd=2):
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{0.0 if abs(x) < 0.5 * 10**-nd else x:.{nd}f}"  # no "-0.00"


_TREND = {
    stats.FLAT: "flat (shown within ±{m} layers per level)",
    stats.RISING: "rising",
    stats.FALLING: "falling",
    stats.UNDETERMINED: "not distinguishable from flat with this sample (the interval reaches beyond ±{m} layers per level)",
}


def dataset_findings(name: str, result, controls: list, margin: float = MARGIN, alpha: float = 0.05) -> Findings:
    """Findings of one dataset: per score, the slope, its verdicts and a sentence (keys `<score>_*`)."""
    f = Findings()
    L = n_layers(result)
    acc = accuracy(result)
    cacc = [accuracy(c) for c in controls]
    n = len(np.asarray(result.example_correct))
    informative = bool(controls) and stats.differs_from_control(acc, cacc, "greater", k=K_SPREAD, spread=_spread(cacc, np.sqrt(max(acc * (1 - acc), 1e-12) / max(n, 1))))
    f.numbers.update({"accuracy": acc, "control_accuracy": float(np.mean(cacc)) if cacc else float("nan"), "n_layers": L})
    f.verdicts["informative"] = "yes" if informative else "no"
    a = np.asarray(result.accuracy, float)
    harder = "falls" if a[-1] < a[0] - 0.05 else ("rises" if a[-1] > a[0] + 0.05 else "stays about the same")
    f.verdicts["accuracy_trend"] = harder
    parts = [
        f"**{name}** ({L} layers): accuracy {a[0]:.0%} at the easiest level and {a[-1]:.0%} at the hardest ({harder}); "
        f"{acc:.0%} over all levels against {f'{np.mean(cacc):.0%}' if cacc else 'n/a'} for the random-init control"
        + ("" if informative else ", so the model does not answer these questions better than an untrained one")
        + "."
    ]
    for which, label in SCORES.items():
        sl = slope(result, which, margin, alpha)
        cs = [slope(c, which, margin, alpha)["slope"] for c in controls]
        trend = sl["verdict"]
        v = _verdict(trend, informative)
        vs = "n/a"
        if trend in (stats.RISING, stats.FALLING):
            direction = "greater" if trend == stats.RISING else "less"
            se = (sl["hi"] - sl["lo"]) / (2 * 1.96)
            beyond = bool(cs) and np.isfinite(cs).any() and stats.differs_from_control(sl["slope"], cs, direction, k=K_SPREAD, spread=_spread(cs, se))
            vs = "beyond the control" if beyond else "as the control"
        f.verdicts.update({f"{which}_trend": trend, f"{which}_paper_pattern": v, f"{which}_vs_control": vs})
        f.numbers.update(
            {
                f"{which}_slope": sl["slope"], f"{which}_slope_lo": sl["lo"], f"{which}_slope_hi": sl["hi"],
                f"{which}_tost_lo": sl["tost_lo"], f"{which}_tost_hi": sl["tost_hi"], f"{which}_margin": sl["margin_layers"],
                f"{which}_control_slope": float(np.nanmean(cs)) if cs else float("nan"),
            }
        )
        inside = np.isfinite(sl["tost_lo"]) and -sl["margin_layers"] < sl["tost_lo"] and sl["tost_hi"] < sl["margin_layers"]
        sentence = (
            f"{label} score: slope {_f(sl['slope'])} layers per level (95 % interval [{_f(sl['lo'])}, {_f(sl['hi'])}]; "
            f"90 % [{_f(sl['tost_lo'])}, {_f(sl['tost_hi'])}]), "
            + _TREND[trend].format(m=_f(sl["margin_layers"]))
            + (f" (a small but clear trend: inside the ±{_f(sl['margin_layers'])} margin, yet the 95 % interval excludes 0)" if trend in (stats.RISING, stats.FALLING) and inside else "")
            + f"; random-init control slope {_f(np.nanmean(cs)) if cs else 'n/a'}"
        )
        if v == PAPER:
            sentence += " — as in the paper, flat across difficulty"
        elif v == SAME_AS_CONTROL:
            sentence += " — flat, but uninformative: the control answers as well"
        elif trend in (stats.RISING, stats.FALLING) and not informative:
            sentence += " — in a model that answers no better than its control, so it says nothing about how answering uses depth"
        elif trend == stats.RISING:
            sentence += " — unlike the paper, harder problems reach deeper here" if vs == "beyond the control" else " — it rises, but not beyond the random-init controls' spread, so the rise is not evidence of learned computation (the prompts may make it)"
        elif trend == stats.FALLING:
            sentence += " — not the paper's flat finding: harder problems use *shallower* layers here" if vs == "beyond the control" else " — it falls, but not beyond the random-init controls' spread, so the fall is not evidence of learned computation (the prompts may make it)"
        parts.append(sentence)
        tc = slope(result, which, margin, alpha, correct_only=True)
        f.numbers[f"{which}_slope_correct"] = tc["slope"]
        f.verdicts[f"{which}_trend_correct"] = tc["verdict"]
    f.text["sentence"] = parts[0] + " " + ". ".join(p[0].upper() + p[1:] for p in parts[1:]) + f". On correctly answered examples only the layer-effect trend is {f.verdicts['layer_trend_correct']}."
    return f


def findings(results: dict, controls: dict, margin: float = MARGIN, alpha: float = 0.05) -> Findings:
    """The chapter's findings over all difficulty sets. results: {name: DepthScore}; controls: {name:
    [DepthScore per control seed]} (every name of `results`). Numbers and verdicts are prefixed
    `d<i>_` (i = position of the set in `results`); `text['per_dataset']` is a bullet list,
    `text['summary']` the chapter's verdict."""
    missing = [n for n in results if n not in controls]
    if missing:
        raise ValueError(f"controls has no entry for {missing}: pass [] for a set measured without controls.")
    f = Findings()
    bullets, keys = [], []
    for i, (name, r) in enumerate(results.items()):
        d = dataset_findings(name, r, list(controls[name]), margin, alpha)
        f = f.merge(Findings(d.numbers, d.verdicts, {}), prefix=f"d{i}_")
        bullets.append("- " + d.text["sentence"])
        keys += [(name, which, d.verdicts[f"{which}_paper_pattern"], d.verdicts[f"{which}_trend"]) for which in SCORES]
    f.text["per_dataset"] = "\n".join(bullets)
    n_yes = sum(k[2] == PAPER for k in keys)
    f.numbers.update({"n_paper": n_yes, "n_scores": len(keys), "margin": margin})
    rising = [f"{n} ({SCORES[w]})" for n, w, _, t in keys if t == stats.RISING]
    falling = [f"{n} ({SCORES[w]})" for n, w, _, t in keys if t == stats.FALLING]
    if n_yes == len(keys):
        verdict, summary = PAPER, "As in the paper, every depth score is shown flat across difficulty (within the stated margin), on questions the model answers better than its random-init control."
    elif not any(f.verdicts[f"d{i}_informative"] == "yes" for i in range(len(results))):
        verdict = SAME_AS_CONTROL
        summary = (
            "The model answers no set better than its random-init control, so its depth scores, flat or not, say nothing about "
            "whether harder problems use deeper layers."
        )
    elif rising or falling:
        verdict = NOT_PAPER
        summary = "Not the paper's flat finding: the depth score " + "; ".join(
            x for x in ((f"rises for {', '.join(rising)}" if rising else ""), (f"falls for {', '.join(falling)}" if falling else "")) if x
        ) + "."
    elif any(k[2] == SAME_AS_CONTROL for k in keys):
        verdict = SAME_AS_CONTROL
        summary = "The depth scores are flat, but that is uninformative where the model answers no better than its random-init control, which is flat too."
    else:
        verdict = UNDETERMINED
        summary = "No depth score is shown flat, rising or falling: with this sample the trends are not distinguishable from flat, which is not the same as flat."
    f.verdicts["paper_pattern"] = verdict
    f.text["summary"] = summary + f" ({n_yes} of {len(keys)} scores shown flat on questions the model answers; margin ±{margin:.0%} of the depth per level.)"
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
        f.numbers.update({f"ex{i}_last_layer_question": d["last_layer_question"] if d["last_layer_question"] is not None else float("nan"), f"ex{i}_ig_second_half": d["ig_second_half"]})
        unsure = d["p_input"] < 0.5 * d["n_answer_tokens"]  # less than half the probability on the answer, per answer token
        lines.append(
            f"- **{name}** (`{prompt!r}` → `{answer!r}`; summed teacher-forced probability of its {d['n_answer_tokens']} answer tokens "
            f"{d['p_input']:.2f} of {d['n_answer_tokens']}"
            + ("; **the model puts less than half its probability on this answer, so the heatmaps show how a mostly wrong prediction is made**" if unsure else "")
            + f"): {where}; the layer whose output carries the most attribution is layer "
            f"{d['ig_top_layer']}, and {d['ig_second_half']:.0%} of the total |attribution| (position 0 left out) lies in layers ≥ {L // 2}"
            f"{ctl}. IG completeness with {ig_steps} steps: per layer the attributions sum to P(x) − P(x'), up to a gap of at most "
            f"{d['ig_gap_max']:.3f} ({d['ig_gap_rel']:.1%} of the largest P(x) − P(x') over layers; the gap shrinks as the number of "
            f"steps grows, SPEC's default is 256)."
        )
    f.text["examples"] = "\n".join(lines)
    return f


def run_findings(lm, sets: dict, notes: list, reference_source: str, n_controls: int, n_splits: int = 4) -> Findings:
    """The sentence naming what this run measured (model, sets, erasing vectors, controls); a worked
    solution's number of split points is named when it differs from the paper's four."""
    f = Findings()
    f.numbers.update({"n_layers": lm.n_layers, "n_controls": n_controls})
    f.text["run"] = (
        f"This run: **{short_name(lm.spec)}** ({lm.adapter.family} family, {lm.n_layers} layers, d={lm.d_model}), beside "
        f"{n_controls} random-init control(s) of the same architecture on the same examples. Difficulty sets: "
        + "; ".join(f"{name} ({', '.join(f'{lv}: {len(exs)}' for lv, exs in s['examples'].items())} examples per level)" for name, s in sets.items())
        + f". Erasing vectors: mean residuals of {reference_source}. "
        + (f"Worked solutions are split at {n_splits} point(s) each, not the paper's 4 (`n_splits`, sized for this machine). " if n_splits != 4 else "")
        + " ".join(notes)
    )
    return f


def depth_sets(sets: dict, chosen=None) -> tuple[dict, dict]:
    """(measured, left out): the difficulty sets the depth score is measured on (every set when
    `chosen` is None; else those whose name starts with one of the `chosen` strings) and the rest."""
    if chosen is None:
        return dict(sets), {}
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    measured = {n: s for n, s in sets.items() if any(n.lower().startswith(c.lower()) for c in chosen)}
    if not measured:
        raise ValueError(f"depth_sets={chosen!r} names none of this run's difficulty sets: {', '.join(repr(n) for n in sets)}.")
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
        levels = ", ".join(f"level {lv}: {100 * a:.0f} % of {n} (chance {100 * c:.0f} %)" for lv, a, n, c in zip(rows["level"], rows["accuracy"], rows["n"], rows["chance"]))
        above = [str(lv) for lv, lab in zip(rows["level"], rows["label"]) if lab != "at chance"]
        parts.append(f"{name} ({model_name}'s accuracy: {levels})")
        if above:
            gaps.append(f"{name} (above chance at level {', '.join(above)})")
    head = "**Not measured on this model in this run** (`depth_sets`, sized for this machine): the depth score on " + "; ".join(parts) + ". "
    if gaps:
        tail = (f"That leaves a gap: the model answers {'; '.join(gaps)} better than guessing, so its depth score there could be "
                "informative; run the chapter with `depth_sets=None` (every set) on a faster machine.")
    else:
        tail = ("No level is distinguishable from chance (one-sided binomial test), so a depth score there would say nothing about how answering "
                "uses depth: a model that does not compute the answers is never the paper's pattern (see the rules). The zoo's "
                "page measures the same kind of set on a model that answers it.")
    f.text["left_out"] = head + tail
    f.numbers["n_left_out"] = int(table["set"].nunique())
    return f
