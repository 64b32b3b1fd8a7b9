"""Hostile model folders (issue 11, items 1, 2, 10): one clear line naming the file, no code run, no stale numbers."""

import json
import os

import numpy as np
import pytest
import torch

import effdepth.access.folders as M
from effdepth import ModelNotAvailable, contributions, load_model
from effdepth.access.model import wrap_module
from effdepth.cli import main
from effdepth.errors import BadModelFolder
from effdepth.store import Store, cache_root
from effdepth.testing import char_tokenizer, save_tiny, tiny_model

PROMPTS = ["The cat sat on the mat.", "Q: 12 + 7 = ? A: 19"]


@pytest.fixture
def folder(tmp_path):
    return save_tiny(tmp_path / "m")


@pytest.fixture(autouse=True)
def _no_prompt(monkeypatch):
    """A [y/N] question would hang a batch run: any call to input() fails the test."""
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("asked the user a question"))


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# -- item 1: never run a folder's own code ------------------------------------------------------
def _plant_code(folder, marker):
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as EvilModel\n"
    )


def test_custom_code_config_is_refused_and_not_run(folder, tmp_path):
    marker = tmp_path / "code-ran"
    _plant_code(folder, marker)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadModelFolder) as err:
        load_model(str(folder))
    msg = _one_line(err)
    assert str(folder / "config.json") in msg and "auto_map" in msg and "trust_remote_code=False" in msg
    assert not marker.exists()


def test_custom_code_of_a_builtin_type_is_ignored_not_run(folder, tmp_path):
    """auto_map on a type transformers implements: the built-in class is used, the folder's code never runs."""
    marker = tmp_path / "code-ran"
    _plant_code(folder, marker)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    model = load_model(str(folder))
    assert type(model.hf).__module__.startswith("transformers.models.llama")
    assert not marker.exists()


def test_custom_tokenizer_code_is_refused(folder, tmp_path):
    marker = tmp_path / "code-ran"
    _plant_code(folder, marker)
    tk = json.loads((folder / "tokenizer_config.json").read_text())
    tk.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
    (folder / "tokenizer_config.json").write_text(json.dumps(tk))
    with pytest.raises(ModelNotAvailable) as err:
        load_model(str(folder))
    assert "tokenizer" in _one_line(err) and str(folder) in str(err.value)
    assert not marker.exists()


# -- item 10: broken folders -------------------------------------------------------------------------
def test_malformed_config_json(folder):
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 64,')
    with pytest.raises(BadModelFolder) as err:
        load_model(str(folder))
    assert str(folder / "config.json") in _one_line(err) and "not valid JSON" in str(err.value)


def test_config_json_that_is_not_a_config(folder):
    (folder / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(BadModelFolder, match="expected a JSON object") as err:
        load_model(str(folder))
    assert str(folder / "config.json") in _one_line(err)


def test_folder_without_config(folder):
    (folder / "config.json").unlink()
    with pytest.raises(BadModelFolder, match="has no config.json") as err:
        load_model(str(folder))
    assert str(folder) in _one_line(err)


def test_folder_without_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(BadModelFolder, match="has no weights") as err:
        load_model(str(folder))
    assert str(folder) in _one_line(err) and "model.safetensors" in str(err.value)


def test_truncated_safetensors(folder):
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    with pytest.raises(BadModelFolder, match="truncated") as err:
        load_model(str(folder))
    assert str(weights) in _one_line(err) and str(len(data) - 1000) in str(err.value)


def test_safetensors_with_a_garbage_header(folder):
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(BadModelFolder, match="not a readable safetensors file") as err:
        load_model(str(folder))
    assert str(folder / "model.safetensors") in _one_line(err)


def test_sharded_index_naming_a_missing_shard(folder):
    os.replace(folder / "model.safetensors", folder / "model-00001-of-00002.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    "lm_head.weight": "model-00001-of-00002.safetensors",
                    "model.norm.weight": "model-00002-of-00002.safetensors",
                }
            }
        )
    )
    with pytest.raises(BadModelFolder, match="model-00002-of-00002.safetensors") as err:
        load_model(str(folder))
    assert str(folder / "model.safetensors.index.json") in _one_line(err)


def test_missing_tokenizer_is_not_a_sentencepiece_message(folder):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(BadModelFolder, match="has no tokenizer") as err:
        load_model(str(folder))
    msg = _one_line(err)
    assert str(folder) in msg and "sentencepiece" not in msg and "tokenizer.json" in msg


def test_cli_prints_one_line_naming_the_file(folder, capsys):
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:5000])
    assert main(["check", "--model", str(folder)]) == 1  # `check` reports the failed load and exits non-zero
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if str(folder / "model.safetensors") in line]
    assert lines and all("Traceback" not in line for line in lines)  # one line names the damaged file


def test_good_folder_still_loads(folder):
    model = load_model(str(folder))
    assert model.n_layers == 4 and len(model.revision) == 16


# -- item 2: the revision follows every byte of the weights ----------------------------------------
def _tensor_offset(weights, name) -> int:
    n = int.from_bytes(weights.read_bytes()[:8], "little")
    return 8 + n + json.loads(weights.read_bytes()[8 : 8 + n])[name]["data_offsets"][0]


def test_late_layer_change_changes_revision_and_result(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = save_tiny(tmp_path / "big", d_model=128)  # 2.4 MB of weights: the late layers lie past the first MiB
    assert _tensor_offset(folder / "model.safetensors", "model.layers.3.mlp.down_proj.weight") > 1 << 20
    store = Store(tmp_path / "store")
    before = load_model(str(folder))
    old = contributions(before, PROMPTS, store=store).to_frame()
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        hf.model.layers[-1].mlp.down_proj.weight.mul_(4.0)  # the last tensors of the file, past its first MiB
    hf.save_pretrained(folder)  # into the same folder: same file names and sizes
    after = load_model(str(folder))
    assert after.revision != before.revision
    new = contributions(after, PROMPTS, store=store).to_frame()
    fresh = contributions(after, PROMPTS, store=Store(enabled=False)).to_frame()
    np.testing.assert_allclose(new.to_numpy(), fresh.to_numpy(), rtol=1e-6)  # not the cached old numbers
    assert new["rel_mlp"].iloc[-1] > 2 * old["rel_mlp"].iloc[-1]  # the scaled MLP writes more
    np.testing.assert_allclose(
        new.iloc[:-1].to_numpy(), old.iloc[:-1].to_numpy(), rtol=1e-5
    )  # earlier layers as before
    assert load_model(str(folder)).revision == after.revision  # and it is stable


def test_big_file_hash_is_remembered_and_invalidated(folder, monkeypatch):
    weights = folder / "model.safetensors"
    monkeypatch.setattr(M, "_RACY_NS", -(10**12))  # remember even a file written just now
    real = M.file_sha256(weights, remember_above=0)
    sidecars = list((cache_root() / "file-hashes").glob("*.json"))
    assert len(sidecars) == 1
    record = json.loads(sidecars[0].read_text())
    assert record["sha256"] == real
    sidecars[0].write_text(json.dumps({**record, "sha256": "0" * 64}))
    assert M.file_sha256(weights, remember_above=0) == "0" * 64  # the second call reads the sidecar, no rehash
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # any rewrite moves mtime/ctime
    assert M.file_sha256(weights, remember_above=0) == real


def test_fresh_file_hash_is_not_remembered(folder):
    """A file written within the timestamp granularity could change again unseen: hash it every time."""
    M.file_sha256(folder / "model.safetensors", remember_above=0)
    assert not list((cache_root() / "file-hashes").glob("*.json"))


def test_in_memory_models_differing_in_a_late_weight_get_different_revisions():
    tok = char_tokenizer()
    a = tiny_model("llama", vocab_size=len(tok))
    b = tiny_model("llama", vocab_size=len(tok))
    assert wrap_module(a, tok).revision == wrap_module(b, tok).revision
    with torch.no_grad():
        b.model.layers[-1].mlp.down_proj.weight[-1, -1] += 1e-3  # the parameter's last byte, past its first 4096
    assert wrap_module(a, tok).revision != wrap_module(b, tok).revision


def test_no_cache_hashes_every_time_and_writes_nothing(folder, monkeypatch):
    monkeypatch.setattr(M, "_RACY_NS", -(10**12))
    monkeypatch.setenv("EFFDEPTH_NO_CACHE", "1")
    assert M.file_sha256(folder / "model.safetensors", remember_above=0) == M.stream_sha256(
        folder / "model.safetensors"
    )
    assert not (cache_root() / "file-hashes").exists()


def test_every_transformers_load_in_the_package_refuses_remote_code():
    """Guard: each from_pretrained / from_config call in effdepth/ says trust_remote_code=False itself."""
    import ast
    from pathlib import Path

    import effdepth

    missing = []
    for py in Path(effdepth.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("from_pretrained", "from_config"):
                if not any(
                    k.arg == "trust_remote_code" and getattr(k.value, "value", None) is False for k in node.keywords
                ):
                    missing.append(f"{py.name}:{node.lineno}")
    assert not missing, missing
