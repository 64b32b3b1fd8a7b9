"""Across depths: do models of different depth, trained the same way, stretch one computation?

Input, per model (shallowest first): its §3.1 contributions and §3.2 logit-lens results and those of
its random-init controls (one per control seed, the same seeds for every model), on the same
prompts. Output: a `Findings` object. The per-model verdicts are those of the chapters themselves
(`chapters.contributions.findings`, `chapters.logit_lens.findings`: imported, not re-implemented);
the cross-depth rule is this module's.

Rules (book/methods/comparison-rules.md states the same):

- Knees: the KL knee (`logit_lens.kl_knee`) and the contribution knee (`contributions.knee`), in
  relative depth x and in absolute layers k = x·L. Only models deep enough for the knee to be free
  enter the cross-depth rule (`MIN_LAYERS`): a curve of three points has one interior point, so its
  knee sits there whatever the model does. The KL curve has L + 1 points (4 layers are enough); the
  contribution curve has L, and layer 0 is often left out (5 layers are needed).
- `stretch`: for the knees k_i of models of depth L_i, compare two descriptions by their squared
  error: a fixed relative depth (k_i = c·L_i, c fitted by least squares through 0) and a fixed
  absolute layer (k_i = mean k). stretch = (SSE_absolute − SSE_relative) / (SSE_absolute +
  SSE_relative), in [−1, 1]: +1 when the knees sit at one relative depth, −1 when at one layer;
  0 when both fit equally (e.g. all knees equal in both senses).
- `stretching` (per knee kind): the trained models show the paper's picture when stretch > 0; it is
  the paper's ("yes") only when stretch also exceeds `stats.control_bound(control stretches,
  "greater")` (beyond every control seed's stretch and their mean by `chapters.control_k` sd, the
  97.5 % prediction bound for one more seed): an untrained stack of
  these depths can put its knees at a fixed relative depth too. "not distinguishable from the
  control" when stretch > 0 but not beyond; "unlike" when stretch ≤ 0; "not testable here" with fewer
  than two models of at least `MIN_LAYERS` layers, or when the controls' bound lies above 1, where no
  stretch can reach (`stats.reachable`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from effdepth import stats, zoo
from effdepth.chapters import (
    INCONCLUSIVE,
    NOT_PAPER,
    NOT_TESTABLE,
    PAPER,
    SAME_AS_CONTROL,
    Findings,
    control_k,
    paper_verdict,
)
from effdepth.chapters import contributions as contrib_chapter
from effdepth.chapters import logit_lens as lens_chapter
from effdepth.spec import ModelSpec

MIN_LAYERS = {"kl": 4, "contribution": 5}


def stretch(knees_abs, layers) -> float:
    """(SSE_abs − SSE_rel) / (SSE_abs + SSE_rel) of knees k_i (layers) of models with L_i layers (module docstring)."""
    k = np.asarray(knees_abs, dtype=float)
    L = np.asarray(layers, dtype=float)
    if k.size < 2:
        return float("nan")
    c = float((k * L).sum() / (L * L).sum())
    sse_rel = float(((k - c * L) ** 2).sum())
    sse_abs = float(((k - k.mean()) ** 2).sum())
    total = sse_abs + sse_rel
    return 0.0 if total <= 1e-12 else (sse_abs - sse_rel) / total


def _knees(kind: str, result) -> float:
    """Relative depth of the knee of `kind` ('kl' or 'contribution')."""
    return lens_chapter.kl_knee(result)["x"] if kind == "kl" else contrib_chapter.knee(result)["x"]


def stretching(kind: str, results: list, controls: list[list], layers: list[int]) -> dict:
    """The cross-depth rule for one knee kind: results[i] of model i, controls[i][s] of its control seed s."""
    use = [i for i, L in enumerate(layers) if L >= MIN_LAYERS[kind]]
    out = {"models": [layers[i] for i in use]}
    if len(use) < 2:
        return {
            **out,
            "stretch": float("nan"),
            "control_stretch": [],
            "verdict": NOT_TESTABLE,
            "reason": f"fewer than two models of at least {MIN_LAYERS[kind]} layers",
        }
    Ls = [layers[i] for i in use]
    x = [_knees(kind, results[i]) for i in use]
    s = stretch([xi * L for xi, L in zip(x, Ls)], Ls)
    n_seeds = min(len(controls[i]) for i in use)
    cs = []
    cx = []
    for j in range(n_seeds):
        xj = [_knees(kind, controls[i][j]) for i in use]
        cx.append(xj)
        cs.append(stretch([xi * L for xi, L in zip(xj, Ls)], Ls))
    differs = bool(cs) and stats.differs_from_control(s, cs, "greater", k=control_k(len(cs)))
    bound = stats.control_bound(cs, "greater", k=control_k(len(cs))) if cs else float("nan")
    verdict = paper_verdict(bool(s > 0), differs) if cs else (INCONCLUSIVE if s > 0 else NOT_PAPER)
    reason = ""
    if cs and s > 0 and not differs and float(np.mean(cs)) <= 0 and not stats.reachable(bound, "greater", (-1.0, 1.0)):
        verdict = NOT_TESTABLE
        reason = f"the controls' stretches ({', '.join(f'{c:+.2f}' for c in cs)}) vary so much that their bound ({bound:.2f}) lies above the statistic's maximum 1: no result could pass it"
    return {
        **out,
        "knee_depths": x,
        "stretch": s,
        "control_knee_depths": cx,
        "control_stretch": cs,
        "control_bound": bound,
        "verdict": verdict,
        "reason": reason,
    }


def per_model(name: str, L: int, contrib, contrib_controls, lens, lens_controls) -> dict:
    """One row of the table: the chapters' own verdicts for one model (too shallow ones say so)."""
    row = {"model": name, "layers": L}
    if L < 3:  # the §3.1 halves leave layer 0 out and need two layers per half
        why = f"{NOT_TESTABLE} ({L} layers)"
        return {**row, "paper_shape": why, "settles_late": why, "knees_agree": why}
    c = contrib_chapter.findings(contrib, contrib_controls)
    g = lens_chapter.findings(lens, lens_controls, contributions=contrib, contribution_controls=contrib_controls)
    return {
        **row,
        "half_ratio": c.numbers["half_ratio"],
        "control_half_ratio": float(np.mean([contrib_chapter.half_ratio(x)[0] for x in contrib_controls])),
        "paper_shape": c.verdicts["paper_shape"],
        "kl_knee_depth": g.numbers["kl_knee_depth"],
        "control_kl_knee_depth": g.numbers["control_kl_knee_depth"],
        "contribution_knee_depth": g.numbers["contribution_knee_depth"],
        "settles_late": g.verdicts["settles_late"],
        "knees_agree": g.verdicts.get("knees_agree", NOT_TESTABLE),
    }


def findings(
    names: list[str],
    layers: list[int],
    contribs: list,
    contrib_controls: list[list],
    lenses: list,
    lens_controls: list[list],
) -> Findings:
    """Findings across models (index i = model i; *_controls[i] = its control results, one per seed)."""
    if not (len(names) == len(layers) == len(contribs) == len(contrib_controls) == len(lenses) == len(lens_controls)):
        raise ValueError(
            "comparison.findings needs one entry per model in every list (names, layers, results, controls)."
        )
    if any(len(c) == 0 for c in contrib_controls + lens_controls):
        raise ValueError("comparison.findings needs at least one random-init control per model (n_controls ≥ 1).")
    rows = [per_model(*a) for a in zip(names, layers, contribs, contrib_controls, lenses, lens_controls)]
    kl = stretching("kl", lenses, lens_controls, layers)
    co = stretching("contribution", contribs, contrib_controls, layers)
    nums = {
        "table": rows,
        "kl_stretch": kl["stretch"],
        "contribution_stretch": co["stretch"],
        "kl_control_stretch": kl["control_stretch"],
        "contribution_control_stretch": co["control_stretch"],
    }
    verdicts = {"kl_stretching": kl["verdict"], "contribution_stretching": co["verdict"]}
    text = {
        "stretch_text": " ".join(
            _stretch_sentence(what, kind, r)
            for what, kind, r in (("The logit-lens KL knee", "kl", kl), ("The contribution knee", "contribution", co))
        )
    }
    per = []
    for r in rows:
        if r["layers"] < 3:
            per.append(f"{r['model']} ({r['layers']} layers) is too shallow for the per-model rules.")
            continue
        per.append(
            f"{r['model']} ({r['layers']} layers): second-half/first-half contribution {r['half_ratio']:.2f} (untrained "
            f"{r['control_half_ratio']:.2f}), the paper's shape: **{r['paper_shape']}**; the lens settles late: "
            f"**{r['settles_late']}**; lens and contribution knees agree: **{r['knees_agree']}**."
        )
    text["models_text"] = (
        " ".join(per)
        if len(rows) > 1
        else " ".join(per)
        + " Only one model was given: pass `--set models=[...]` with several models sharing a training recipe to compare depths."
    )
    return Findings(numbers=nums, verdicts=verdicts, text=text)


def resolve_models(model: str, models=None) -> list[str]:
    """The models to compare: `models` as given, else every zoo model for a zoo `model`, else `model` alone."""
    if models is not None:
        return [str(m) for m in models]
    if ModelSpec.parse(model).is_zoo:
        return [f"zoo:{name}" for name in zoo.MODELS]
    return [str(model)]


# The two figures' axes (`plots.comparison.by_relative_depth` keywords) and the table's word for a knee
# that a model too shallow for it does not have.
CONTRIBUTION_AXES = {
    "ylabel": "Mean relative contribution $\\|a+m\\| / \\|h\\|$",
    "title": "Layer contribution by relative depth (dashed: random init)",
}
LENS_AXES = {
    "ylabel": "KL$(p_b \\,\\|\\, p_{\\mathrm{final}})$ [nats]",
    "title": "Logit-lens KL of each layer's input by relative depth (dashed: random init)",
    "first": "residual 0",
}
MISSING = "not measured: the model is too shallow for this curve's knee"


def labels(models) -> dict[str, str]:
    """Each loaded model's label in the figures, by its spec: short name and depth."""

    return {m.spec: f"{ModelSpec.parse(m.spec).short_name} ({m.n_layers} layers)" for m in models}


def made_by(models) -> str:
    """The figures' model slot: every model compared, by its label."""
    return ", ".join(labels(models).values())


def spec_list(models) -> str:
    """The compared models' specs, for the run-info table."""
    return ", ".join(m.spec for m in models)


def run(names: list[str], layers: list[int], n_prompts: int, seed: int, n_controls: int) -> Findings:
    """What this run compared."""
    line = ", ".join(f"**{n}** ({L} layers)" for n, L in zip(names, layers))
    return Findings(
        text={
            "run_text": f"Models compared: {line}; {n_prompts} prompts, seed {seed}; {n_controls} random-init control seed{'s' if n_controls != 1 else ''} per model."
        }
    )


def _stretch_sentence(what: str, kind: str, r: dict) -> str:
    if r["verdict"] == NOT_TESTABLE and not r.get("knee_depths"):
        return f"{what}: not testable here: fewer than two models of at least {MIN_LAYERS[kind]} layers (the fewest for which this knee is not forced), so nothing is compared across depths."
    pos = ", ".join(f"{x:.2f} of {L} layers" for x, L in zip(r["knee_depths"], r["models"]))
    ctl = ", ".join(f"{s:+.2f}" for s in r["control_stretch"])
    head = f"{what} sits at relative depth {pos}; stretch {r['stretch']:+.2f} (+1: one relative depth, −1: one layer), untrained controls {ctl or 'none'}"
    tail = {
        PAPER: "**as in the paper**, the knee moves with the number of layers, and more than in the untrained models.",
        SAME_AS_CONTROL: "closer to a fixed relative depth than to a fixed layer, but **the untrained architecture shows it too** (untrained models of these depths do the same within their spread).",
        NOT_PAPER: "**unlike the paper**, it stays closer to a fixed layer than to a fixed relative depth.",
        INCONCLUSIVE: "closer to a fixed relative depth, but not checked against a control: inconclusive.",
        NOT_TESTABLE: f"**not testable here**: {r.get('reason', '')}.",
    }[r["verdict"]]
    return f"{head}: {tail}"


def table(f: Findings) -> pd.DataFrame:
    """The per-model rows of `findings` (numbers rounded to 3 digits)."""
    return pd.DataFrame(f.numbers["table"]).set_index("model").round(3)
