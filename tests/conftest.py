import os
from pathlib import Path

import pytest
import torch

# Tiny models: one thread is faster than two (thread hand-off dominates), and steadier on a shared CPU.
torch.set_num_threads(1)
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "olmo2", "gemma2", "gemma3", "gpt2", "gpt_neox"]
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own result cache, so no test reads another's results."""
    monkeypatch.setenv("EFFDEPTH_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="session")
def tiny_models():
    """Random-weight models of every family wrapped for measurement (built once per session)."""
    from effdepth.models import wrap_module
    from effdepth.testing import char_tokenizer, tiny_model

    tok = char_tokenizer()
    return {f: wrap_module(tiny_model(f, vocab_size=len(tok)), char_tokenizer(), spec=f"tiny:{f}") for f in FAMILIES}


PROMPTS = [
    "The cat sat on the mat.",
    "Q: 12 + 7 = ? A: 19",
    "a b c d e f g h i j k l m n o p",
    "Hi",
]
