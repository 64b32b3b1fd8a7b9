"""§3.2 reasoning: from skip-test results (trained model AND random-init controls) to findings.

Input: `SkipEffects` of the trained model in the current and the future setting, and the same
measurements of its random-init controls (one per control seed, same prompts). Optionally the
attention-only / MLP-only parts and the local (direct) effects. Output: a `Findings` object.

Every relative change is clipped to [0, 1] per position by the measurement (the paper's colour
scale): one position where ‖Δ_l‖ is tiny would otherwise give entries of 250 that drive every
average. The rules (the methods page states them, with their simulated error rates):

- **"Second-half layers change later layers' computation less"** (current and future setting;
  `HALVES[setting]`). Per prompt, every skipped layer s < L − k is scored by its largest effect on
  the next k = max(1, L // 4) layers (the same number of entries for every s), and the statistic
  is the first-half mean score minus the second-half mean (`halves_diffs`), on the per-prompt max
  matrices the heatmap shows; when more than half of the scored entries of those matrices are
  saturated (≥ 0.99: the max cannot rank layers), on the per-prompt mean matrices instead (said on
  the page). `verdicts.decide`: threshold 0.1, margin 0.1 over the control.
- **"Late layers refine the current prediction rather than feed future tokens"** (Fig 17, `OUTPUT`).
  Per prompt (the future prompts are the first ones of the current setting):
  log(f1/f2) − log(c1/c2), where c1, c2 (f1, f2) are the mean output change of first- and second-half
  skipped layers in the current (future) setting: how much more the late layers' effect falls for
  future tokens than for the current one. Threshold log 2, margin log 1.5. An untrained model's
  output barely moves (output changes ≈ 0.001: its output is near uniform), so the control is
  compared only where its output change reaches `OUTPUT_FLOOR`; else the verdict rests on the
  threshold and the page says why.
- Descriptive numbers with the control's beside them: the permutation test of the summed matrices
  (`stats.halves`), the per-example share, attention vs MLP, local effects, saturation.
"""

from __future__ import annotations

import numpy as np

from effdepth import stats, verdicts
from effdepth.chapters import CONTROL_TOO, NOT_PAPER, NOT_TESTABLE, PAPER, Findings, record
from effdepth.spec import ModelSpec

ALPHA = 0.05
SATURATED = 0.5  # share of scored entries at ≥ SATURATION_LEVEL above which the max matrix cannot rank layers
SATURATION_LEVEL = 0.99
OUTPUT_FLOOR = 0.01  # a control whose mean output change is below this cannot fail any comparison
MIN_LAYERS = 4  # under 4 layers no second-half layer has a later layer to score
SETTINGS = ("current", "future")
AGGS = ("max", "mean")

_PAPER_HALVES = {
    "current": "Llama 3.1 70B (Fig 3a): first-half layers change the next layers' computation strongly (relative change up to 1), second-half layers barely (below about 0.2)",
    "future": "Llama 3.1 70B (Fig 3b): second-half layers barely change what later layers compute for future tokens; first-half layers do",
}
HALVES = {
    name: verdicts.Rule(
        name=f"skipping.{name}",
        statistic=f"per prompt ({name} setting): mean over first-half skipped layers of their largest clipped effect on the next k layers, minus the same over second-half layers",
        direction=+1,
        threshold=0.1,
        margin=0.1,
        effect="second-half layers change the next layers by at least 0.1 less relative change than first-half layers do, and 0.1 less than in the control",
        paper=_PAPER_HALVES[name],
    )
    for name in SETTINGS
}
OUTPUT = verdicts.Rule(
    name="skipping.output",
    statistic="per prompt: log(f1/f2) − log(c1/c2), the mean output change of first- (1) and second-half (2) skipped layers in the future (f) and current (c) setting",
    direction=+1,
    threshold=float(np.log(2)),
    margin=float(np.log(1.5)),
    effect="late layers' effect on future tokens falls at least twice as much (relative to early layers) as their effect on the current token",
    paper="Llama 3.1 70B (Fig 17): second-half layers still change the current token's output distribution but barely the future tokens'",
)


def default_k(n_layers: int) -> int:
    """Later layers each skipped layer is scored on: max(1, L // 4), at most L − 2."""
    return int(min(max(1, n_layers // 4), max(n_layers - 2, 1)))


def output_halves(result, future: bool, agg: str = "max") -> tuple[float, float]:
    """Mean output change o[s] of first-half (s < L/2) and second-half skipped layers; in the future
    setting the last layer (0 by construction) is left out."""
    o = np.asarray(result.output_effect if agg == "max" else result.mean_output_effect, dtype=float)
    return tuple(float(x) for x in _out_halves(o[None], future)[:, 0])


def _out_halves(o: np.ndarray, future: bool) -> np.ndarray:
    """[2, P]: first- and second-half mean of per-prompt output changes o [P, L]."""
    L = o.shape[1]
    s = np.arange(L - 1 if future else L)
    return np.stack([o[:, s[s < L / 2]].mean(axis=1), o[:, s[s >= L / 2]].mean(axis=1)])


def scored_entries(M: np.ndarray, k: int) -> np.ndarray:
    """The entries the halves score reads, M[..., s, s+1 … s+k] for s < L − k: [..., L − k, k]."""
    L = M.shape[-1]
    return np.stack([M[..., s, s + 1 : s + 1 + k] for s in range(L - k)], axis=-2)


def saturation(result, k: int | None = None) -> float:
    """Share of the scored entries of the per-prompt max matrices (the halves score's inputs) at the top
    of the colour scale (≥ 0.99)."""
    ex = np.asarray(result.example_layer_effect, dtype=float)
    ex = ex[~np.isnan(ex).all(axis=(1, 2))]
    k = k or default_k(ex.shape[-1])
    e = scored_entries(np.clip(ex, 0, 1), k)
    return float(np.mean(e >= SATURATION_LEVEL)) if e.size else float("nan")


def aggregation(result, k: int | None = None) -> str:
    """'max' (the paper's, what the heatmap shows) unless its scored entries are saturated, then 'mean'."""
    sat = saturation(result, k)
    return "mean" if np.isfinite(sat) and sat > SATURATED else "max"


def halves_diffs(result, agg: str = "max", k: int | None = None) -> np.ndarray:
    """Per prompt: first-half mean minus second-half mean of the halves scores (the HALVES statistic),
    on the clipped per-prompt max (agg 'max') or mean ('mean') matrices."""
    ex = np.asarray(result.example_layer_effect if agg == "max" else result.example_mean_layer_effect, dtype=float)
    L = ex.shape[-1]
    k = k or default_k(L)
    sc = scored_entries(np.clip(ex, 0, 1), k).max(axis=-1)  # [P, L − k]
    first = np.arange(L - k) < L / 2
    with np.errstate(invalid="ignore"):
        return sc[:, first].mean(axis=1) - sc[:, ~first].mean(axis=1)


def output_diffs(cur, fut) -> np.ndarray:
    """Per prompt of the future setting (the first prompts of the current one): log(f1/f2) − log(c1/c2)
    (the OUTPUT statistic)."""
    c = _out_halves(np.asarray(cur.example_output_effect, float), False)
    f = _out_halves(np.asarray(fut.example_output_effect, float), True)
    n = min(c.shape[1], f.shape[1])
    c, f = np.clip(c[:, :n], 1e-9, None), np.clip(f[:, :n], 1e-9, None)
    return np.log(f[0] / f[1]) - np.log(c[0] / c[1])


def halves_verdict(name: str, res, controls: list, k: int | None = None) -> tuple[verdicts.Verdict, str]:
    """The HALVES rule of one setting, and the aggregation it ran on."""
    L = np.asarray(res.layer_effect).shape[0]
    if L < MIN_LAYERS:
        return verdicts.decide(
            HALVES[name], [], not_testable=f"with {L} layers no second-half layer has a later layer to score"
        ), "max"
    agg = aggregation(res, k)
    return verdicts.decide(HALVES[name], halves_diffs(res, agg, k), [halves_diffs(c, agg, k) for c in controls]), agg


def output_verdict(cur, fut, cur_c: list, fut_c: list) -> verdicts.Verdict:
    L = np.asarray(cur.layer_effect).shape[0]
    if L < MIN_LAYERS:
        return verdicts.decide(OUTPUT, [], not_testable=f"with {L} layers there are no two halves of skipped layers")
    floor = [float(np.nanmean(np.asarray(c.example_output_effect, float))) for c in cur_c]
    degenerate = ""
    if floor and max(floor) < OUTPUT_FLOOR:
        degenerate = (
            f"the random-init control's output barely moves (mean output change {max(floor):.4f}: its output is near uniform), "
            "so a comparison with it cannot fail; the verdict rests on the threshold alone"
        )
    return verdicts.decide(
        OUTPUT, output_diffs(cur, fut), [output_diffs(c, g) for c, g in zip(cur_c, fut_c)], degenerate=degenerate
    )


def _fmt(x: float, nd: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _range(values, pct: bool = False) -> str:
    v = [x for x in values if np.isfinite(x)]
    one = (lambda x: f"{x:.0%}") if pct else _fmt
    if not v:
        return "n/a"
    return one(v[0]) if len(v) == 1 or min(v) == max(v) else f"{one(min(v))}–{one(max(v))}"


_WHAT = {
    "current": "later layers' computation at the same token",
    "future": "later layers' computation at future tokens",
}


def _verdict_sentence(v: verdicts.Verdict, what: str) -> str:
    return {
        PAPER: f"**As in the paper**, second-half layers change {what} less than first-half layers do, by more than in the random-init control.",
        CONTROL_TOO: f"Second-half layers change {what} less than first-half layers do, but **the untrained architecture shows it too**: untrained pre-norm networks of this shape have the same gap.",
        NOT_PAPER: f"**Unlike the paper**, second-half layers do not change {what} less than first-half layers do here (or less so than in the control).",
        NOT_TESTABLE: f"Not testable here: {v.reason}.",
    }.get(v.state, f"Whether second-half layers change {what} less is **{v.words()}**.")


def _setting_findings(name: str, res, controls: list, k: int | None, n_perm: int, seed: int) -> Findings:
    f = Findings()
    L = np.asarray(res.layer_effect).shape[0]
    f.numbers[f"{name}_diag"] = float(np.mean(np.diag(np.asarray(res.layer_effect, float))))
    v, agg = halves_verdict(name, res, controls, k)
    record(f, f"{name}_paper_pattern", v, HALVES[name])
    f.text[f"{name}_verdict"] = _verdict_sentence(v, _WHAT[name])
    if L < MIN_LAYERS:
        for key in ("saturation", "examples", "max_numbers", "mean_numbers"):
            f.text[f"{name}_{key}"] = ""
        return f
    kk = k or default_k(L)
    for a in AGGS:
        d = verdicts.Estimate.of(halves_diffs(res, a, k))
        cd = [np.nanmean(halves_diffs(c, a, k)) for c in controls]
        h = stats.halves(
            np.clip(np.asarray(res.layer_effect if a == "max" else res.mean_layer_effect, float), 0, 1),
            k=kk,
            n_perm=n_perm,
            seed=seed,
            alpha=ALPHA,
        )
        f.numbers.update(
            {
                f"{name}_{a}_first": h["first"],
                f"{name}_{a}_second": h["second"],
                f"{name}_{a}_diff": d.mean,
                f"{name}_{a}_p_less": h["p_less"],
            }
        )
        f.text[f"{name}_{a}_numbers"] = (
            f"per prompt, first-half minus second-half score {_fmt(d.mean)} (mean over {d.n} prompts; random-init control "
            f"{_range(cd)} over {len(cd)} seed(s)); on the matrix of all prompts, first half {_fmt(h['first'])}, second half "
            f"{_fmt(h['second'])} (permutation p = {_fmt(h['p_less'], 3)} that the second half is less)"
            + (" — the verdict rests on this aggregation" if a == agg else "")
        )
    f.numbers[f"{name}_k"] = int(kk)
    sat = saturation(res, k)
    f.numbers[f"{name}_saturated"] = sat
    f.text[f"{name}_saturation"] = (
        f"{sat:.0%} of the entries the halves score reads (each skipped layer's next {kk} layers, per prompt) reach the top of "
        "the colour scale (≥ 0.99): the max matrix cannot rank layers here, so the verdict uses the per-prompt mean matrices."
        if agg == "mean"
        else f"{sat:.0%} of the entries the halves score reads reach the top of the colour scale, so the max matrix still ranks layers."
    )
    share = per_example_share(res, k)
    cshare = [per_example_share(c, k)["share"] for c in controls]
    f.numbers.update(
        {f"{name}_example_share": share["share"], f"{name}_example_p": share["p"], f"{name}_example_n": share["n"]}
    )
    f.text[f"{name}_examples"] = (
        f"In {share['share']:.0%} of the {share['n']} prompts the second-half layers change the next layers less than the "
        f"first-half layers do; in the random-init control {_range(cshare, pct=True)}."
    )
    return f


def _output_findings(cur, fut, cur_c: list, fut_c: list) -> Findings:
    f = Findings()
    v = output_verdict(cur, fut, cur_c, fut_c)
    record(f, "output_paper_pattern", v, OUTPUT)
    if v.state == NOT_TESTABLE and np.asarray(cur.layer_effect).shape[0] < MIN_LAYERS:
        f.text.update(
            {"output_verdict": f"Not testable here: {v.reason}.", "output_max_numbers": "", "output_mean_numbers": ""}
        )
        return f
    for agg in AGGS:
        c1, c2 = output_halves(cur, False, agg)
        f1, f2 = output_halves(fut, True, agg)
        cc = [output_halves(c, False, agg) for c in cur_c]
        f.numbers.update(
            {
                f"output_{agg}_current_first": c1,
                f"output_{agg}_current_second": c2,
                f"output_{agg}_future_first": f1,
                f"output_{agg}_future_second": f2,
            }
        )
        f.text[f"output_{agg}_numbers"] = (
            f"first-half layers change the current token's output by {_fmt(c1, 3)} and future tokens' by {_fmt(f1, 3)}; "
            f"second-half layers by {_fmt(c2, 3)} and {_fmt(f2, 3)} (random-init control, current token: "
            f"{_range([x[0] for x in cc])} and {_range([x[1] for x in cc])})"
        )
    base = (
        f"Per prompt, the late layers' effect falls for future tokens by log(f1/f2) − log(c1/c2) = {_fmt(v.effect)} more than for "
        f"the current token (mean over {v.n} prompts, interval {_fmt(v.lo)} to {_fmt(v.hi)}; the paper's pattern needs at least "
        f"{_fmt(OUTPUT.threshold)} = log 2). "
    )
    f.text["output_verdict"] = (
        base
        + {
            PAPER: "**As in the paper**, late layers refine the current prediction rather than compute features for future tokens.",
            CONTROL_TOO: "The late layers do matter less for future tokens, but **the untrained architecture shows it too**.",
            NOT_PAPER: "**Unlike the paper**, late layers matter for future tokens relatively as much as for the current one here.",
            NOT_TESTABLE: f"Not testable here: {v.reason}.",
        }.get(v.state, f"The claim is **{v.words()}**.")
        + (f" ({v.reason}.)" if v.reason and v.state != NOT_TESTABLE else "")
    )
    return f


def per_example_share(result, k: int | None = None) -> dict:
    """Share of prompts whose second-half layers change the next layers less (per-prompt clipped max
    matrices, equal entries per skipped layer), with a one-sided sign test against 1/2."""
    d = halves_diffs(result, "max", k)
    t = stats.sign_test(d)
    return {"share": t["n_pos"] / t["n"] if t["n"] else float("nan"), "n": t["n"], "p": t["p"]}


def _upper_mean(M: np.ndarray) -> float:
    L = M.shape[0]
    return float(np.mean([M[s, s + 1 :].max() for s in range(L - 1)])) if L > 1 else float("nan")


def parts_findings(parts: dict, control_parts: dict | None = None) -> Findings:
    """Attention-only vs MLP-only skipping. parts: {(setting, 'attention'|'mlp'): SkipEffects} of the
    model, control_parts the same of one control. Numbers: the mean over skipped layers of the
    largest effect on a later layer (mean aggregation); descriptive, no paper verdict."""
    f = Findings()
    rows = []
    for setting in SETTINGS:
        vals = {}
        for part in ("attention", "mlp"):
            if (setting, part) not in parts:
                continue
            vals[part] = _upper_mean(np.asarray(parts[(setting, part)].mean_layer_effect, float))
            f.numbers[f"parts_{setting}_{part}"] = vals[part]
            if control_parts and (setting, part) in control_parts:
                f.numbers[f"parts_{setting}_{part}_control"] = _upper_mean(
                    np.asarray(control_parts[(setting, part)].mean_layer_effect, float)
                )
        if len(vals) == 2:
            ctl = ""
            if control_parts and (setting, "attention") in control_parts:
                ctl = f" (random-init control: {_fmt(f.numbers[f'parts_{setting}_attention_control'])} vs {_fmt(f.numbers[f'parts_{setting}_mlp_control'])})"
            rows.append(f"{setting} setting: attention {_fmt(vals['attention'])} vs MLP {_fmt(vals['mlp'])}{ctl}")
    stronger = (
        "MLP"
        if f.numbers.get("parts_current_mlp", np.nan) > f.numbers.get("parts_current_attention", np.nan)
        else "attention"
    )
    f.verdicts["parts_stronger"] = stronger
    f.text["parts_summary"] = (
        "Averaged over skipped layers, the largest mean effect on a later layer is, in the "
        + "; in the ".join(rows)
        + f". Removing the {stronger} writes changes later computation more in this model."
    )
    return f


def local_findings(local, skip, control_local=None) -> Findings:
    """Local (direct) effects: the strongest direct dependency (mean aggregation) and the share of the
    total skip effect right of the diagonal that is direct; the control's share beside it."""
    f = Findings()

    def above(M):
        M = np.array(M, dtype=float)
        M[np.tril_indices(M.shape[0])] = np.nan
        return M

    E = above(local.mean_layer_effect)
    if np.isnan(E).all():
        f.text["local_summary"] = "With one layer there is no later layer to read a direct write."
        return f
    s, l = np.unravel_index(np.nanargmax(E), E.shape)
    total = np.nanmean(above(skip.mean_layer_effect))
    share = float(np.nanmean(E) / total) if total > 0 else float("nan")
    f.numbers.update(
        {"local_source": int(s), "local_reader": int(l), "local_value": float(E[s, l]), "local_share": share}
    )
    ctl = ""
    if control_local is not None:
        Ec = above(control_local.mean_layer_effect)
        f.numbers["local_control_max"] = float(np.nanmax(Ec))
        ctl = f" The random-init control's strongest direct dependency is {_fmt(np.nanmax(Ec))}."
    f.text["local_summary"] = (
        f"By the mean, the strongest direct dependency is layer {l} reading layer {s} (relative change {_fmt(E[s, l])}; "
        f"max aggregation {_fmt(float(np.asarray(local.layer_effect)[s, l]))}). Direct effects are on average {_fmt(share * 100, 0)} % "
        f"of the total (skip) effects right of the diagonal; the rest flows through intermediate layers.{ctl}"
    )
    return f


def run_findings(
    lm,
    dataset: str,
    cur_prompts: list,
    fut_prompts: list,
    n_tokens,
    seed: int,
    n_controls: int,
    note: str = "",
    n_detail: int | None = None,
) -> Findings:
    """The sentence naming what this run measured (model, prompts, controls); `note`: where the data
    came from when that needs saying (`effdepth.data.data_note`); `n_detail`: prompts of the
    attention/MLP and local-effect breakdowns, named when fewer than the current setting's."""
    n_tok = np.asarray(n_tokens)
    f = Findings(
        numbers={"n_layers": lm.n_layers, "n_prompts_current": len(cur_prompts), "n_prompts_future": len(fut_prompts)}
    )
    f.text["run"] = (
        f"This run: **{ModelSpec.parse(lm.spec).short_name}** ({lm.adapter.family} family, {lm.n_layers} layers, d={lm.d_model}), {len(cur_prompts)} prompts for "
        f"the current setting and {len(fut_prompts)} for the future one (from the `{dataset}` distribution, seed {seed}; "
        f"{n_tok.min()}–{n_tok.max()} tokens), each measured on the model and (the first prompts of each setting) on {n_controls} random-init control(s) of the "
        f"same architecture. {note + ' ' if note else ''}{_detail_sentence(n_detail, len(cur_prompts), len(fut_prompts))}Example prompt: `{cur_prompts[0][:120]!r}`"
    )
    return f


def _detail_sentence(n_detail: int | None, n_cur: int, n_fut: int) -> str:
    if n_detail is None or n_detail >= max(n_cur, n_fut):
        return ""
    return (
        f"The attention/MLP and local-effect breakdowns, which repeat the measurement once per part, use the first "
        f"{n_detail} prompt(s) of each setting (`detail_examples`, sized for this machine). "
    )


def findings(
    cur, fut, controls_cur: list, controls_fut: list, k: int | None = None, n_perm: int = 2000, seed: int = 0
) -> Findings:
    """The chapter's findings: halves of both settings, the output claim, per-example shares, against
    the controls (one `SkipEffects` per control seed in each list, the same seeds in the same order)."""
    if len(controls_cur) != len(controls_fut):
        raise ValueError(
            f"controls_cur and controls_fut must hold the same control seeds (got {len(controls_cur)} and {len(controls_fut)})."
        )
    f = Findings()
    f = f.merge(_setting_findings("current", cur, list(controls_cur), k, n_perm, seed))
    f = f.merge(_setting_findings("future", fut, list(controls_fut), k, n_perm, seed))
    f = f.merge(_output_findings(cur, fut, list(controls_cur), list(controls_fut)))
    f.numbers["n_controls"] = len(controls_cur)
    states = [f.verdicts[f"{s}_paper_pattern_state"] for s in SETTINGS] + [f.verdicts["output_paper_pattern_state"]]
    f.numbers["n_paper"] = sum(v == PAPER for v in states)
    f.verdicts["paper_pattern"] = verdicts.combine(states)
    f.text["summary"] = (
        f"Of the paper's {len(states)} §3.2 findings (less effect of second-half layers on the same token's and on future "
        f"tokens' computation; late layers refining the current prediction), against {len(controls_cur)} random-init "
        f"control seed(s): {verdicts.tally(states)}."
    )
    return f


PART_NAMES = {"attention": "Attention only", "mlp": "MLP only"}


def part_panels(parts: dict, control_parts: dict) -> dict:
    """The attention/MLP breakdown's panels in reading order, by title: for the model, then its
    control, each setting (current, future) with attention then MLP; `parts` and `control_parts`
    map (setting, part) to a skip result."""
    return {
        f"{PART_NAMES[p]}, {m}{tag}": src[(m, p)]
        for tag, src in (("", parts), (" (control)", control_parts))
        for m in ("current", "future")
        for p in ("attention", "mlp")
    }


def split_findings(future, n_splits: int, split_step: int) -> Findings:
    """How many split points each prompt of the future setting really got (`split_points` [P, n_splits],
    -1 = none): a prompt of T tokens has a split point only at multiples of `split_step` below T - 4,
    so short prompts get fewer than `n_splits`."""

    per_prompt = (np.asarray(future.split_points) >= 0).sum(axis=1)
    counts = {int(k): int(v) for k, v in zip(*np.unique(per_prompt, return_counts=True))}
    spread = ", ".join(f"{v} prompt{'s' if v != 1 else ''} with {k}" for k, v in sorted(counts.items(), reverse=True))
    text = (
        f"up to {n_splits} per prompt were asked for (multiples of {split_step}, at least 4 tokens before the end); "
        f"these prompts got {spread} ({int(per_prompt.sum())} split points in all)"
    )
    return Findings(
        numbers={"splits_total": int(per_prompt.sum()), "splits_max": int(per_prompt.max(initial=0))},
        text={"split_text": text},
    )
