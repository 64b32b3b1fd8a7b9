"""Run the §3.2 benchmarks (skip matrix: fast path vs the paper's way; logit-lens peak memory).

    python bench/skipping.py [skip_current] [skip_future] [lens_memory]

Same as `effdepth bench skipping` (all three); see effdepth/bench/skipping.py for what is measured.
"""

import sys

from effdepth.bench.skipping import run_benchmarks

if __name__ == "__main__":
    for row in run_benchmarks(sys.argv[1:] or None):
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
