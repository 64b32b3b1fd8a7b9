"""The prepared GPU check (issue 27, item 6) at a tiny size on the CPU: each chapter's items run under a
time budget and project the rest; the sizes are the profiles'; the 8B shape is Llama-3.1-8B's."""

import torch

from effdepth import gpucheck, profiles


def test_sizes_follow_the_profiles():
    paper, small = gpucheck.sizes("paper"), gpucheck.sizes("small")
    assert (
        paper["complexity"]["ig_steps"] == 256
        and paper["skipping"]["n_examples"] == 20
        and paper["linear_maps"]["window"] == 512
    )
    assert small["skipping"]["n_examples"] == 2 and small["contributions"]["n_controls"] == 1
    assert small["complexity"]["ig_steps"] == profiles.SMALL["pretrained"]["complexity.ig_steps"]


def test_the_8b_shape_is_llama_31_8b():
    s = gpucheck.LLAMA_31_8B
    params = s["vocab_size"] * s["hidden_size"] * 2 + s["num_hidden_layers"] * (
        s["hidden_size"] * s["hidden_size"] * 2
        + 2 * s["hidden_size"] * s["hidden_size"] // 4
        + 3 * s["hidden_size"] * s["intermediate_size"]
    )
    assert abs(params / 1e9 - 8.03) < 0.05  # Llama-3.1-8B has 8.03 B parameters


def test_chapters_run_under_a_budget_and_project_the_rest():
    shape = dict(gpucheck.SMALL_SHAPE, hidden_size=32, intermediate_size=64, num_hidden_layers=2, vocab_size=256)
    model = gpucheck.big_model("cpu", torch.float32, shape)
    size = gpucheck.sizes("small")
    rows = gpucheck.run_chapters(model, size, n_tokens=24, budget_s=0.0, log=lambda line: None)
    assert [r["chapter"] for r in rows] == ["contributions", "skipping", "logit_lens", "complexity", "linear_maps"]
    for r in rows:
        assert "error" not in r, r
        assert r["done"] == 1 and r["items"] >= 1 and r["projected_seconds"] >= r["seconds"] * r["items"] * 0.9 - 0.1
        assert r["peak_gb"] > 0
