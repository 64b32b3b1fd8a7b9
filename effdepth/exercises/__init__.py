"""Exercises of the course part of the book, each with a check against the package's reference.

Every exercise asks for one step of the paper's method as a small function; its check
(`check_<name>(fn)`) runs that function on a tiny random-weight model (effdepth.testing), compares
it with what the measurement functions of effdepth compute, and answers with a `Feedback`: passed,
or which common mistake the output matches and how to fix it.

    from effdepth import exercises as ex
    ex.check_relative_contribution(my_function)      # -> Feedback (shows as a coloured box in Jupyter)

The sets (one notebook each in notebooks/course/): relative contribution and cosine (§3.1),
skipping a layer (§3.2), the logit lens (§3.2), the depth score (§3.3), one entry of residual
erasure (§3.3), the closed-form linear map (§3.4).
"""

from __future__ import annotations

import inspect

from functools import lru_cache

from ._check import Feedback, fresh  # noqa: F401


def _build(n_layers: int, d_model: int, seed: int, family: str):
    from ..models import wrap_module
    from ..testing import char_tokenizer, tiny_model

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


def explore(draw, interactive: bool, value: int, maximum: int, description: str):
    """Draw one picture of a layer index: `draw(value)` on a static page, or, with `interactive`
    (JupyterLab), an ipywidgets slider over 0 … `maximum` that redraws (`description` labels it)."""
    if not interactive:
        return draw(value)
    import ipywidgets as w

    name = next(iter(inspect.signature(draw).parameters))  # the layer index's argument (s, b, …)
    return w.interact(draw, **{name: w.IntSlider(value=value, min=0, max=maximum, description=description)})


from .contribution import check_relative_contribution  # noqa: E402,F401
from .depthscore import check_depth_score  # noqa: E402,F401
from .erasure_entry import check_erasure_entry  # noqa: E402,F401
from .lens_layer import check_lens_layer  # noqa: E402,F401
from .linear_map import check_linear_map  # noqa: E402,F401
from .skip import check_skip_row  # noqa: E402,F401
from .solutions import show_solution  # noqa: E402,F401

SETS = ("contribution", "skip", "lens_layer", "depthscore", "erasure_entry", "linear_map")
