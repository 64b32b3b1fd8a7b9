"""The benchmark harness: round order, per-round ratios, and the §3.1 benchmark end to end (tiny size)."""

from effdepth.bench import interleaved, paired_ratio
from effdepth.bench.contributions import capture_vs_forward


def test_rounds_alternate_order_so_no_contender_always_runs_first():
    calls = []
    interleaved({k: (lambda k=k: calls.append(k)) for k in "ABC"}, repeats=3, warmup=0)
    assert "".join(calls) == "ABCCBAABC"


def test_paired_ratio_is_per_round():
    times = {"x": [2.0, 4.0, 6.0], "y": [1.0, 4.0, 2.0]}  # per-round ratios 2, 1, 3
    r = paired_ratio(times, "x", "y")
    assert r["median"] == 2.0 and r["q1"] <= 2.0 <= r["q3"]


def test_contributions_benchmark_runs_both_paths():
    row = capture_vs_forward(n_layers=2, d_model=32, batch=2, T=16, repeats=3)
    assert row["ratio"] > 0 and row["trace_ratio"] > 0
    assert row["ratio_iqr"][0] <= row["ratio"] <= row["ratio_iqr"][1]
    assert "L=2 d=32 batch=2x16" in row["setting"]
