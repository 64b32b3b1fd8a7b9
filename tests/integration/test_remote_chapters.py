"""Every chapter that loads a model runs end to end as a remote run would: the model behind the strict
NDIF simulation (`remote="strict"`: trace bodies serialised, only whitelisted modules importable, the
client holding no weights), its random-init control the documented narrow one (same depth and blocks
at a width that fits here: `EFFDEPTH_CONTROL_GB` set so small that the tiny model's control is
narrowed), at the `small` profile."""

import json

import nbformat
import pytest

from effdepth import profiles, running, scorecard
from effdepth.testing import save_tiny

CHAPTERS = ["model", "contributions", "skipping", "logit_lens", "complexity", "comparison"]


@pytest.mark.slow
def test_every_model_chapter_runs_remotely_with_the_narrow_control(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDEPTH_CONTROL_GB", "0.0003")  # the full width (64) does not fit: the control is 32 wide
    folder = save_tiny(tmp_path / "tiny-remote", "llama", n_layers=4)
    status = running.run(
        str(folder),
        chapters=CHAPTERS,
        remote="strict",
        extra=profiles.profile_values("small", str(folder)),
        out=tmp_path / "runs",
    )
    assert status == dict.fromkeys(CHAPTERS, "ok"), status
    nb = nbformat.read(tmp_path / "runs" / "contributions.ipynb", as_version=4)
    glued = scorecard.glued_values(nb)
    card = json.loads(glued["paper_shape_card"])
    assert card["state"] in (
        "as in the paper",
        "unlike the paper",
        "the untrained architecture shows it too",
        "inconclusive",
        "not testable here",
    )
    text = "\n".join(
        str(o.get("data", {})) + str(o.get("text", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "width" in text  # the page names the narrowed control's width
