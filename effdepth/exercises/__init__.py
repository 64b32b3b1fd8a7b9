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

from effdepth.exercises._check import Feedback, fresh  # noqa: F401
from effdepth.exercises._models import block_parts, final_norm, reference_model, tiny, unembedding  # noqa: F401
from effdepth.exercises.contribution import check_relative_contribution  # noqa: F401
from effdepth.exercises.depthscore import check_depth_score  # noqa: F401
from effdepth.exercises.erasure_entry import check_erasure_entry  # noqa: F401
from effdepth.exercises.lens_layer import check_lens_layer  # noqa: F401
from effdepth.exercises.linear_map import check_linear_map  # noqa: F401
from effdepth.exercises.skip import check_skip_row  # noqa: F401
from effdepth.exercises.solutions import show_solution  # noqa: F401


def explore(draw, interactive: bool, value: int, maximum: int, description: str):
    """Draw one picture of a layer index: `draw(value)` on a static page, or, with `interactive`
    (JupyterLab), an ipywidgets slider over 0 … `maximum` that redraws (`description` labels it)."""
    if not interactive:
        return draw(value)
    import ipywidgets as w

    name = next(iter(inspect.signature(draw).parameters))  # the layer index's argument (s, b, …)
    return w.interact(draw, **{name: w.IntSlider(value=value, min=0, max=maximum, description=description)})


SETS = ("contribution", "skip", "lens_layer", "depthscore", "erasure_entry", "linear_map")
