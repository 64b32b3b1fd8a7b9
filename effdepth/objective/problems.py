"""§3.5's problems: the training pool and the evaluation sets, drawn with the one problem sampler
(:func:`effdepth.data.arithmetic.dm_problems`, scaled entropy ranges or the released generator's)
and cached as JSON beside the grid's models."""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from effdepth.data import arithmetic as A
from effdepth.data.examples import Example
from effdepth.objective.grid import SPLITS, GridSpec, grid_dir
from effdepth.store import digest

# ``problems(module, split, n, seed, max_chars, entropy=None, add_sub_entropy=None)``: §3.5's name for
# the one sampler; ``entropy=None`` gives the released generator's settings.
problems = A.dm_problems


def _module_problems(args) -> list[tuple[str, str]]:
    return problems(*args)


def _generate(jobs: list[tuple], workers: int) -> list[list[tuple[str, str]]]:
    if workers <= 1 or len(jobs) <= 1:
        return [_module_problems(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_module_problems, jobs))


def _cached_json(path: Path, make):
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
    return value


def n_pool(spec: GridSpec, steps: int | None = None) -> int:
    """Training problems needed for ``steps`` steps (estimated from the modules' mean text length)."""
    steps = spec.steps if steps is None else steps
    return int(steps * spec.batch_size * spec.window / 40 * 1.1) + 100


def training_pool(spec: GridSpec, n: int | None = None, progress: bool = True) -> list[tuple[str, str]]:
    """The (question, answer) training problems, drawn evenly from ``spec.modules`` (``train`` split,
    texts that fit a window), seeded by ``spec.data_seed``; generated once and cached."""
    n = n_pool(spec) if n is None else n
    per = -(-n // len(spec.modules))
    tag = f"{'-'.join(spec.modules)}|{spec.window}|{spec.data_seed}|{per}|{spec.entropy}|{spec.add_sub_entropy}"
    path = grid_dir() / "_data" / f"train-{digest(tag)[:12]}.json"

    def make():
        t0 = time.perf_counter()
        jobs = [
            (m, "train", per, spec.data_seed, spec.window - 2, spec.entropy, spec.add_sub_entropy) for m in spec.modules
        ]
        pools = _generate(jobs, min(len(jobs), os.cpu_count() or 1))
        pairs = [p for pool in pools for p in pool]
        random.Random(spec.data_seed).shuffle(pairs)
        if progress:
            print(f"generated {len(pairs)} training problems in {time.perf_counter() - t0:.0f} s")
        return pairs

    return [tuple(p) for p in _cached_json(path, make)]


def eval_sets(spec: GridSpec) -> dict[str, list[Example]]:
    """{'interpolate': [...], 'extrapolate': [...]}: ``n_eval`` problems per module (seed ``eval_seed``)."""
    tag = f"{spec.modules}|{spec.window}|{spec.eval_seed}|{spec.n_eval}|{spec.entropy}|{spec.add_sub_entropy}"
    path = grid_dir() / "_data" / f"eval-{digest(tag)[:12]}.json"

    def make():
        jobs = [
            (m, "interpolate", spec.n_eval, spec.eval_seed, spec.window - 2, spec.entropy, spec.add_sub_entropy)
            for m in spec.modules
        ]
        jobs += [
            (m, "extrapolate", spec.n_eval, spec.eval_seed, spec.window - 2, spec.entropy, spec.add_sub_entropy)
            for m in spec.extrapolate_modules()
        ]
        pools = _generate(jobs, min(len(jobs), os.cpu_count() or 1))
        return [[j[0], j[1], pool] for j, pool in zip(jobs, pools)]

    out = {s: [] for s in SPLITS}
    for module, split, pool in _cached_json(path, make):
        for i, (q, a) in enumerate(pool):
            out[split].append(
                Example(
                    *A.format_example(q, a),
                    level=None,
                    meta={"dataset": "mathematics_dataset", "module": module, "split": split, "index": i},
                )
            )
    return out


def spread(examples: list[Example], n: int) -> list[Example]:
    """Up to n examples, taken round-robin over their modules (so every module is represented)."""
    by: dict[str, list[Example]] = {}
    for e in examples:
        by.setdefault(e.meta["module"], []).append(e)
    out, k = [], 0
    while len(out) < n and any(k < len(v) for v in by.values()):
        out += [v[k] for v in by.values() if k < len(v)]
        k += 1
    return out[:n]
