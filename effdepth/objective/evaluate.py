"""§3.5's accuracy: teacher-forced greedy exact match per module and split (methods page §6), of a
grid model, of the random-init controls, and of always answering the most frequent training answer."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from effdepth.data.examples import Example
from effdepth.objective.grid import GridSpec
from effdepth.objective.models import control_models
from effdepth.objective.problems import eval_sets, training_pool
from effdepth.zoo.evaluate import exact_match

__all__ = ["exact_match", "accuracy", "control_accuracy", "baseline_accuracy"]


def accuracy(model, sets: dict[str, list[Example]]) -> dict:
    """{split: {module: accuracy, 'all': accuracy}} and the per-example results."""
    acc, correct = {}, {}
    for split, exs in sets.items():
        ok = exact_match(model, exs)
        correct[split] = ok
        by: dict[str, list[bool]] = {}
        for ex, k in zip(exs, ok):
            by.setdefault(ex.meta["module"], []).append(k)
        acc[split] = {m: float(np.mean(v)) for m, v in by.items()}
        acc[split]["all"] = float(np.mean(ok)) if ok else float("nan")
    return {"accuracy": acc, "correct": correct}


def control_accuracy(grid, device: str = "cpu") -> pd.DataFrame:
    """Exact-match accuracy of the random-init controls, one row per (arch, seed, split, module)."""
    sets = eval_sets(grid.spec)
    rows = []
    for (arch, seed), model in control_models(grid, device).items():
        for split, accs in accuracy(model.hf, sets)["accuracy"].items():
            rows += [{"arch": arch, "seed": seed, "split": split, "module": m, "accuracy": a} for m, a in accs.items()]
    return pd.DataFrame(rows)


def baseline_accuracy(spec: GridSpec) -> dict:
    """Accuracy of always answering the most frequent training answer, {split: {module: acc, 'all': acc}}
    (what a model that learned only the answer distribution gets)."""
    top = Counter(a for _, a in training_pool(spec, progress=False)).most_common(1)[0][0]
    out = {}
    for split, exs in eval_sets(spec).items():
        by: dict[str, list[bool]] = {}
        for e in exs:
            by.setdefault(e.meta["module"], []).append(e.answer.strip() == top)
        out[split] = {m: float(np.mean(v)) for m, v in by.items()}
        out[split]["all"] = float(np.mean([e.answer.strip() == top for e in exs]))
    out["answer"] = top
    return out
