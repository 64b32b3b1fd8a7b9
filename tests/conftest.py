import os
from pathlib import Path

import pytest
import torch

# Tiny models: one thread is faster than two (thread hand-off dominates), and steadier on a shared CPU.
torch.set_num_threads(1)
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "olmo2", "gemma2", "gemma3", "gpt2", "gpt_neox"]
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _file_state(path: Path):
    """(bytes, mtime_ns) of a file, or None when it does not exist."""
    try:
        return path.read_bytes(), path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _nnsight_user_config() -> Path:
    """The file nnsight's `CONFIG.save()` writes (nnsight.schema.config._user_config_path)."""
    if os.environ.get("NNSIGHT_CONFIG"):
        return Path(os.environ["NNSIGHT_CONFIG"]).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME", "~/.config")).expanduser() / "nnsight" / "config.yaml"


@pytest.fixture(scope="session", autouse=True)
def _nnsight_config_untouched(tmp_path_factory):
    """The suite never writes nnsight's config file (an NDIF API key must live in memory only, issue
    27): the user's file is compared byte for byte (and by mtime) after the suite, and, while the
    suite runs, NNSIGHT_CONFIG points at a file in a temporary folder that must still not exist at
    the end (so a write is caught even though it could no longer reach the user's file)."""
    user = _nnsight_user_config()
    before = _file_state(user)
    decoy = tmp_path_factory.mktemp("nnsight-config") / "config.yaml"
    previous = os.environ.get("NNSIGHT_CONFIG")
    os.environ["NNSIGHT_CONFIG"] = str(decoy)
    yield decoy
    if previous is None:
        os.environ.pop("NNSIGHT_CONFIG", None)
    else:
        os.environ["NNSIGHT_CONFIG"] = previous
    assert _file_state(user) == before, f"the test suite changed the user's nnsight config file {user}"
    assert not decoy.exists(), f"something in the test suite wrote nnsight's config file: {decoy.read_text()!r}"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own result cache, so no test reads another's results."""
    monkeypatch.setenv("EFFDEPTH_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="session")
def tiny_models():
    """Random-weight models of every family wrapped for measurement (built once per session)."""
    from effdepth.access.model import wrap_module
    from effdepth.testing import char_tokenizer, tiny_model

    tok = char_tokenizer()
    return {f: wrap_module(tiny_model(f, vocab_size=len(tok)), char_tokenizer(), spec=f"tiny:{f}") for f in FAMILIES}


PROMPTS = [
    "The cat sat on the mat.",
    "Q: 12 + 7 = ? A: 19",
    "a b c d e f g h i j k l m n o p",
    "Hi",
]
