"""§3.4 reasoning: from shallow-to-deep linear-map results (trained pair and controls) to findings.

Input: a `LinearMaps` result of the trained pair (shallow model → deep model), the random-target
controls (the same shallow model → an untrained model of the deep architecture, one per control
seed), and optionally the identity control (the deep model → itself). Output: a `Findings` object.

Numbers (layers 1 … L on both axes, residual index 0, the embeddings, left out as in Fig 8):

- rows: for each source layer m its best target n*(m) = argmin_n err[m, n];
  `dist_stretch` = mean |n* − m·L2/L1| (layers), `dist_same` = mean |n* − m|, `monotone` = share of
  consecutive source layers whose best target does not move back.
- columns: for each target layer n its best source m*(n); `col_dist_stretch` = mean |m* − n·L1/L2|,
  `col_dist_same` = mean |m* − min(n, L1)|, `col_monotone`.
- `offset`: the mean distance, in relative depth, between a layer and its best match, averaged over
  both readings: ½·(mean_m |n*/L2 − m/L1| + mean_n |m*/L1 − n/L2|). 0 = exactly on the diagonal.
- `row_contrast`: mean over source rows of (max − min) error: how much the choice of target matters.

Verdict rules (book/methods/linear_maps-rules.md states the same):

- `reading`: "equal relative depth" when both readings are closer to m·L2/L1 than to the same
  index (dist_stretch < dist_same and col_dist_stretch < col_dist_same); "same layer index" when
  both are closer to the same index; "mixed" otherwise; "undetermined" when L1 = L2 (the two
  hypotheses predict the same layers).
- `diagonal`: "yes" when the reading is "equal relative depth" and the best matches move forward
  in at least `MONOTONE` (75 %) of consecutive steps in both readings; else "no".
- `vs_control`: "differs" when `offset` is below `stats.control_bound(control offsets, "less")`
  (below every control and below their mean by `chapters.control_k` sd across control seeds, the 97.5 %
  prediction bound for one more seed: 4.97 sd for 3 seeds); "the control
  shows the same" when the controls' mean offset is at most the trained one; "not distinguishable
  from the control" otherwise.
- `paper_pattern` (the paper's Fig 8 finding): "yes" only when `diagonal` is "yes" and `vs_control` is
  "differs"; "not distinguishable from the control" when the diagonal is there but the controls
  have it too (or nearly); "no" otherwise. Without controls it is at most "not checked against a
  control".
- `learned_structure`: "yes" when `row_contrast` exceeds `stats.control_bound(control row
  contrasts, "greater")`, else "no".
- `identity`: "passed" when the identity control's largest diagonal error is below `IDENTITY_TOL`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from effdepth import curves, stats, zoo
from effdepth.access.controls import controls_of
from effdepth.access.load import load_model
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
from effdepth.data import is_offline_model, load_prompts
from effdepth.data.c4 import c4_texts
from effdepth.measures import linear_maps as maps
from effdepth.measures.linear_maps import SGDRecipe, make_windows, project_paper_setting
from effdepth.plots import linear_maps as figs
from effdepth.plots.linear_maps import pair_label
from effdepth.spec import ModelSpec

MONOTONE = 0.75  # share of forward steps for a best-match path to count as a diagonal
IDENTITY_TOL = 1e-3  # the identity map is affine: its error must vanish up to round-off


def _err(result) -> np.ndarray:
    err = np.asarray(result.relative_error if hasattr(result, "arrays") else result, dtype=float)
    if err.ndim != 2 or min(err.shape) < 2:
        raise ValueError(f"a linear-maps error matrix must be [L1+1, L2+1] with L1, L2 ≥ 1 (got shape {err.shape}).")
    return err


def _forward(path: np.ndarray) -> float:
    return float(np.mean(np.diff(path) >= 0)) if len(path) > 1 else 1.0


def _steps(path) -> str:
    """How a best-match path moves from one layer to the next, in words: the shares of steps that move
    forward, stay and move back; a path that never moves is named as such (its 'forward' share, which
    counts staying, would be 100 % and say nothing about a diagonal)."""
    steps = np.diff(np.asarray(path))
    if not len(steps):
        return "one layer only, so no steps"
    if not steps.any():
        return f"it never moves: every best match is layer {int(path[0])}, so its steps say nothing about a diagonal"
    share = lambda mask: f"{100 * float(np.mean(mask)):.0f} %"  # noqa: E731
    return f"from one layer to the next it moves forward in {share(steps > 0)} of steps, stays in {share(steps == 0)} and moves back in {share(steps < 0)}"


def describe(result) -> dict:
    """The numbers of one result (see the module docstring); `result` is a LinearMaps or its error matrix."""
    err = _err(result)
    L1, L2 = err.shape[0] - 1, err.shape[1] - 1
    inner = err[1:, 1:]
    m = np.arange(1, L1 + 1)
    n = np.arange(1, L2 + 1)
    best = inner.argmin(1) + 1  # best target per source layer
    src_best = inner.argmin(0) + 1  # best source per target layer
    diag = np.array([err[k, int(round(k * L2 / L1))] for k in m])
    col_best = inner.min(0)
    hard = np.argsort(-col_best)[:3] + 1
    row_offset = float(np.abs(best / L2 - m / L1).mean())
    col_offset = float(np.abs(src_best / L1 - n / L2).mean())
    return {
        "L1": L1,
        "L2": L2,
        "mean_error": float(inner.mean()),
        "diag_error": float(diag.mean()),
        "best_error": float(inner.min(1).mean()),
        "best": dict(zip(m.tolist(), best.tolist())),
        "best_src": dict(zip(n.tolist(), src_best.tolist())),
        "dist_stretch": float(np.abs(best - m * L2 / L1).mean()),
        "dist_same": float(np.abs(best - m).mean()),
        "col_dist_stretch": float(np.abs(src_best - n * L1 / L2).mean()),
        "col_dist_same": float(np.abs(src_best - np.minimum(n, L1)).mean()),
        "monotone": _forward(best),
        "col_monotone": _forward(src_best),
        "row_offset": row_offset,
        "col_offset": col_offset,
        "offset": 0.5 * (row_offset + col_offset),
        "row_contrast": float((inner.max(1) - inner.min(1)).mean()),
        "last_best": int(best[-1]),
        "last_best_depth": float(best[-1] / L2),
        "hardest_tgts": [int(k) for k in hard],
        "hardest_tgt_errors": [float(col_best[k - 1]) for k in hard],
        "hardest_tgt_depths": [float(k / L2) for k in hard],
        "easiest_tgt_error": float(col_best.min()),
    }


def reading(d: dict) -> str:
    """Which hypothesis the best matches follow (rule `reading` of the module docstring)."""
    if d["L1"] == d["L2"]:
        return "undetermined"
    rows = d["dist_stretch"] < d["dist_same"]
    cols = d["col_dist_stretch"] < d["col_dist_same"]
    rows_same = d["dist_same"] < d["dist_stretch"]
    cols_same = d["col_dist_same"] < d["col_dist_stretch"]
    if rows and cols:
        return "equal relative depth"
    if rows_same and cols_same:
        return "same layer index"
    return "mixed"


def diagonal(d: dict) -> str:
    return "yes" if reading(d) == "equal relative depth" and min(d["monotone"], d["col_monotone"]) >= MONOTONE else "no"


def vs_control(value: float, control_values, direction: str) -> str:
    """ "differs" / "the control shows the same" / "not distinguishable from the control" (shared rule)."""
    c = np.asarray([v for v in control_values if np.isfinite(v)], dtype=float)
    if not len(c):
        return "no control"
    if stats.differs_from_control(value, c, direction, k=control_k(len(c))):
        return "differs"
    better = value < c.mean() if direction == "less" else value > c.mean()
    return "not distinguishable from the control" if better else "the control shows the same"


def _fmt_pairs(pairs: dict, arrow: str) -> str:
    return ", ".join(f"{a}{arrow}{b}" for a, b in pairs.items())


def findings(result, controls=(), identity=None) -> Findings:
    """Findings of §3.4 for `result` (the trained pair) against its random-target `controls`.

    controls: LinearMaps of the same source mapped to untrained models of the target architecture
    (one per control seed); identity: the target mapped to itself (a pipeline check), optional.
    """
    d = describe(result)
    cds = [describe(c) for c in controls]
    nums = dict(d)
    verdicts = {"reading": reading(d), "diagonal": diagonal(d)}
    text = {}
    c_off = [c["offset"] for c in cds]
    c_con = [c["row_contrast"] for c in cds]
    if cds:
        nums.update(
            control_offsets=c_off,
            control_offset_mean=float(np.mean(c_off)),
            control_offset_bound=stats.control_bound(c_off, "less", k=control_k(len(c_off))),
            control_row_contrasts=c_con,
            control_row_contrast_bound=stats.control_bound(c_con, "greater", k=control_k(len(c_con))),
            control_mean_error=float(np.mean([c["mean_error"] for c in cds])),
            control_diag_error=float(np.mean([c["diag_error"] for c in cds])),
            control_diagonals=[diagonal(c) for c in cds],
            n_controls=len(cds),
        )
        verdicts["vs_control"] = vs_control(d["offset"], c_off, "less")
        verdicts["learned_structure"] = "yes" if vs_control(d["row_contrast"], c_con, "greater") == "differs" else "no"
    else:
        verdicts["vs_control"] = "no control"
        verdicts["learned_structure"] = "not checked against a control"
    if cds:
        verdicts["paper_pattern"] = paper_verdict(verdicts["diagonal"] == "yes", verdicts["vs_control"] == "differs")
        if (
            verdicts["diagonal"] == "yes"
            and verdicts["vs_control"] != "differs"
            and not stats.reachable(nums["control_offset_bound"], "less", (0.0, np.inf))
        ):
            verdicts["paper_pattern"] = NOT_TESTABLE
            verdicts["paper_pattern_reason"] = (
                f"the controls' offsets vary so much that their bound ({nums['control_offset_bound']:.2f}) lies below 0, where no distance can go"
            )
    else:
        verdicts["paper_pattern"] = INCONCLUSIVE if verdicts["diagonal"] == "yes" else NOT_PAPER

    text["matrix_text"] = (
        f"The mean relative error over all {d['L1']}×{d['L2']} pairs is **{d['mean_error']:.3f}**; along the "
        f"equal-relative-depth line it is **{d['diag_error']:.3f}**, and each source layer's best target reaches "
        f"**{d['best_error']:.3f}** on average. Best target per source layer: {_fmt_pairs(d['best'], '→')} "
        f"(source→target), on average {d['dist_stretch']:.2f} layers from m·L₂/L₁ and {d['dist_same']:.2f} from "
        f"n = m; {_steps(list(d['best'].values()))}. Best source per target layer (a reading not "
        f"biased towards deep layers that are easy to predict from anything): {_fmt_pairs(d['best_src'], '←')} "
        f"(target←source), on average {d['col_dist_stretch']:.2f} layers from n·L₁/L₂ and {d['col_dist_same']:.2f} "
        f"from min(n, L₁); {_steps(list(d['best_src'].values()))}. The deep layers worst predicted by any shallow layer are "
        + ", ".join(
            f"{k} (best error {e:.3f}, relative depth {r:.2f})"
            for k, e, r in zip(d["hardest_tgts"], d["hardest_tgt_errors"], d["hardest_tgt_depths"])
        )
        + f"; the best-predicted deep layer reaches {d['easiest_tgt_error']:.3f}."
    )
    text["reading_text"] = {
        "equal relative depth": "Both readings follow **equal relative depth** rather than the same layer index.",
        "same layer index": "Both readings follow **the same layer index** rather than equal relative depth.",
        "mixed": "The two readings disagree: one is closer to equal relative depth, the other to the same index (**mixed**).",
        "undetermined": "Both models have the same depth, so equal relative depth and the same index predict the same layers: **undetermined**.",
    }[verdicts["reading"]]
    if cds:
        text["control_text"] = (
            f"Mean distance from the diagonal, in relative depth (0 = every best match exactly on it): trained "
            f"**{d['offset']:.3f}**, random-target controls {', '.join(f'{x:.3f}' for x in c_off)} "
            f"({len(cds)} seed{'s' if len(cds) > 1 else ''}); to differ from the controls the trained value must lie "
            f"below {nums['control_offset_bound']:.3f} (below every control and below their mean by {control_k(len(cds)):.2f} sd across seeds, a 97.5 % prediction bound for one more seed"
            + (", which one seed cannot give: the bound is that control's value" if len(cds) == 1 else "")
            + f"): **{verdicts['vs_control']}**. Within a source row the error varies by {d['row_contrast']:.3f} for the "
            f"trained target and {', '.join(f'{x:.3f}' for x in c_con)} for the controls: "
            + (
                "training makes the choice of target layer matter more than the controls' spread allows by chance."
                if verdicts["learned_structure"] == "yes"
                else "the controls show as much row structure, so it cannot be attributed to training."
            )
        )
    else:
        text["control_text"] = (
            "No random-target control was run (`controls = False`), so nothing here is attributed to training."
        )
    if identity is not None:
        ierr = _err(identity)
        k = min(ierr.shape)
        diag_max = float(np.max(np.diag(ierr)[:k]))
        off = ierr[~np.eye(*ierr.shape, dtype=bool)]
        nums["identity_diag_max"] = diag_max
        nums["identity_offdiag_mean"] = float(off.mean()) if off.size else float("nan")
        verdicts["identity"] = "passed" if diag_max < IDENTITY_TOL else "failed"
        text["identity_text"] = (
            f"Identity control: the largest diagonal error is **{diag_max:.1e}** "
            + (
                "(≈ 0, as it must be: the pipeline is exact)"
                if verdicts["identity"] == "passed"
                else f"(above {IDENTITY_TOL:g}: **the pipeline is wrong**)"
            )
            + f"; off the diagonal the deep model's own layers predict each other with error {nums['identity_offdiag_mean']:.3f} on average."
        )
    else:
        text["identity_text"] = "The identity control was not run."
    text["verdict_text"] = _verdict_sentence(d, nums, verdicts)
    return Findings(numbers=nums, verdicts=verdicts, text=text)


def _verdict_sentence(d: dict, nums: dict, v: dict) -> str:
    numbers = (
        f"best targets {d['dist_stretch']:.2f} vs {d['dist_same']:.2f} layers from equal relative depth vs the same index; "
        f"best sources {d['col_dist_stretch']:.2f} vs {d['col_dist_same']:.2f}; distance from the diagonal "
        f"{d['offset']:.3f}"
        + (
            f" against {nums['control_offset_mean']:.3f} for the untrained targets"
            if "control_offset_mean" in nums
            else ""
        )
    )
    p = v["paper_pattern"]
    if p == PAPER:
        return f"As in the paper: both readings track equal relative depth, and the trained pair is closer to the diagonal than every untrained control by more than their spread ({numbers})."
    if p == SAME_AS_CONTROL:
        return f"Both readings track equal relative depth, but the untrained targets come (nearly) as close to the diagonal, so this run cannot attribute the diagonal to training: not distinguishable from the control ({numbers})."
    if p == INCONCLUSIVE:
        return f"Both readings track equal relative depth, but no control was run, so this is inconclusive: not evidence of a learned correspondence ({numbers})."
    if p == NOT_TESTABLE:
        return f"Both readings track equal relative depth, but this is not testable here: {v.get('paper_pattern_reason', '')} ({numbers})."
    reason = {
        "equal relative depth": f"the best matches move back in {100 * (1 - min(d['monotone'], d['col_monotone'])):.0f} % of steps, so there is no clean diagonal",
        "same layer index": "both readings are closer to same-index matching",
        "mixed": "one reading favours equal relative depth, the other the same index",
        "undetermined": "the two models have the same depth, so the question does not arise",
    }[v["reading"]]
    return f"This run does not show the paper's diagonal: {reason} ({numbers})."


def absent(why: str) -> Findings:
    """Findings of a run with no model pair: every text says why, so the page's glued slots are filled."""
    keys = ("run", "matrix", "reading", "control", "identity", "verdict", "weighting", "sgd")
    return Findings(
        numbers={}, verdicts={"paper_pattern": NOT_TESTABLE}, text={f"{k}_text": f"Not measured: {why}" for k in keys}
    )


def weighting(result, alt, names: dict) -> Findings:
    """Least squares against 1/‖y‖²-weighted fits: mean errors, the largest difference, same best targets?"""
    a, b = _err(result), _err(alt)
    diff = a - b  # > 0: the alternative is better
    col = diff[1:, 1:].mean(0)
    n_big = int(np.argmax(np.abs(col))) + 1
    best_a, best_b = describe(a)["best"], describe(b)["best"]
    same = best_a == best_b
    this, other = names["this"], names["other"]
    text = (
        f"Mean relative error: {this} **{float(a.mean()):.3f}**, {other} **{float(b.mean()):.3f}**. The largest "
        f"difference is at deep layer {n_big} ({col[n_big - 1]:+.3f} on average over source layers, positive when the "
        f"{other} fit is better). The best-matching target of every source layer is "
        + ("the same under both fits." if same else f"not the same: {_fmt_pairs(best_b, '→')} with the {other} fit.")
    )
    return Findings(
        numbers={
            "weighting_this_error": float(a.mean()),
            "weighting_other_error": float(b.mean()),
            "weighting_largest_diff_layer": n_big,
        },
        verdicts={"same_best_targets": "yes" if same else "no"},
        text={"weighting_text": text},
    )


def run(result, src, tgt, window: int, dataset: str, seed: int) -> Findings:
    """What this run measured: the pair, the windows, the token counts and the fit times."""

    tok = result.tokens
    text = (
        f"This run: **{pair_label(result)}**; source {src.n_layers} layers (d={src.d_model}), target {tgt.n_layers} "
        f"layers (d={tgt.d_model}); {int(np.sum(result.n_windows))} windows of up to {window} tokens cut from "
        f"`{dataset}` texts (seed {seed}): {tok['train']:,} training, {tok['val']:,} validation and {tok['test']:,} "
        f"test tokens. Fit (train + validation passes and the solves) took {float(result.fit_seconds):.1f} s, the "
        f"test pass {float(result.eval_seconds):.1f} s."
    )
    return Findings(numbers={"tokens": tok}, text={"run_text": text})


def sgd(result, sgd_result, label: str) -> Findings:
    """The closed form against the paper's SGD recipe: errors, times, and when SGD came within 0.01.

    `sgd_result` None: the comparison was switched off, and the text says so."""
    if sgd_result is None:
        return Findings(
            verdicts={"sgd_reached_closed_form": "not run"},
            text={"sgd_text": "The SGD comparison was switched off for this run (`compare_sgd = False`)."},
        )
    cf_err, sgd_err = float(np.mean(result.relative_error)), float(np.mean(sgd_result.relative_error))
    cf_t, sgd_t = float(result.fit_seconds), float(sgd_result.fit_seconds)
    steps = np.asarray(sgd_result.arrays.get("sgd_eval_steps", []))
    curve = (
        np.asarray(sgd_result.arrays.get("sgd_eval_error", np.zeros((0,)))).reshape(len(steps), -1).mean(1)
        if len(steps)
        else np.zeros(0)
    )
    times = np.asarray(sgd_result.arrays.get("sgd_eval_seconds", np.zeros(len(steps))))
    reach = [float(t) for t, e in zip(times, curve) if e <= cf_err + 0.01]
    better = int((np.asarray(sgd_result.relative_error) < np.asarray(result.relative_error) - 1e-9).sum())
    n = int(np.asarray(result.relative_error).size)
    text = (
        f"Mean held-out relative error over all {n} pairs (embeddings included): closed form ({label}) **{cf_err:.3f}** "
        f"in {cf_t:.1f} s; SGD **{sgd_err:.3f}** after {int(steps[-1]) if len(steps) else '?'} steps in {sgd_t:.1f} s "
        f"({better} of {n} pairs better with SGD). "
        + (
            f"SGD first came within 0.01 of the closed form's error after {reach[0]:.1f} s, {reach[0] / max(cf_t, 1e-9):.0f}× the closed form's time."
            if reach
            else f"SGD did not come within 0.01 of the closed form's error in this budget: the closed form is at least {sgd_t / max(cf_t, 1e-9):.0f}× faster to the same error."
        )
    )
    return Findings(
        numbers={
            "closed_form_error": cf_err,
            "sgd_error": sgd_err,
            "closed_form_seconds": cf_t,
            "sgd_seconds": sgd_t,
            "sgd_better_pairs": better,
        },
        verdicts={"sgd_reached_closed_form": "yes" if reach else "no"},
        text={"sgd_text": text},
    )


# --- the chapter's setup: what the notebook measures, draws and tabulates ---------------------------

WEIGHTING_NAMES = {"none": "least squares", "relative": "weighted by 1/‖y‖²"}
OTHER_WEIGHTING = {"none": "relative", "relative": "none"}
SWITCHED_OFF = "switched off in the parameters"


@dataclass
class PairRun:
    """What the chapter measured on one model pair: the trained pair's maps (`result`), the identity
    control (the deep model onto itself), the random-target controls (by their label), the fit with
    the other token weighting (`alt`) and the SGD fit; or, with no pair, `why` (`resolve_pair`)
    and nothing else."""

    why: str = ""
    src: object = None
    tgt: object = None
    data_name: str = ""
    result: object = None
    identity: object = None
    random: dict = field(default_factory=dict)
    alt: object = None
    sgd: object = None
    weighting: str = "none"

    @property
    def measured(self) -> bool:
        return self.result is not None

    @property
    def other(self) -> str:
        return OTHER_WEIGHTING[self.weighting]

    def made_by(self) -> str | None:
        """The figures' model slot: 'shallow → deep' by the names the book shows."""

        return (
            f"{ModelSpec.parse(self.src.spec).short_name} → {ModelSpec.parse(self.tgt.spec).short_name}"
            if self.measured
            else None
        )


def sgd_recipe(sgd_steps: int, sgd_batch_windows: int):
    """The paper's SGD recipe scaled to `sgd_steps` steps of `sgd_batch_windows` windows: warm-up a
    fifth of the steps (at most the paper's 200), 8 geometrically spaced evaluations, the training
    windows' residuals cached (SGD's best case)."""

    checkpoints = sorted({int(x) for x in np.unique(np.geomspace(max(1, sgd_steps // 50), sgd_steps, 8).round())})
    return SGDRecipe(
        steps=sgd_steps,
        batch_windows=sgd_batch_windows,
        warmup=min(200, max(1, sgd_steps // 5)),
        eval_at=tuple(checkpoints),
        cache_activations=True,
    )


def measure(
    model,
    src_model=None,
    tgt_model=None,
    *,
    device="cpu",
    dtype="auto",
    remote=False,
    dataset="auto",
    n_windows=400,
    window=128,
    seed=0,
    batch_size=8,
    weighting="none",
    controls=True,
    n_controls=3,
    compare_sgd=True,
    sgd_steps=1000,
    sgd_batch_windows=8,
) -> PairRun:
    """The chapter's measurements (the notebook's parameters): resolve the pair (`resolve_pair`);
    with none, a `PairRun` that says why. Else load both models, cut the windows, fit the maps of the
    pair, of the identity and random-target controls (`controls`), of the other weighting, and with
    the paper's SGD recipe (`compare_sgd`)."""
    src_spec, tgt_spec, why = resolve_pair(model, src_model, tgt_model)
    if src_spec is None:
        return PairRun(why=why, weighting=weighting)
    src = load_model(src_spec, device=device, dtype=dtype, remote=remote)
    tgt = load_model(tgt_spec, device=device, dtype=dtype, remote=remote)
    data_name = resolve_dataset(src.spec, dataset)
    texts = texts_for_windows(src, n_windows, window, seed=seed, dataset=data_name)
    common = dict(window=window, n_windows=n_windows, seed=seed, batch_size=batch_size, weighting=weighting)
    pair = PairRun(src=src, tgt=tgt, data_name=data_name, weighting=weighting)
    pair.result = maps.linear_maps(src, tgt, texts, **common)
    if controls:
        pair.identity = maps.linear_maps(tgt, tgt, texts, **common)
        pair.random = {
            f"random target, seed {s}": maps.linear_maps(src, c, texts, **common)
            for s, c in zip(range(n_controls), controls_of(tgt, range(n_controls)))
        }
    pair.alt = maps.linear_maps(src, tgt, texts, **{**common, "weighting": pair.other})
    if compare_sgd:
        pair.sgd = maps.linear_maps(src, tgt, texts, "sgd", sgd=sgd_recipe(sgd_steps, sgd_batch_windows), **common)
    return pair


def page_findings(pair: PairRun, window: int, seed: int) -> Findings:
    """Every number and sentence the page cites: the rules' findings, the run, the weighting and the
    SGD comparison; with no pair, `absent` (each sentence says why)."""
    if not pair.measured:
        return absent(pair.why)
    names = {"this": WEIGHTING_NAMES[pair.weighting], "other": WEIGHTING_NAMES[pair.other]}
    return (
        findings(pair.result, list(pair.random.values()), identity=pair.identity)
        .merge(run(pair.result, pair.src, pair.tgt, window=window, dataset=pair.data_name, seed=seed))
        .merge(weighting(pair.result, pair.alt, names))
        .merge(sgd(pair.result, pair.sgd, WEIGHTING_NAMES[pair.weighting]))
    )


def paper_setting() -> Findings:
    """The projection of this chapter's cost to the paper's setting (`measures.linear_maps.project_paper_setting`)."""

    return Findings(text={"paper_setting_text": project_paper_setting()["text"]})


FIGURES = ("panels", "relative", "controls", "weighting", "sgd")


def figure(pair: PairRun, which: str) -> tuple:
    """(figure or None, who made it, why it is not drawn) for `plots.show`, one of `FIGURES`: Fig 8
    with its first random-target control, the relative-depth view, the controls, the two weightings,
    closed form against SGD. Not drawn without a pair (`why`), and the controls and SGD panels not
    when switched off in the parameters."""

    if not pair.measured:
        return None, None, pair.why
    if which == "controls" and pair.identity is None or which == "sgd" and pair.sgd is None:
        return None, None, SWITCHED_OFF
    r = pair.result
    draw = {
        "panels": lambda: figs.panels({"Trained pair": r, **dict(list(pair.random.items())[:1])}),
        "relative": lambda: figs.relative_depth(r, others=pair.random),
        "controls": lambda: figs.controls(r, identity=pair.identity, random=next(iter(pair.random.values()))),
        "weighting": lambda: figs.panels(
            {WEIGHTING_NAMES[pair.weighting].capitalize(): r, WEIGHTING_NAMES[pair.other].capitalize(): pair.alt}
        ),
        "sgd": lambda: figs.sgd_comparison(r, pair.sgd),
    }[which]
    return draw(), pair.made_by(), ""


def tables(pair: PairRun) -> list:
    """The page's number tables: each source layer's best target, and the whole error matrix (source
    layer per row, target layer per column); none without a pair."""
    if not pair.measured:
        return []
    return [
        pair.result.best_match(),
        pair.result.to_frame().pivot(index="src_layer", columns="tgt_layer", values="relative_error"),
    ]


def run_info(
    pair: PairRun, model: str, window: int, seed: int, weighting: str, controls: bool, n_controls: int
) -> tuple:
    """(the model the run-info table describes, its other rows): the source model and the run's
    settings, or, with no pair, the requested model and a note that nothing was measured."""
    if not pair.measured:
        return None, {"requested_model": model, "note": "no model pair: nothing measured"}
    r, tgt = pair.result, pair.tgt
    return pair.src, dict(
        target=tgt.spec,
        target_revision=tgt.revision,
        target_layers=tgt.n_layers,
        dataset=pair.data_name,
        n_windows=int(r.n_windows.sum()),
        window=window,
        seed=seed,
        weighting=weighting,
        lambda_rel_median=float(np.median(r.arrays["lam_rel"])),
        method="lstsq (ridge, streamed)",
        controls=controls,
        control_seeds=str(list(range(n_controls))),
    )


def save_curves(pair: PairRun) -> None:
    """The key curves, for the book's side-by-side pages of several models (`effdepth.curves`); nothing
    without a pair."""
    if pair.measured:
        curves.save(
            "linear_maps",
            (f"{pair.src.spec} → {pair.tgt.spec}", pair.tgt.n_layers),
            curves.linear_maps(pair.result, list(pair.random.values())),
        )


# ----------------------------------------------------------------------------------------------
# Data and model pairs (the random-init control is effdepth.access.controls.control_of; the chapter's
# reasoning is effdepth.chapters.linear_maps)
# ----------------------------------------------------------------------------------------------


def resolve_dataset(model_spec: str, dataset: str = "auto") -> str:
    """'auto' → 'zoo' (the zoo's own text distribution) for zoo / test models, 'c4' (the paper's) otherwise."""
    if dataset != "auto":
        return dataset

    return "zoo" if is_offline_model(model_spec) else "c4"


def default_texts(model_spec: str, n: int, seed: int = 0, dataset: str = "auto") -> list[str]:
    """Texts to cut windows from: the zoo's own distribution for zoo / test models, C4 otherwise."""

    dataset = resolve_dataset(model_spec, dataset)
    if dataset == "c4":
        return c4_texts(n=n, seed=seed)
    return load_prompts(dataset, n=n, seed=seed, model_spec=model_spec)


def texts_for_windows(
    model, n_windows: int, window: int, seed: int = 0, dataset: str = "auto", max_texts: int = 1_000_000
) -> list[str]:
    """Enough texts of `dataset` to fill `n_windows` windows of `window` tokens (seeded).

    A first draw of `n_windows` texts measures how many windows a text fills; the second draw is
    sized from it (with a margin), and drawing repeats, growing, until the windows are enough.
    """
    n = max(8, n_windows)
    while True:
        texts = default_texts(model.spec, n, seed, dataset)
        have = len(make_windows(model.tokenizer, texts, window))
        if have >= n_windows or len(texts) < n or n >= max_texts:
            return texts
        n = min(max_texts, max(2 * n if have == 0 else int(n * n_windows / have * 1.15) + 1, n + 1))


def resolve_pair(
    model: str, src_model: str | None = None, tgt_model: str | None = None
) -> tuple[str | None, str | None, str]:
    """(source, target, reason) for the chapter: the given pair, the zoo pair for a zoo model, or none.

    With no pair, `reason` explains what the chapter needs (a shallow and a deep model sharing a
    tokenizer), so the notebook can say so instead of failing.
    """
    if src_model and tgt_model:
        return str(src_model), str(tgt_model), ""
    if src_model or tgt_model:
        return (
            None,
            None,
            (
                f"Only one model of the pair was given (src_model={src_model!r}, tgt_model={tgt_model!r}); "
                "this chapter maps a shallow model's residuals onto a deep model's: give both."
            ),
        )
    if ModelSpec.parse(model).is_zoo:
        return f"zoo:{zoo.SHALLOW}", f"zoo:{zoo.DEEP}", ""
    return (
        None,
        None,
        (
            f"This chapter compares two models, a shallow one and a deep one **sharing a tokenizer** (the "
            f"paper: `Qwen/Qwen2.5-1.5B` → `Qwen/Qwen2.5-14B`); `{model}` alone is not a pair. Run it with "
            "`src_model` and `tgt_model` set, e.g. `effdepth run --model Qwen/Qwen2.5-14B --chapters linear_maps "
            "--set src_model=Qwen/Qwen2.5-1.5B --set tgt_model=Qwen/Qwen2.5-14B`. Nothing is shown for this run."
        ),
    )
