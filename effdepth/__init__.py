"""effdepth: measurements from "Do Language Models Use Their Depth Efficiently?" (Csordás, Manning, Potts).

The public API: `load_model`, `ModelSpec`, the errors a script catches, and the measurements (each
defined in `effdepth.measures.<its name>`).
"""

from effdepth.access.load import load_model
from effdepth.access.model import Model
from effdepth.errors import ModelNotAvailable, PromptError, UnsupportedArchitecture
from effdepth.measures.contributions import contributions
from effdepth.measures.depth_score import depth_score
from effdepth.measures.integrated_gradients import integrated_gradients
from effdepth.measures.linear_maps import linear_maps
from effdepth.measures.logit_lens import logit_lens
from effdepth.measures.residual_erasure import residual_erasure
from effdepth.measures.skip_effects import local_effects, skip_effects
from effdepth.precision import noise_floor  # the bf16 (or any dtype's) noise floor of every measurement unit
from effdepth.spec import ModelSpec
from effdepth.version import __version__

__all__ = [
    "__version__",
    "ModelNotAvailable",
    "Model",
    "ModelSpec",
    "PromptError",
    "UnsupportedArchitecture",
    "contributions",
    "depth_score",
    "integrated_gradients",
    "linear_maps",
    "load_model",
    "local_effects",
    "logit_lens",
    "noise_floor",
    "residual_erasure",
    "skip_effects",
]
