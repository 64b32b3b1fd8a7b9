"""Benchmarks: each submodule exposes `run_benchmarks(names=None) -> list[dict]`.

Every benchmark measures its contenders side by side in one run, interleaved, and reports medians
and ratios (never absolute times as pass/fail). `effdepth bench [module ...]` runs them (`make bench`);
`python -m effdepth.bench.<module>` runs one. This is the project's one benchmark home; the prepared
GPU check is `effdepth bench --device cuda` (effdepth/gpucheck.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import pkgutil
import statistics
import time
from collections.abc import Callable


def interleaved(
    contenders: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1, raw: bool = False
) -> dict:
    """Median wall time (s) of each contender, run in rounds A B C, C B A, A B C, … so drift hits all
    alike and no contender always runs first (``raw=True``: every round's time, in round order, so
    callers can form per-round ratios)."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times = {name: [] for name in contenders}
    order = list(contenders.items())
    for r in range(repeats):
        for name, fn in order if r % 2 == 0 else order[::-1]:
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


def steady_malloc() -> bool:
    """Ask glibc's malloc to keep freed memory (no trimming, no per-allocation mmap) for this process.

    Without it, a few extra allocations per layer (the §3.1 Gram statistics) can flip glibc into
    returning memory to the OS and faulting it back in: on this project's 2-core VM some processes
    then take 20 000–30 000 minor page faults per forward and time 1.2× instead of 1.03× for the
    same code. Benchmarks compare code, not the allocator's mood, so every contender runs with it.
    Returns False where there is no glibc (macOS, musl): nothing is changed there.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


# Scripts run with `python -m effdepth.bench.<name>` that measure one thing for sizing (not contenders
# side by side): `effdepth bench` leaves them out.
SCRIPTS = ("smollm_chapters",)


def modules() -> list[str]:
    """The benchmarks `effdepth bench` runs (each exposes `run_benchmarks()`)."""
    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in SCRIPTS]


def run_benchmarks(names: list[str] | None = None) -> list[dict]:
    """Run the benchmark modules named (default: all) and return their result rows."""
    steady = steady_malloc()
    rows = []
    for name in names or modules():
        if name not in modules():
            raise SystemExit(f"effdepth bench: no benchmark '{name}'; available: {', '.join(modules())}")
        mod = importlib.import_module(f"{__name__}.{name}")
        rows.extend(dict(row, steady_malloc=steady) for row in mod.run_benchmarks())
    return rows
