"""§3.2 reasoning: from skip-test results (trained model AND random-init controls) to findings.

Input: `SkipEffects` of the trained model in the current and the future setting, and the same
measurements of its random-init controls (one per control seed, same prompts). Optionally the
attention-only / MLP-only parts and the local (direct) effects. Output: a `Findings` object.

The paper's claims (Csordás et al. §3.2) and the rules that test them (book/methods/skipping-rules.md
states the same):

- **"Second-half layers change later layers' computation less"** (current and future setting).
  `stats.halves` scores every skipped layer s by the max of its effect on the SAME number of later
  layers, the next k = max(1, L // 4) (the old summary took a max over all L−1−s later layers, so
  early layers drew from more entries and "second half less" came out 83–90 % of the time on noise),
  and tests first − second half against a permutation null of the same matrix (one-sided, α = 0.05).
  The trained model *shows* the pattern when that test says "second half less". It *differs from the
  control* when its ratio second/first lies below `stats.control_bound(control ratios, "less")`:
  below every control seed and below their mean by more than `chapters.control_k(n)` spreads (the
  97.5 % prediction bound for one more seed: 4.97 for 3 seeds), the spread combining
  the sd across control seeds and the trained ratio's own standard error (a bootstrap over prompts);
  with fewer than MIN_CONTROLS (3) control seeds nothing differs (the seeds' spread is not estimated). `paper_pattern` per setting and aggregation (max = the paper's, mean) is
  `chapters.paper_verdict(shows, differs)`; the setting's verdict is "yes" only when both
  aggregations say "yes".
- **"Late layers refine the current prediction rather than feed future tokens"** (Fig 17).
  `output_ratio` = (future / current output change of second-half layers) ÷ (the same of first-half
  layers), the future setting's last layer left out (0 by construction). Shown when below
  OUTPUT_LESS = 0.8; differs from the control when below `control_bound(control output ratios, "less")`.
- Descriptive numbers with the control's beside them, no paper verdict: the per-example share of
  prompts whose second half is less (with a sign test against 1/2), attention vs MLP, the strongest
  direct dependency of the local effects, the share of saturated entries (relative change ≥ 1).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import stats
from . import NOT_PAPER, PAPER, SAME_AS_CONTROL, Findings, control_k, paper_verdict
from ..plots import short_name

MIN_CONTROLS = 3  # fewer control seeds do not estimate the seeds' spread: no finding is then the paper's
ALPHA = 0.05
OUTPUT_LESS = 0.8  # late layers' future/current output ratio must be below this share of the early layers'
SATURATED = 0.5  # share of entries right of the diagonal at ≥ 1 above which the max matrix cannot rank layers
MIXED = "mixed"  # the two aggregations disagree
TOO_FEW = "too few layers"  # under 4 layers no second-half layer has a later layer to score
SETTINGS = ("current", "future")
AGGS = ("max", "mean")


def default_k(n_layers: int) -> int:
    """Later layers each skipped layer is scored on: max(1, L // 4), at most L − 2."""
    return int(min(max(1, n_layers // 4), max(n_layers - 2, 1)))


def _matrix(result, agg: str) -> np.ndarray:
    return np.asarray(result.layer_effect if agg == "max" else result.mean_layer_effect, dtype=float)


def _ratio(second: float, first: float) -> float:
    return float(second / first) if first > 0 else float("nan")


def halves_of(result, agg: str = "max", k: int | None = None, n_perm: int = 2000, seed: int = 0) -> dict:
    """`stats.halves` of one result's max or mean matrix, plus `ratio` = second / first."""
    M = _matrix(result, agg)
    h = stats.halves(M, k=k or default_k(M.shape[0]), reduce="max", n_perm=n_perm, seed=seed, alpha=ALPHA)
    h["ratio"] = _ratio(h["second"], h["first"])
    return h


N_BOOT = 200


def _scores_next_k(M: np.ndarray, k: int) -> tuple[float, float]:
    L = M.shape[0]
    sc = stats.next_k_scores(M, k)
    first = np.arange(L - k) < L / 2
    return float(sc[first].mean()), float(sc[~first].mean())


def _prompt_boot(result, stat, agg: str, seed: int = 0, n_boot: int = N_BOOT) -> float:
    """Standard error of stat(matrix) over prompts resampled with replacement, the matrix being the
    max (agg 'max') or mean ('mean') of the per-prompt max matrices; NaN without per-prompt data.
    (Per-prompt mean matrices are not kept, so the mean aggregation's spread is estimated from the
    per-prompt max matrices.)"""
    ex = getattr(result, "example_layer_effect", None)
    if ex is None:
        return float("nan")
    ex = np.asarray(ex, float)
    ex = ex[~np.isnan(ex).all(axis=(1, 2))]
    if len(ex) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    red = np.max if agg == "max" else np.mean
    vals = [stat(red(ex[rng.integers(0, len(ex), len(ex))], axis=0)) for _ in range(n_boot)]
    vals = np.asarray(vals, float)
    return float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else float("nan")


def _spread(control_values, own_se: float) -> float:
    """√(sd across control seeds² + the trained value's own standard error²): a trained model is one
    draw too, so the controls' seed spread alone would let a fourth draw 'differ' too often."""
    c = np.asarray([x for x in control_values if np.isfinite(x)], float)
    sd = float(c.std(ddof=1)) if c.size > 1 else 0.0
    return float(np.sqrt(sd**2 + (own_se if np.isfinite(own_se) else 0.0) ** 2))


def output_halves(result, future: bool, agg: str = "max") -> tuple[float, float]:
    """Mean output change o[s] of first-half (s < L/2) and second-half skipped layers; in the future
    setting the last layer (0 by construction) is left out."""
    o = np.asarray(result.output_effect if agg == "max" else result.mean_output_effect, dtype=float)
    L = o.shape[0]
    o = o[: L - 1] if future else o
    s = np.arange(o.shape[0])
    return float(np.mean(o[s < L / 2])), float(np.mean(o[s >= L / 2])) if (s >= L / 2).any() else float("nan")


def output_ratio(cur, fut, agg: str = "max") -> float:
    """(future / current output change of second-half layers) ÷ (the same of first-half layers):
    below 1 when late layers matter relatively less for future tokens than early layers do."""
    c1, c2 = output_halves(cur, False, agg)
    f1, f2 = output_halves(fut, True, agg)
    early, late = _ratio(f1, c1), _ratio(f2, c2)
    return _ratio(late, early)


def per_example_share(result, k: int | None = None) -> dict:
    """Share of prompts whose second-half layers change later layers less (per-example matrices,
    equal entries per skipped layer as in `halves`), with a one-sided sign test against 1/2."""
    ex = np.asarray(result.example_layer_effect, dtype=float)
    L = ex.shape[1]
    k = k or default_k(L)
    diffs = []
    for M in ex:
        if np.isnan(M).all():
            continue
        sc = stats.next_k_scores(M, k, np.nanmax)
        first = np.arange(L - k) < L / 2
        diffs.append(float(sc[first].mean() - sc[~first].mean()))
    t = stats.sign_test(diffs)
    return {"share": t["n_pos"] / t["n"] if t["n"] else float("nan"), "n": t["n"], "p": t["p"]}


def saturation(result) -> float:
    """Share of the max matrix's entries right of the diagonal that reach 1 (relative change ≥ 1)."""
    E = np.asarray(result.layer_effect, dtype=float)
    upper = E[np.triu_indices(E.shape[0], 1)]
    return float(np.mean(upper >= 1)) if upper.size else float("nan")


def _combine(a: str, b: str) -> str:
    """The setting's verdict from the max and the mean aggregation's: the same when they agree;
    "mixed" for yes + no; "not distinguishable from the control" for yes + that; "no" when one
    aggregation does not show the pattern and the other shows it only as the control does."""
    if a == b:
        return a
    if PAPER in (a, b):
        return MIXED if NOT_PAPER in (a, b) else SAME_AS_CONTROL
    return NOT_PAPER


def _fmt(x: float, nd: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _range(values, pct: bool = False) -> str:
    v = [x for x in values if np.isfinite(x)]
    one = (lambda x: f"{x:.0%}") if pct else _fmt
    if not v:
        return "n/a"
    return one(v[0]) if len(v) == 1 or min(v) == max(v) else f"{one(min(v))}–{one(max(v))}"


_WHAT = {"current": "later layers' computation at the same token", "future": "later layers' computation at future tokens"}

_SENTENCE = {
    PAPER: "As in the paper, second-half layers change {what} less than first-half layers do, and by more than in the random-init control.",
    SAME_AS_CONTROL: (
        "Second-half layers change {what} less than first-half layers do, but not by more than the random-init controls' "
        "spread, so this is not evidence of anything learned: untrained pre-norm networks of this shape show it too."
    ),
    NOT_PAPER: "Second-half layers do not change {what} measurably less than first-half layers here (unlike the paper's Llama 3.1 70B).",
    MIXED: "The two aggregations disagree on whether second-half layers change {what} less than the random-init control would.",
}


def _setting_findings(name: str, res, controls: list, k: int | None, n_perm: int, seed: int) -> Findings:
    f = Findings()
    L = np.asarray(res.layer_effect).shape[0]
    f.numbers[f"{name}_diag"] = float(np.mean(np.diag(np.asarray(res.layer_effect, float))))
    if L < 4:
        f.verdicts[f"{name}_paper_pattern"] = TOO_FEW
        f.text[f"{name}_verdict"] = f"With {L} layers no second-half layer has a later layer to compare, so the halves are not compared."
        for key in ("saturation", "examples", "max_numbers", "mean_numbers"):
            f.text[f"{name}_{key}"] = ""
        return f
    per_agg = {}
    for agg in AGGS:
        h = halves_of(res, agg, k, n_perm, seed)
        ctrl = [halves_of(c, agg, k, n_perm, seed)["ratio"] for c in controls]
        shows = h["verdict"] == "second half less"
        if len(controls) >= MIN_CONTROLS and np.isfinite(ctrl).any():
            se = _prompt_boot(res, lambda M: _ratio(*_scores_next_k(M, h["k"])[::-1]), agg, seed)
            spread = _spread(ctrl, se)
            bound = stats.control_bound(ctrl, "less", k=control_k(len(ctrl)), spread=spread)
            differs = stats.differs_from_control(h["ratio"], ctrl, "less", k=control_k(len(ctrl)), spread=spread)
        else:
            bound, differs = float("nan"), False
        v = paper_verdict(shows, differs)
        per_agg[agg] = v
        f.numbers.update(
            {
                f"{name}_{agg}_first": h["first"],
                f"{name}_{agg}_second": h["second"],
                f"{name}_{agg}_ratio": h["ratio"],
                f"{name}_{agg}_p_less": h["p_less"],
                f"{name}_{agg}_control_ratio_mean": float(np.nanmean(ctrl)) if ctrl else float("nan"),
                f"{name}_{agg}_control_bound": bound,
            }
        )
        f.verdicts[f"{name}_{agg}_halves"] = h["verdict"]
        f.verdicts[f"{name}_{agg}_paper_pattern"] = v
        f.text[f"{name}_{agg}_numbers"] = (
            f"skipped layers scored on the next {h['k']} layer(s): first half {_fmt(h['first'])}, second half "
            f"{_fmt(h['second'])} (ratio {_fmt(h['ratio'])}; permutation p = {_fmt(h['p_less'], 3)} that the second half is "
            f"less); random-init control ratio {_range(ctrl)} over {len(ctrl)} seed(s)"
        )
    verdict = _combine(per_agg["max"], per_agg["mean"])
    f.numbers[f"{name}_k"] = int(h["k"])
    f.numbers[f"{name}_saturated"] = saturation(res)
    f.verdicts[f"{name}_paper_pattern"] = verdict
    text = _SENTENCE[verdict].format(what=_WHAT[name])
    if verdict == MIXED:
        text += f" (max aggregation: {per_agg['max']}; mean: {per_agg['mean']})"
    f.text[f"{name}_verdict"] = text
    sat = f.numbers[f"{name}_saturated"]
    f.text[f"{name}_saturation"] = (
        f"{sat:.0%} of the entries right of the diagonal reach the top of the colour scale (relative change ≥ 1): the max "
        "matrix cannot rank layers here and the mean matrix is the informative one."
        if np.isfinite(sat) and sat > SATURATED
        else f"{sat:.0%} of the entries right of the diagonal reach relative change 1, so the max matrix still ranks layers."
    )
    share = per_example_share(res, k)
    cshare = [per_example_share(c, k)["share"] for c in controls]
    f.numbers.update({f"{name}_example_share": share["share"], f"{name}_example_p": share["p"], f"{name}_example_n": share["n"]})
    f.text[f"{name}_examples"] = (
        f"In {share['share']:.0%} of the {share['n']} prompts the second-half layers change the next layers less than the "
        f"first-half layers do (sign test against one half: p = {_fmt(share['p'], 3)}); in the random-init control "
        f"{_range(cshare, pct=True)}."
    )
    return f


def _output_ratio_se(cur, fut, agg: str, seed: int = 0, n_boot: int = N_BOOT) -> float:
    """Standard error of `output_ratio` with the prompts of both settings resampled (per-prompt max
    output changes; NaN without them)."""
    a, b = getattr(cur, "example_output_effect", None), getattr(fut, "example_output_effect", None)
    if a is None or b is None:
        return float("nan")
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a).all(1)], b[np.isfinite(b).all(1)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    red = np.max if agg == "max" else np.mean
    vals = []
    for _ in range(n_boot):
        c = red(a[rng.integers(0, len(a), len(a))], axis=0)
        g = red(b[rng.integers(0, len(b), len(b))], axis=0)
        vals.append(output_ratio(SimpleNamespace(output_effect=c, mean_output_effect=c), SimpleNamespace(output_effect=g, mean_output_effect=g), "max"))
    return float(np.nanstd(vals, ddof=1))


def _output_findings(cur, fut, cur_c: list, fut_c: list) -> Findings:
    f = Findings()
    if np.asarray(cur.layer_effect).shape[0] < 4:
        f.verdicts["output_paper_pattern"] = TOO_FEW
        f.text.update({"output_verdict": "", "output_max_numbers": "", "output_mean_numbers": ""})
        return f
    per_agg = {}
    for agg in AGGS:
        r = output_ratio(cur, fut, agg)
        ctrl = [output_ratio(c, g, agg) for c, g in zip(cur_c, fut_c)]
        shows = np.isfinite(r) and r < OUTPUT_LESS
        differs = len(ctrl) >= MIN_CONTROLS and np.isfinite(ctrl).any() and stats.differs_from_control(r, ctrl, "less", k=control_k(len(ctrl)), spread=_spread(ctrl, _output_ratio_se(cur, fut, agg)))
        per_agg[agg] = paper_verdict(bool(shows), bool(differs))
        c1, c2 = output_halves(cur, False, agg)
        f1, f2 = output_halves(fut, True, agg)
        f.numbers.update(
            {
                f"output_{agg}_current_first": c1,
                f"output_{agg}_current_second": c2,
                f"output_{agg}_future_first": f1,
                f"output_{agg}_future_second": f2,
                f"output_{agg}_ratio": r,
                f"output_{agg}_control_ratio_mean": float(np.nanmean(ctrl)) if ctrl else float("nan"),
            }
        )
        f.verdicts[f"output_{agg}_paper_pattern"] = per_agg[agg]
        f.text[f"output_{agg}_numbers"] = (
            f"first-half layers change the current token's output by {_fmt(c1, 3)} and future tokens' by {_fmt(f1, 3)}; "
            f"second-half layers by {_fmt(c2, 3)} and {_fmt(f2, 3)}; late layers' future/current ratio is "
            f"{_fmt(r)}× the early layers' (random-init control {_range(ctrl)})"
        )
    v = _combine(per_agg["max"], per_agg["mean"])
    f.verdicts["output_paper_pattern"] = v
    f.text["output_verdict"] = {
        PAPER: "As in the paper, late layers matter relatively less for future tokens than early layers do, more so than in the random-init control: they refine the current prediction rather than compute features for later tokens.",
        SAME_AS_CONTROL: "Late layers matter relatively less for future tokens than early layers do, but not by more than the random-init controls' spread, so this is not evidence of the paper's reading (late layers refine the current prediction).",
        NOT_PAPER: "Late layers matter for future tokens relatively as much as early layers do here, unlike the paper's finding that late layers mostly refine the current prediction.",
        MIXED: "The two aggregations disagree on whether late layers matter relatively less for future tokens than in the random-init control (the paper: they do).",
    }[v]
    return f


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
                f.numbers[f"parts_{setting}_{part}_control"] = _upper_mean(np.asarray(control_parts[(setting, part)].mean_layer_effect, float))
        if len(vals) == 2:
            ctl = ""
            if control_parts and (setting, "attention") in control_parts:
                ctl = f" (random-init control: {_fmt(f.numbers[f'parts_{setting}_attention_control'])} vs {_fmt(f.numbers[f'parts_{setting}_mlp_control'])})"
            rows.append(f"{setting} setting: attention {_fmt(vals['attention'])} vs MLP {_fmt(vals['mlp'])}{ctl}")
    stronger = "MLP" if f.numbers.get("parts_current_mlp", np.nan) > f.numbers.get("parts_current_attention", np.nan) else "attention"
    f.verdicts["parts_stronger"] = stronger
    f.text["parts_summary"] = (
        "Averaged over skipped layers, the largest mean effect on a later layer is, in the " + "; in the ".join(rows)
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
    f.numbers.update({"local_source": int(s), "local_reader": int(l), "local_value": float(E[s, l]), "local_share": share})
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


def run_findings(lm, dataset: str, cur_prompts: list, fut_prompts: list, n_tokens, seed: int, n_controls: int, note: str = "", n_detail: int | None = None) -> Findings:
    """The sentence naming what this run measured (model, prompts, controls); `note`: where the data
    came from when that needs saying (`effdepth.data.data_note`); `n_detail`: prompts of the
    attention/MLP and local-effect breakdowns, named when fewer than the current setting's."""
    n_tok = np.asarray(n_tokens)
    f = Findings(numbers={"n_layers": lm.n_layers, "n_prompts_current": len(cur_prompts), "n_prompts_future": len(fut_prompts)})
    f.text["run"] = (
        f"This run: **{short_name(lm.spec)}** ({lm.adapter.family} family, {lm.n_layers} layers, d={lm.d_model}), {len(cur_prompts)} prompts for "
        f"the current setting and {len(fut_prompts)} for the future one (from the `{dataset}` distribution, seed {seed}; "
        f"{n_tok.min()}–{n_tok.max()} tokens), each measured on the model and on {n_controls} random-init control(s) of the "
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


def findings(cur, fut, controls_cur: list, controls_fut: list, k: int | None = None, n_perm: int = 2000, seed: int = 0) -> Findings:
    """The chapter's findings: halves of both settings, the output claim, per-example shares, against
    the controls (one `SkipEffects` per control seed in each list, the same seeds in the same order)."""
    if len(controls_cur) != len(controls_fut):
        raise ValueError(f"controls_cur and controls_fut must hold the same control seeds (got {len(controls_cur)} and {len(controls_fut)}).")
    f = Findings()
    f = f.merge(_setting_findings("current", cur, list(controls_cur), k, n_perm, seed))
    f = f.merge(_setting_findings("future", fut, list(controls_fut), k, n_perm, seed))
    f = f.merge(_output_findings(cur, fut, list(controls_cur), list(controls_fut)))
    f.numbers["n_controls"] = len(controls_cur)
    keys = [f.verdicts[f"{s}_paper_pattern"] for s in SETTINGS] + [f.verdicts["output_paper_pattern"]]
    if TOO_FEW in keys:
        f.numbers["n_paper"] = 0
        f.verdicts["paper_pattern"] = TOO_FEW
        f.text["summary"] = "This model has too few layers to compare first- with second-half layers."
        return f
    n_yes = sum(v == PAPER for v in keys)
    f.numbers["n_paper"] = n_yes
    f.verdicts["paper_pattern"] = PAPER if n_yes == len(keys) else (NOT_PAPER if n_yes == 0 else MIXED)
    f.text["summary"] = (
        f"{n_yes} of the paper's {len(keys)} §3.2 findings (less effect of second-half layers on the same token's and on "
        f"future tokens' computation; late layers refining the current prediction) hold here beyond the random-init controls "
        f"({len(controls_cur)} seed(s))."
        + (f" With fewer than {MIN_CONTROLS} control seeds the controls' spread is not estimated, so no finding counts as the paper's." if len(controls_cur) < MIN_CONTROLS else "")
    )
    return f


def split_findings(future, n_splits: int, split_step: int) -> Findings:
    """How many split points each prompt of the future setting really got (`split_points` [P, n_splits],
    -1 = none): a prompt of T tokens has a split point only at multiples of `split_step` below T - 4,
    so short prompts get fewer than `n_splits`."""
    import numpy as np

    per_prompt = (np.asarray(future.split_points) >= 0).sum(axis=1)
    counts = {int(k): int(v) for k, v in zip(*np.unique(per_prompt, return_counts=True))}
    spread = ", ".join(f"{v} prompt{'s' if v != 1 else ''} with {k}" for k, v in sorted(counts.items(), reverse=True))
    text = (
        f"up to {n_splits} per prompt were asked for (multiples of {split_step}, at least 4 tokens before the end); "
        f"these prompts got {spread} ({int(per_prompt.sum())} split points in all)"
    )
    return Findings(numbers={"splits_total": int(per_prompt.sum()), "splits_max": int(per_prompt.max(initial=0))}, text={"split_text": text})
