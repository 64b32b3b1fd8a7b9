"""Benchmarks: each submodule exposes `run_benchmarks(names=None) -> list[dict]`.

Every benchmark measures its contenders side by side in one run, interleaved, and reports medians
and ratios (never absolute times as pass/fail). `effdepth bench [module ...]` runs them.
"""

from __future__ import annotations

import importlib
import pkgutil
import statistics
import time
from typing import Callable


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1, raw: bool = False) -> dict:
    """Median wall time (s) of each contender, run in turn A, B, A, B, … so drift hits all alike
    (``raw=True``: every round's time, in order, so callers can form per-round ratios)."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times if raw else {name: statistics.median(v) for name, v in times.items()}


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> dict[str, float]:
    """Median and quartiles of the per-round ratio num/den from :func:`interleaved` (raw): each
    round's two runs are adjacent in time, so this ratio is robust to a machine whose speed drifts."""
    r = sorted(a / b for a, b in zip(times[num], times[den]))
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
    return {"median": statistics.median(r), "q1": q[0], "q3": q[2]}


def modules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]


def run_benchmarks(names: list[str] | None = None) -> list[dict]:
    """Run the benchmark modules named (default: all) and return their result rows."""
    rows = []
    for name in names or modules():
        if name not in modules():
            raise SystemExit(f"effdepth bench: no benchmark '{name}'; available: {', '.join(modules())}")
        mod = importlib.import_module(f"{__name__}.{name}")
        rows.extend(mod.run_benchmarks())
    return rows
