"""The tiny models the exercises run on: the notebook's own copy (`tiny`) and the checks' reference
(`reference_model`), with the parts of a block a student's code reads."""

from __future__ import annotations

from functools import lru_cache

from effdepth.access.model import wrap_module
from effdepth.exercises._check import fresh
from effdepth.testing import char_tokenizer, tiny_model


def _build(n_layers: int, d_model: int, seed: int, family: str):
    tok = char_tokenizer()
    module = tiny_model(family, seed=seed, n_layers=n_layers, d_model=d_model, vocab_size=len(tok))
    return wrap_module(module, tok, spec=f"tiny:{family}-L{n_layers}-d{d_model}-s{seed}")


@lru_cache(maxsize=4)
def tiny(n_layers: int = 4, d_model: int = 64, seed: int = 0, family: str = "llama"):
    """A tiny random-weight model of `family` with the character tokenizer, as an effdepth `Model`
    (random weights: the numbers mean nothing about trained models, the computation is the same).
    The notebook's own copy: the checks never use it (see `reference_model`)."""
    return _build(n_layers, d_model, seed, family)


@lru_cache(maxsize=4)
def _pristine(n_layers: int, d_model: int, seed: int, family: str):
    return _build(n_layers, d_model, seed, family)


def reference_model(model=None, n_layers: int = 4, d_model: int = 64, seed: int = 0, family: str = "llama"):
    """The model a check builds its references from: the tiny model of these sizes, built for the
    checks alone (no student code ever holds it: each attempt gets a `fresh` copy), or, when a
    `model` is given, a fresh snapshot of it as it is now."""
    return _pristine(n_layers, d_model, seed, family) if model is None else fresh(model)


def block_parts(model, layer: int):
    """(block, attention module, MLP module) of decoder block `layer` (0-indexed) of an effdepth
    Model. The attention module returns a tuple whose first element is a_l; the MLP returns m_l."""
    a = model.adapter
    block = a.layer_modules(model.hf)[layer]
    return block, a.module(block, a.attn), a.module(block, a.mlp)


def final_norm(model):
    """The model's final norm (applied to h_L before the unembedding)."""
    return model.adapter.module(model.hf, model.adapter.final_norm)


def unembedding(model):
    """The unembedding (the LM head: residual after the final norm -> logits)."""
    return model.adapter.module(model.hf, model.adapter.unembed)
