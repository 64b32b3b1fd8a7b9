"""effdepth: measurements from "Do Language Models Use Their Depth Efficiently?" (Csordás, Manning, Potts)."""

__version__ = "0.1.0"

from .models import Model, ModelNotAvailable, load_model  # noqa: E402,F401
from .adapters import UnsupportedArchitecture  # noqa: E402,F401
