"""The random-init control of a model, and the chapters' shared Findings/glue helper."""

import pytest
import torch

from effdepth.access import controls
from effdepth.chapters import NOT_PAPER, PAPER, SAME_AS_CONTROL, Findings, glue_all, paper_verdict


def test_control_has_the_architecture_not_the_weights(tiny_models):
    lm = tiny_models["llama"]
    c0, c1 = controls.controls_of(lm, seeds=(0, 1))
    assert c0 is controls.control_of(lm, 0)  # cached per process
    assert c0.spec == "tiny:llama · random init (seed 0)" and c0.revision != lm.revision != c1.revision
    assert c0.hf.config.to_dict() == lm.hf.config.to_dict() and c0.tokenizer is lm.tokenizer
    assert c0.dtype == lm.dtype and c0.n_layers == lm.n_layers
    w, w0, w1 = (m.hf.model.layers[0].mlp.up_proj.weight for m in (lm, c0, c1))
    assert not torch.equal(w, w0) and not torch.equal(w0, w1)
    state = torch.random.get_rng_state()
    controls._CACHE.clear()
    again = controls.control_of(lm, 0)
    assert torch.equal(again.hf.model.layers[0].mlp.up_proj.weight, w0)  # seeded: reproducible
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    with pytest.raises(ValueError, match="at least one seed"):
        controls.controls_of(lm, seeds=())


def test_paper_verdict_both_sides():
    assert paper_verdict(True, True) == PAPER
    assert paper_verdict(True, False) == SAME_AS_CONTROL
    assert paper_verdict(False, True) == NOT_PAPER


def test_findings_merge_and_glue(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, v, display=True: glued.__setitem__(name, v))
    f = Findings(numbers={"x": 1.5}, verdicts={"shape": "yes"}, text={"s": "**bold**"})
    g = f.merge(Findings(numbers={"x": 2}), prefix="c_")
    assert g.numbers == {"x": 1.5, "c_x": 2}
    with pytest.raises(ValueError, match="twice"):
        f.merge(Findings(numbers={"x": 2}))
    names = glue_all(g, prefix="p_")
    assert names == ["p_x", "p_c_x", "p_shape", "p_s"] and glued["p_x"] == 1.5 and glued["p_shape"] == "yes"
    assert glued["p_s"].data == "**bold**"  # a Markdown object, for {glue:md}
    with pytest.raises(ValueError, match="both"):
        glue_all(Findings(numbers={"a": 1}, text={"a": "b"}))
