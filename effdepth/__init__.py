"""effdepth: measurements from "Do Language Models Use Their Depth Efficiently?" (Csordás, Manning, Potts).

The public measurements are importable from here; each lives in a module named after its family
(module names differ from function names so neither shadows the other).
"""

__version__ = "0.1.0"

from .adapters import UnsupportedArchitecture  # noqa: E402,F401
from .models import Model, ModelNotAvailable, load_model  # noqa: E402,F401
from .prompts import PromptError  # noqa: E402,F401
from .residual_contributions import contributions  # noqa: E402,F401

_LAZY = {
    "skip_effects": "skipping",
    "local_effects": "skipping",
    "logit_lens": "lens",
    "residual_erasure": "erasure",
    "integrated_gradients": "attribution",
    "depth_score": "depth",
    "linear_maps": "maps",
    "noise_floor": "precision",  # the bf16 (or any dtype's) noise floor of every measurement unit
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'effdepth' has no attribute '{name}'")
