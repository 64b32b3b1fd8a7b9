"""Controls (issue 27, items 3 and 12): built directly on the model's device and dtype, identified by
config + seed (no weights copied back to be hashed), released on a GPU when the next one is built, and
never the model itself (a `random:` model, or a saved random init, is not compared with itself)."""

import warnings

import pytest
import torch

from effdepth.access import controls
from effdepth.access.load import load_model
from effdepth.access.model import wrap_module
from effdepth.testing import char_tokenizer, save_tiny, tiny_model


@pytest.fixture(autouse=True)
def _fresh_cache():
    controls._CACHE.clear()
    yield
    controls._CACHE.clear()


def _lm(dtype=torch.float32):
    tok = char_tokenizer()
    return wrap_module(tiny_model("llama", vocab_size=len(tok)).to(dtype), tok, spec="tiny:llama")


def test_control_is_identified_by_config_and_seed_not_by_its_weights(monkeypatch):
    lm = _lm()
    monkeypatch.setattr(
        torch.Tensor,
        "numpy",
        lambda self: (_ for _ in ()).throw(AssertionError("weights copied to numpy to be hashed")),
    )
    c0, c1 = controls.controls_of(lm, (0, 1))
    assert c0.revision == controls.control_revision(lm.hf.config, 0, torch.float32, "cpu") != c1.revision
    assert c0.revision != controls.control_revision(lm.hf.config, 0, torch.bfloat16, "cpu")
    assert c0.revision.startswith("init-") and c0 is controls.control_of(lm, 0)
    monkeypatch.undo()
    controls._CACHE.clear()
    again = controls.control_of(lm, 0)  # same identity, same weights
    assert again.revision == c0.revision and controls.same_weights(again, c0)


def test_control_is_built_in_the_models_dtype_and_on_its_device():
    lm = _lm(torch.bfloat16)
    c = controls.control_of(lm, 0)
    assert {p.dtype for p in c.hf.parameters()} == {torch.bfloat16}
    on_meta = controls.init_weights(lm.hf.config, 0, torch.bfloat16, "meta")  # created on the device itself
    assert {p.device.type for p in on_meta.parameters()} == {"meta"} and {p.dtype for p in on_meta.parameters()} == {
        torch.bfloat16
    }


def test_only_one_control_stays_resident_on_an_accelerator(monkeypatch):
    from types import SimpleNamespace

    built = []

    def fake_build(lm, seed, dtype, device, config=None):
        built.append(seed)
        return SimpleNamespace(revision=f"init-{seed}", device=torch.device(device))

    monkeypatch.setattr(controls, "_build", fake_build)
    from effdepth.testing import tiny_config

    lm = SimpleNamespace(
        spec="big",
        revision="trained",
        remote=False,
        dtype=torch.bfloat16,
        device=torch.device("meta"),
        hf=SimpleNamespace(config=tiny_config("llama")),
    )
    cs = controls.controls_of(lm, (0, 1, 2))
    for _c in cs:
        assert sum(1 for k in controls._CACHE if k[4] == "meta") == controls.RESIDENT_ON_ACCELERATOR
    assert cs[2] is cs[2] and built == [0, 1, 2]  # the one in use is kept
    assert cs[0].revision == "init-0" and built == [0, 1, 2, 0]  # an evicted one is built again when used
    assert controls.release("meta") == 1 and not controls._CACHE


def test_controls_stay_cached_on_the_cpu():
    lm = _lm()
    cs = controls.controls_of(lm, (0, 1, 2))
    built = list(cs)
    assert len(controls._CACHE) == 3 and all(a is b for a, b in zip(built, cs))


def test_a_random_model_is_not_its_own_control(tmp_path):
    lm = load_model("random:" + str(save_tiny(tmp_path / "m", "llama", n_layers=2)))
    with pytest.raises(controls.SameAsModel):
        controls.control_of(lm, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cs = controls.controls_of(lm, range(3))
    assert 0 not in cs.seeds and len(set(cs.seeds)) == 3 and cs.replaced == {0: cs.seeds[0]}
    assert "is itself the random init of seed 0" in cs.note and any("itself" in str(w.message) for w in caught)
    assert not any(controls.same_weights(lm, c) for c in cs)


def test_a_saved_random_init_is_noticed_by_its_weights(tmp_path):
    """A folder holding transformers' seed-0 init (no `random:` in its name): the weights tell."""
    from transformers import AutoModelForCausalLM

    from effdepth.testing import tiny_config

    tok = char_tokenizer()
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(tiny_config("llama", n_layers=2, vocab_size=len(tok)), dtype=torch.float32)
    hf.save_pretrained(tmp_path / "init")
    tok.save_pretrained(tmp_path / "init")
    lm = load_model(str(tmp_path / "init"))
    cs = controls.controls_of(lm, (0, 1))
    first = cs[0]
    assert cs.seeds[0] != 0 and "itself" in cs.note and not controls.same_weights(lm, first)
