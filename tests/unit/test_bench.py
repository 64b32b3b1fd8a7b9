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


def test_lens_benchmark_runs_end_to_end():
    from effdepth.bench.lens import lens_vs_forward

    shape = dict(
        n_layers=2,
        d_model=32,
        vocab_size=2048,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    row = lens_vs_forward(shape, n_prompts=2, T=12, repeats=3)
    assert row["ratio"] > 0 and row["ratio_iqr"][0] <= row["ratio"] <= row["ratio_iqr"][1]
    assert "L=2 d=32 V=2048, 2 prompts x 12 tokens" in row["setting"]
    # 2·(L+1)·d·V per token against 2·(non-embedding weights + W_out) per token
    assert 1 < row["unembedding_floor"] < 3


def test_one_benchmark_home_runs_every_benchmark_and_leaves_the_sizing_script_out():
    import subprocess
    import sys

    from effdepth.bench import SCRIPTS, modules

    assert set(modules()) == {"contributions", "erasure", "lens", "maps", "skipping"}
    assert "smollm_chapters" in SCRIPTS and "smollm_chapters" not in modules()
    done = subprocess.run(
        [sys.executable, "-m", "effdepth.bench.smollm_chapters", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--measure" in done.stdout, done.stderr
