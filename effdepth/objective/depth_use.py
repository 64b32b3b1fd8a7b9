"""§3.5's depth use: the depth score (methods page §4, depth score) and the erasure depth (methods
page §4, residual erasure, with §3.5's erasing vector) of every grid model and of its random-init
control."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from effdepth.data.examples import Example
from effdepth.measures.depth_score import depth_score
from effdepth.measures.residual_erasure import mean_residuals, residual_erasure
from effdepth.objective.grid import ARCHS, MULTI_STEP, OBJECTIVES, SPLITS, GridSpec
from effdepth.objective.models import control_models
from effdepth.objective.problems import eval_sets, spread
from effdepth.objective.train import Grid


def correct_examples(grid: Grid, seed: int, split: str = "interpolate", keys=None) -> list[int]:
    """Indices (into ``eval_sets(spec)[split]``) of the examples every model ``keys`` (default: the
    four cells of ``seed``) answers correctly."""
    keys = keys or [(a, o, seed) for a in ARCHS for o in OBJECTIVES]
    ok = None
    for k in keys:
        c = np.asarray(grid.report(*k)["correct"][split], bool)
        ok = c if ok is None else ok & c
    return [int(i) for i in np.flatnonzero(ok)]


def choose_example(
    sets: dict, correct_by_split: dict[str, list[int]], prefer=MULTI_STEP
) -> tuple[Example, Example] | None:
    """An (example, counterfactual) pair: the example is answered correctly by every model considered
    (from a multi-step module if possible, extrapolation first, then the longest question); the
    counterfactual is another problem of the same module with a different answer."""
    cands = []
    for split in ("extrapolate", "interpolate"):
        for i in correct_by_split.get(split, []):
            ex = sets[split][i]
            cands.append((ex.meta["module"] in prefer, split == "extrapolate", len(ex.prompt), split, i))
    if not cands:
        return None
    *_, split, i = max(cands)
    ex = sets[split][i]
    for other in sets[split]:
        if other.meta["module"] == ex.meta["module"] and other.answer != ex.answer and other.prompt != ex.prompt:
            return ex, other
    return ex, next(o for o in sets[split] if o.prompt != ex.prompt)


def erasure(model, example: Example, counterfactual: Example, batch_size: int | None = 256):
    """Residual erasure (methods page §4) of ``example`` with the erasing vector of §3.5: the mean over
    the positions of one counterfactual arithmetic example, per residual index."""
    vectors = mean_residuals(model, [counterfactual.text])
    return residual_erasure(model, example.prompt, example.answer, vectors=vectors, batch_size=batch_size)


def erasure_depth(result, rel: float = 0.5) -> float:
    """How deep the question's information is still used, as a fraction of the depth (0 … 1).

    For each question token t (1 … answer start − 2: position 0 is never erased and the last prompt
    position predicts the answer itself, so erasing it changes the answer at any depth) with column
    maximum w_t = max_b effect[b, t], last_t is the highest residual index b with
    effect[b, t] ≥ rel · w_t: erasing the token there still changes the answer by at least half as
    much as erasing it anywhere. The score is Σ_t w_t · last_t / (L · Σ_t w_t): tokens that matter
    weigh more. NaN when no question token changes the answer."""
    eff = np.nan_to_num(np.asarray(result.effect, float))
    L = eff.shape[0] - 1
    a0 = int(result.arrays["answer_start"])
    cols = eff[:, 1 : a0 - 1]
    w = cols.max(0)
    if cols.size == 0 or w.sum() <= 0:
        return float("nan")
    above = cols >= rel * w[None]
    last = np.array([np.flatnonzero(above[:, j]).max() for j in range(cols.shape[1])])
    return float((w * last).sum() / (L * w.sum()))


def depth_examples(spec: GridSpec, n_examples: int) -> list[Example]:
    """The depth score's problems: ``n_examples`` interpolation problems taken evenly from the multi-step modules."""
    sets = eval_sets(spec)
    return spread([e for e in sets["interpolate"] if e.meta["module"] in MULTI_STEP] or sets["interpolate"], n_examples)


def measure_depth(model, exs: list[Example], sets: dict, usable: dict, n_erasure: int) -> dict:
    """One model's depth use: depth score (layer, logit effect) over ``exs`` as a fraction of the
    depth (D / (L − 1)), and the erasure depth averaged over the first ``n_erasure`` problems with
    ``usable[split][i]`` true (interpolation first), each erased with a counterfactual of its module."""
    L = model.n_layers
    ds = depth_score(model, {"interpolate": exs}, split="answer", n_boot=200)
    depths = []
    for split in ("interpolate", "extrapolate"):
        for i in np.flatnonzero(usable[split]):
            if len(depths) >= n_erasure:
                break
            ex = sets[split][i]
            cf = next((o for o in sets[split] if o.meta["module"] == ex.meta["module"] and o.answer != ex.answer), None)
            if cf is not None:
                depths.append(erasure_depth(erasure(model, ex, cf)))
    return {
        "depth_layer": float(ds.depth_layer[0]) / max(L - 1, 1),
        "depth_output": float(ds.depth_output[0]) / max(L - 1, 1),
        "erasure_depth": float(np.nanmean(depths)) if depths else float("nan"),
        "n_erasure": len(depths),
    }


def depth_use(
    grid: Grid, n_examples: int = 16, n_erasure: int = 4, device: str = "cpu", progress: bool = True
) -> pd.DataFrame:
    """Depth use of every grid model (`measure_depth`): the depth score (methods page §4, skip test with
    the split point at the answer start, max-aggregated over ``n_examples`` interpolation problems taken
    evenly from the multi-step modules) and the erasure depth (:func:`erasure_depth`) averaged over up
    to ``n_erasure`` problems the model answers correctly. One row per (arch, objective, seed)."""
    sets = eval_sets(grid.spec)
    exs = depth_examples(grid.spec, n_examples)
    rows = []
    for key in tqdm(sorted(grid.folders), desc="depth use", disable=not progress):
        ok = grid.report(*key)["correct"]
        rows.append(
            {
                "arch": key[0],
                "objective": key[1],
                "seed": key[2],
                **measure_depth(grid.load(*key, device=device), exs, sets, ok, n_erasure),
            }
        )
    return pd.DataFrame(rows)


def control_depth_use(
    grid: Grid, n_examples: int = 16, n_erasure: int = 4, device: str = "cpu", progress: bool = True
) -> pd.DataFrame:
    """Depth use of the random-init controls, one row per (arch, seed): the depth score on the same
    problems as `depth_use`; the erasure depth on the first ``n_erasure`` problems that have a
    counterfactual (an untrained model answers none correctly, so correctness cannot select them)."""
    sets = eval_sets(grid.spec)
    exs = depth_examples(grid.spec, n_examples)
    every = {s: np.ones(len(sets[s]), bool) for s in SPLITS}
    rows = []
    for (arch, seed), model in tqdm(
        control_models(grid, device).items(), desc="control depth use", disable=not progress
    ):
        rows.append({"arch": arch, "seed": seed, **measure_depth(model, exs, sets, every, n_erasure)})
    return pd.DataFrame(rows)
