"""§3.3 depth score: do harder problems use deeper layers? (methods page §4 (depth score), §9)

For every example, the future-setting skip test (methods page §2, `effdepth.measures.skip_effects`) with split points
chosen from the answer. A split point t is the index of an answer token: the positions [1, t − 1)
are intervened on and the positions from t − 1 on are measured, so the first measured position is
the one that *predicts* token t (methods page §4). (The authors' code measures from t itself; for a
one-token answer that position predicts the token after the answer and the answer-predicting
position is intervened, so it measures nothing about answering.)

- split='answer' (multi-hop QA, short answers): one split point at the first answer token a0 — the
  question up to a0 − 1 is intervened on, the answer-predicting positions are measured;
- split='solution' (worked solutions: MATH, GSM8K): offsets range(0, n_answer − 4, 4) from a0,
  shuffled with the recorded seed, up to 4 kept (as the authors' code; an answer of 4 tokens or
  fewer has none);
- split='auto': 'solution' for examples whose `meta['dataset']` is 'math' or 'gsm8k', else 'answer'.

E[s, l] = max over split points and measured positions of the relative change of layer l when
layer s is skipped, each clipped to [0, 1] as the paper's colour scale (`skipping.CLIP`); o[s] the same for the output-distribution change. Per level, E and o are
aggregated over examples with the max (the paper's figure) and the mean. Then

    e_s = Σ_{l>s} E[s, l] / max(L-1-s, 1)        (layer importance)
    D   = Σ_s s · w_s / Σ_s w_s                  (depth score, 0-indexed; w = e or w = o)

Beyond the paper: a depth score per example, a bootstrap 95 % interval per level (for the paper's
max-aggregated score and for the mean of the per-example scores) and Spearman's ρ between level and
per-example score (with a level-stratified bootstrap interval). Verdicts (flat, rising, …) are not
made here: `effdepth.chapters.complexity` makes them, against the random-init control.
Teacher-forced greedy accuracy per level is recorded beside it, and the score is recomputed on
correctly answered examples only.

The pure pieces (`layer_importance`, `depth_from_weights`, `depth_scores`, `bootstrap_levels`,
`trend_test`, `example_splits`, `skip_positions`) take arrays and need no model.
"""

from __future__ import annotations

import warnings
import zlib
from collections import defaultdict

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from effdepth.access.model import choose_method
from effdepth.accuracy import tokens_in_spans
from effdepth.measures.residual_erasure import encode_example
from effdepth.measures.skip_effects import CLIP, prompt_effects
from effdepth.results import Result, measure

SPLIT_MODES = ("auto", "answer", "solution")
SOLUTION_DATASETS = ("math", "gsm8k", "word_problems")  # worked solutions: split points inside them


# -- pure scores -------------------------------------------------------------------------------


def layer_importance(E: np.ndarray) -> np.ndarray:
    """e_s = Σ_{l>s} E[s, l] / max(L-1-s, 1) for E [..., L, L]; returns [..., L] (e_{L-1} = 0)."""
    E = np.asarray(E, dtype=float)
    L = E.shape[-1]
    upper = np.triu(np.ones((L, L), dtype=bool), k=1)
    denom = np.maximum(L - 1 - np.arange(L), 1)
    return np.where(upper, np.nan_to_num(E), 0.0).sum(-1) / denom


def depth_from_weights(w: np.ndarray) -> np.ndarray:
    """D = Σ_s s·w_s / Σ_s w_s over the last axis (0-indexed layers); NaN where Σ w = 0."""
    w = np.asarray(w, dtype=float)
    s = np.arange(w.shape[-1])
    total = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * s).sum(-1) / np.where(total > 0, total, 1), np.nan)


def depth_scores(E: np.ndarray, o: np.ndarray) -> tuple:
    """(D from the layer effect, D from the logit/output effect) of E [..., L, L] and o [..., L]."""
    return depth_from_weights(layer_importance(E)), depth_from_weights(o)


def bootstrap_levels(
    E: np.ndarray, o: np.ndarray, levels: np.ndarray, n_boot: int = 1000, seed: int = 0, level_values=None
) -> dict:
    """Bootstrap (examples resampled with replacement within each level) of the per-level scores.

    E [N, L, L], o [N, L] per example; levels [N]. Returns per level ([K, 2] = 2.5 %, 97.5 %):
    'max_layer', 'max_output' (the paper's max-aggregated score), 'mean_layer', 'mean_output' (the
    mean of the per-example scores), and the replicates 'rep_*' [n_boot, K].
    """
    levels = np.asarray(levels)
    level_values = np.unique(levels) if level_values is None else np.asarray(level_values)
    rng = np.random.default_rng(seed)
    ex_layer, ex_out = depth_scores(E, o)
    reps = {
        k: np.full((n_boot, len(level_values)), np.nan)
        for k in ("max_layer", "max_output", "mean_layer", "mean_output")
    }
    for j, lv in enumerate(level_values):
        idx = np.flatnonzero(levels == lv)
        if len(idx) == 0:
            continue
        draws = idx[rng.integers(0, len(idx), size=(n_boot, len(idx)))]  # [B, n]
        for b0 in range(0, n_boot, 64):  # bounded memory: E[draws] is [B, n, L, L]
            d = draws[b0 : b0 + 64]
            Emax, omax = np.nanmax(E[d], axis=1), np.nanmax(o[d], axis=1)
            reps["max_layer"][b0 : b0 + 64, j], reps["max_output"][b0 : b0 + 64, j] = depth_scores(Emax, omax)
        with np.errstate(all="ignore"):
            reps["mean_layer"][:, j] = np.nanmean(ex_layer[draws], axis=1)
            reps["mean_output"][:, j] = np.nanmean(ex_out[draws], axis=1)
    out = {}
    for k, r in reps.items():
        with np.errstate(all="ignore"):
            out[k] = (
                np.stack([np.nanpercentile(r, 2.5, axis=0), np.nanpercentile(r, 97.5, axis=0)], -1)
                if np.isfinite(r).any()
                else np.full((len(level_values), 2), np.nan)
            )
        out[f"rep_{k}"] = r
    return out


def trend_test(levels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman's ρ between level and per-example score, its p-value (scipy), and a 95 % interval
    from a bootstrap that resamples examples within each level. NaN scores are left out."""

    levels, scores = np.asarray(levels, float), np.asarray(scores, float)
    keep = np.isfinite(scores)
    levels, scores = levels[keep], scores[keep]
    out = {"rho": np.nan, "p": np.nan, "lo": np.nan, "hi": np.nan, "n": int(keep.sum())}
    if len(np.unique(levels)) < 2 or len(scores) < 3 or np.ptp(scores) == 0:
        return out
    res = spearmanr(levels, scores)
    out["rho"], out["p"] = float(res.statistic), float(res.pvalue)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(levels == lv) for lv in np.unique(levels)]
    rhos = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        s = scores[idx]
        if np.ptp(s) > 0:
            rhos.append(spearmanr(levels[idx], s).statistic)
    if rhos:
        out["lo"], out["hi"] = (float(x) for x in np.nanpercentile(rhos, [2.5, 97.5]))
    return out


# -- the measurement ---------------------------------------------------------------------------


class DepthScore(Result):
    """Depth scores per difficulty level (methods page §4 (depth score)).

    Per level (index k, value `levels[k]`): `n_examples`, `accuracy` (teacher-forced greedy exact
    match), `max_E`, `mean_E` [K, L, L], `max_o`, `mean_o` [K, L], `layer_importance`,
    `output_importance` [K, L] (from the max-aggregated E and o), `depth_layer`, `depth_output` [K]
    (the paper's max-aggregated scores) with bootstrap intervals `depth_layer_ci`, `depth_output_ci`
    [K, 2]; `depth_layer_meanagg`, `depth_output_meanagg` (from the mean E, o); the mean of the
    per-example scores `example_mean_layer`, `example_mean_output` with `*_ci`; the max-aggregated
    scores of the correctly answered examples only `depth_layer_correct`, `depth_output_correct`
    (NaN where none) and `n_correct`.
    Per example (index i): `example_level`, `example_correct`, `example_E` [N, L, L], `example_o`
    [N, L], `example_depth_layer`, `example_depth_output`, `example_splits` [N, n_splits] (answer-token
    indices t, measured from t − 1; -1 = none).
    Trend across levels, [ρ, p, lo, hi]: `trend_layer`, `trend_output` (per-example scores) and
    `trend_layer_correct`, `trend_output_correct` (correct examples only).
    """

    measurement = "depth_score"

    def to_frame(self) -> pd.DataFrame:
        """One row per level: accuracy, the paper's max-aggregated scores with intervals, the mean
        per-example scores with intervals, and the scores on correct examples only."""
        f = pd.DataFrame(
            {
                "n": self.n_examples,
                "accuracy": self.accuracy,
                "depth_layer": self.depth_layer,
                "depth_layer_lo": self.depth_layer_ci[:, 0],
                "depth_layer_hi": self.depth_layer_ci[:, 1],
                "depth_output": self.depth_output,
                "depth_output_lo": self.depth_output_ci[:, 0],
                "depth_output_hi": self.depth_output_ci[:, 1],
                "example_mean_layer": self.example_mean_layer,
                "example_mean_layer_lo": self.example_mean_layer_ci[:, 0],
                "example_mean_layer_hi": self.example_mean_layer_ci[:, 1],
                "example_mean_output": self.example_mean_output,
                "example_mean_output_lo": self.example_mean_output_ci[:, 0],
                "example_mean_output_hi": self.example_mean_output_ci[:, 1],
                "n_correct": self.n_correct,
                "depth_layer_correct": self.depth_layer_correct,
                "depth_output_correct": self.depth_output_correct,
            },
            index=pd.Index(self.levels, name="level"),
        )
        return f

    def examples_frame(self) -> pd.DataFrame:
        """One row per example: level, correct, its two depth scores."""
        return pd.DataFrame(
            {
                "level": self.example_level,
                "correct": self.example_correct.astype(bool),
                "depth_layer": self.example_depth_layer,
                "depth_output": self.example_depth_output,
            }
        )

    def trend(self, which: str = "layer", correct_only: bool = False) -> dict:
        """{'rho', 'p', 'lo', 'hi'}: Spearman's ρ between level and the per-example 'layer' or
        'output' score, scipy's p and the bootstrap 95 % interval (numbers only: the chapter module
        `effdepth.chapters.complexity` says what they mean)."""
        arr = self.arrays[f"trend_{which}" + ("_correct" if correct_only else "")]
        return dict(zip(("rho", "p", "lo", "hi"), (float(x) for x in arr)))


def split_mode_of(example, split: str) -> str:
    if split not in SPLIT_MODES:
        raise ValueError(f"split must be one of {SPLIT_MODES}, not '{split}'")
    if split != "auto":
        return split
    return "solution" if str(example.meta.get("dataset", "")).lower() in SOLUTION_DATASETS else "answer"


def example_splits(
    T: int, answer_start: int, mode: str, n_splits: int = 4, step: int = 4, seed: int = 0, key: str = ""
) -> list[int]:
    """Split points of one example (methods page §4 (depth score), §9), as answer-token indices t, sorted.

    'answer': [a0]. 'solution': a0 + offsets, the offsets range(0, n_answer − 4, step) shuffled by a
    generator seeded with (seed, key) — key names the example, e.g. its text — and the first
    `n_splits` kept (the authors' code). A split point needs something to intervene on before the
    position that predicts it (t − 1 > 1), so t < 3 is dropped; so is t ≥ T.
    """
    if mode == "answer":
        points = [answer_start]
    else:
        offsets = list(range(0, T - answer_start - 4, step))
        rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
        points = [answer_start + int(x) for x in rng.permutation(offsets)[:n_splits]] if offsets else []
    return sorted(t for t in points if 3 <= t < T)


def skip_positions(T: int, t: int) -> tuple[range, range]:
    """(intervened, measured) positions of split point t: [1, t − 1) and [t − 1, T). The first
    measured position, t − 1, is the one whose prediction is token t."""
    return range(1, t - 1), range(t - 1, T)


def _group(examples_by_level) -> dict:
    if isinstance(examples_by_level, dict):
        groups = {lv: list(exs) for lv, exs in examples_by_level.items()}
    else:
        groups = defaultdict(list)
        for ex in examples_by_level:
            if ex.level is None:
                raise ValueError("Every example needs a level (or pass a {level: examples} dict).")
            groups[ex.level].append(ex)
    groups = {lv: exs for lv, exs in sorted(groups.items()) if exs}
    if not groups:
        raise ValueError("depth_score() needs at least one example.")
    return groups


@torch.no_grad()
def greedy_correct(model, ids: torch.Tensor, answer_start: int) -> bool:
    """Teacher-forced greedy exact match: every answer token is the argmax of the prediction before it."""
    return greedy_correct_batch(model, [ids], [answer_start])[0]


@torch.no_grad()
def greedy_correct_batch(
    model, ids_list: list[torch.Tensor], answer_starts: list[int], scored: list | None = None
) -> list[bool]:
    """`greedy_correct` of several examples in one right-padded forward (exact for causal models:
    padding comes after every real token and is masked out). scored: per example, the indices
    (within the answer's tokens) that must match, or None for all of them: a worked solution is
    answered when each step's result is, as on the model page (`accuracy.exact_match`)."""
    T = max(len(x) for x in ids_list)
    pad = model.tokenizer.pad_token_id or 0
    batch = torch.full((len(ids_list), T), pad, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for i, x in enumerate(ids_list):
        batch[i, : len(x)], mask[i, : len(x)] = x, 1
    if model.remote:
        nn = model.nn  # the envoy, resolved before the trace (NDIF-safe body)
        with model.trace({"input_ids": batch, "attention_mask": mask}):
            logits = nn.output.logits.argmax(-1).save()
        pred_all = logits.cpu()
    else:
        dev = model.device
        pred_all = (
            model.hf(input_ids=batch.to(dev), attention_mask=mask.to(dev), use_cache=False).logits.argmax(-1).cpu()
        )
    out = []
    for i, (x, a0) in enumerate(zip(ids_list, answer_starts)):
        ok = pred_all[i, a0 - 1 : len(x) - 1] == x[a0:].cpu()
        keep = scored[i] if scored is not None else None
        out.append(bool((ok[keep] if keep else ok).all()))
    return out


def scored_answer_tokens(model, answer: str, spans) -> list[int] | None:
    """Indices of the answer's own tokens (tokenised alone, as `encode_example` does) that overlap
    the character spans `spans` (an example's `meta['scored']`); None when no spans are named."""
    if not spans:
        return None
    enc = model.tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    return tokens_in_spans(enc["offset_mapping"], spans) or None


def depth_score(
    model,
    examples_by_level,
    split: str = "auto",
    n_splits: int = 4,
    split_step: int = 4,
    n_boot: int = 1000,
    seed: int = 0,
    method: str = "auto",
    batch_size: int | None = None,
    chunk_size: int = 10,
    store=None,
) -> DepthScore:
    """Depth scores per difficulty level from the future-setting skip test (methods page §4 (depth score)).

    examples_by_level: {level: [Example]} or a list of `Example`s with `.level` set. split:
    'answer', 'solution' or 'auto' (see the module docstring); n_splits / split_step: the
    'solution' split points. seed: the shuffle of the 'solution' split points and the bootstrap;
    n_boot: bootstrap replicates. method, batch_size: as `skip_effects`.
    chunk_size: examples per cache entry (a run that dies resumes per chunk).
    """

    groups = _group(examples_by_level)
    method = choose_method(model, method)
    items = []
    for lv, exs in groups.items():
        for j, ex in enumerate(exs):
            mode = split_mode_of(ex, split)
            ids, a0 = encode_example(model, ex.prompt, ex.answer, index=f"Example {j} of level {lv!r}")
            items.append(
                (
                    lv,
                    ex.prompt,
                    ex.answer,
                    mode,
                    example_splits(len(ids), a0, mode, n_splits, split_step, seed=seed, key=ex.prompt + ex.answer),
                    scored_answer_tokens(model, ex.answer, ex.meta.get("scored")),
                )
            )
    none = [it for it in items if not it[4]]
    if len(none) == len(items):
        raise ValueError(
            "No example has a split point: 'answer' needs a prompt of at least 3 tokens, 'solution' an answer of more than 4 tokens."
        )
    if none:
        warnings.warn(
            f"{len(none)} of {len(items)} example(s) have no split point (prompt under 3 tokens, or a worked solution of 4 tokens or fewer) and are left out.",
            stacklevel=2,
        )
    L = model.n_layers

    def per_item(chunk):
        """Arrays with a leading axis over the chunk's examples (NaN where nothing is measured)."""
        encoded = [encode_example(model, it[1], it[2]) for it in chunk]
        n = len(chunk)
        out = {
            "correct": np.array(
                greedy_correct_batch(model, [e[0] for e in encoded], [e[1] for e in encoded], [it[5] for it in chunk])
            ),
            "n_tokens": np.array([len(e[0]) for e in encoded]),
            "valid": np.zeros(n, dtype=int),
            "E": np.full((n, L, L), np.nan),
            "o": np.full((n, L), np.nan),
            "mean_E": np.full((n, L, L), np.nan),
            "mean_o": np.full((n, L), np.nan),
        }
        for i, (it, (ids, _)) in enumerate(zip(chunk, encoded)):
            splits = it[4]
            if not splits:
                continue
            r = prompt_effects(
                model,
                ids,
                "future",
                [skip_positions(len(ids), t)[1].start for t in splits],
                method,
                batch_size=batch_size,
            )
            out["valid"][i] = 1
            out["E"][i], out["o"][i], out["mean_E"][i], out["mean_o"][i] = (
                r["max_layer"],
                r["max_output"],
                r["mean_layer"],
                r["mean_output"],
            )
        return out

    # Chunks of examples of one level: one cache entry (and one batched accuracy forward) per chunk.
    chunks = []
    for lv in groups:
        mine = [it for it in items if it[0] == lv]
        chunks += [tuple(mine[i : i + chunk_size]) for i in range(0, len(mine), chunk_size)]

    def aggregate(parts):
        flat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        per_example = [{k: v[i] for k, v in flat.items()} for i in range(len(flat["valid"]))]
        return summarize([it for c in chunks for it in c], per_example, L, n_splits, n_boot, seed)

    # 'measure_from' names the position convention (methods page §4) so results of the old one (measured
    # from t) are never read back from the cache as this one.
    params = {
        "split": split,
        "n_splits": n_splits,
        "split_step": split_step,
        "n_boot": n_boot,
        "seed": seed,
        "method": method,
        "measure_from": "t-1",
        "correct": "scored spans",
        "clip": CLIP,
    }
    return measure(
        DepthScore,
        model,
        chunks,
        params=params,
        per_item=per_item,
        aggregate=aggregate,
        store=store,
        item_id=lambda chunk: [[it[1], it[2], it[4]] for it in chunk],
        data_meta={
            "levels": [str(lv) for lv in groups],
            "n_per_level": {str(lv): len(exs) for lv, exs in groups.items()},
        },
    )


def summarize(items, parts, L: int, n_splits: int, n_boot: int, seed: int) -> dict:
    """The `DepthScore` arrays from per-example skip results (pure: also used by the tests)."""
    valid = [bool(int(p["valid"])) for p in parts]
    lv_all = np.array([it[0] for it in items])
    levels = np.unique(lv_all)
    N = len(items)
    E = np.full((N, L, L), np.nan)
    o = np.full((N, L), np.nan)
    mean_E = np.full((N, L, L), np.nan)
    mean_o = np.full((N, L), np.nan)
    for i, p in enumerate(parts):
        if valid[i]:
            E[i], o[i], mean_E[i], mean_o[i] = p["E"], p["o"], p["mean_E"], p["mean_o"]
    correct = np.array([bool(int(p["correct"])) for p in parts])
    valid = np.array(valid)
    ex_layer, ex_out = depth_scores(E, o)
    ex_layer[~valid], ex_out[~valid] = np.nan, np.nan
    K = len(levels)
    nan = lambda *s: np.full(s, np.nan)  # noqa: E731
    out = {
        "levels": levels,
        "n_examples": np.zeros(K, int),
        "n_correct": np.zeros(K, int),
        "accuracy": nan(K),
        "max_E": nan(K, L, L),
        "mean_E": nan(K, L, L),
        "max_o": nan(K, L),
        "mean_o": nan(K, L),
        "depth_layer_correct": nan(K),
        "depth_output_correct": nan(K),
    }
    for k, lv in enumerate(levels):
        sel = (lv_all == lv) & valid
        out["n_examples"][k] = int(sel.sum())
        out["n_correct"][k] = int((sel & correct).sum())
        out["accuracy"][k] = correct[lv_all == lv].mean()
        if sel.any():
            out["max_E"][k], out["max_o"][k] = E[sel].max(0), o[sel].max(0)
            out["mean_E"][k], out["mean_o"][k] = E[sel].mean(0), o[sel].mean(0)
        if (sel & correct).any():
            out["depth_layer_correct"][k], out["depth_output_correct"][k] = depth_scores(
                E[sel & correct].max(0), o[sel & correct].max(0)
            )
    out["layer_importance"] = layer_importance(out["max_E"])
    out["output_importance"] = out["max_o"]
    out["depth_layer"], out["depth_output"] = depth_scores(out["max_E"], out["max_o"])
    out["depth_layer_meanagg"], out["depth_output_meanagg"] = depth_scores(out["mean_E"], out["mean_o"])
    vi = np.flatnonzero(valid)
    boot = bootstrap_levels(E[vi], o[vi], lv_all[vi], n_boot=n_boot, seed=seed, level_values=levels)
    out["depth_layer_ci"], out["depth_output_ci"] = boot["max_layer"], boot["max_output"]
    out["example_mean_layer_ci"], out["example_mean_output_ci"] = boot["mean_layer"], boot["mean_output"]
    with np.errstate(all="ignore"):
        out["example_mean_layer"] = np.array(
            [
                np.nanmean(ex_layer[lv_all == lv]) if np.isfinite(ex_layer[lv_all == lv]).any() else np.nan
                for lv in levels
            ]
        )
        out["example_mean_output"] = np.array(
            [np.nanmean(ex_out[lv_all == lv]) if np.isfinite(ex_out[lv_all == lv]).any() else np.nan for lv in levels]
        )
    numeric = np.issubdtype(levels.dtype, np.number)
    rank = lv_all.astype(float) if numeric else np.searchsorted(levels, lv_all).astype(float)
    for name, scores in (("layer", ex_layer), ("output", ex_out)):
        t = trend_test(rank, scores, n_boot=n_boot, seed=seed)
        out[f"trend_{name}"] = np.array([t["rho"], t["p"], t["lo"], t["hi"]])
        tc = trend_test(rank[correct], scores[correct], n_boot=n_boot, seed=seed)
        out[f"trend_{name}_correct"] = np.array([tc["rho"], tc["p"], tc["lo"], tc["hi"]])
    splits = np.full((N, max(n_splits, 1)), -1)
    for i, it in enumerate(items):
        splits[i, : len(it[4])] = it[4][: splits.shape[1]]
    out.update(
        example_level=lv_all,
        example_correct=correct,
        example_E=E,
        example_o=o,
        example_depth_layer=ex_layer,
        example_depth_output=ex_out,
        example_splits=splits,
        example_n_tokens=np.array([int(p["n_tokens"]) for p in parts]),
    )
    return out
