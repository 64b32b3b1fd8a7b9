"""§4b integrated gradients: completeness, and agreement with a plain full-forward implementation."""

import numpy as np
import pytest
import torch

from effdepth import integrated_gradients
from tests.hooks import READ_POINTS, get

PROMPT, ANSWER = "Q: 5+7-5 A:", " 7"


def reference_ig(model, family, part, layer, steps):
    """IG for one layer by full forwards of the whole model with a forward hook that puts the path
    point in place of the module's output, one path point at a time (float64 accumulation)."""
    layers_path, attn_name, attn_tuple, mlp_name = READ_POINTS[family]
    block = get(model.hf, layers_path)[layer]
    module = {"layer": block, "attention": get(block, attn_name), "mlp": get(block, mlp_name)}[part]
    p_ids = model.encode(PROMPT)
    ids = torch.cat([p_ids, model.encode(ANSWER, add_special_tokens=False)])[None]
    scored = torch.arange(len(p_ids) - 1, ids.shape[1] - 1)
    captured = {}

    def grab(mod, inp, out):
        captured["x"] = (out[0] if isinstance(out, tuple) else out).detach()

    h = module.register_forward_hook(grab)
    with torch.no_grad():
        model.hf(input_ids=ids)
    h.remove()
    x = captured["x"][0].double()
    base = x.mean(0, keepdim=True).expand_as(x)
    total = torch.zeros_like(x)
    for k in range(steps):
        point = (base + (k / steps) * (x - base)).float().requires_grad_(True)

        def put(mod, inp, out):
            if isinstance(out, tuple):
                return (point[None],) + tuple(out[1:])
            return point[None]

        h = module.register_forward_hook(put)
        try:
            probs = torch.softmax(model.hf(input_ids=ids).logits[0].float(), -1)
            p = probs[scored, ids[0, scored + 1]].sum()
            (g,) = torch.autograd.grad(p, point)
        finally:
            h.remove()
        total += g.double()
    return ((total * (x - base)).sum(-1) / steps).numpy()


@pytest.mark.parametrize(
    "family,part", [("llama", "layer"), ("llama", "attention"), ("olmo2", "mlp"), ("gpt2", "layer")]
)
def test_matches_full_forward_reference(tiny_models, family, part):
    model = tiny_models[family]
    res = integrated_gradients(model, PROMPT, ANSWER, part=part, steps=6, batch_size=4)
    T = len(res.token_ids)
    assert res.attribution.shape == (model.n_layers, T)
    for layer in (0, model.n_layers - 1):
        ref = reference_ig(model, family, part, layer, steps=6)
        np.testing.assert_allclose(res.attribution[layer], ref, rtol=2e-3, atol=2e-6, err_msg=f"layer {layer}")


def test_completeness_gap_shrinks_with_steps(tiny_models):
    model = tiny_models["llama"]
    coarse = integrated_gradients(model, PROMPT, ANSWER, steps=4, batch_size=4)
    fine = integrated_gradients(model, PROMPT, ANSWER, steps=128, batch_size=64)
    delta = float(fine.p_input) - fine.p_baseline  # P(x) − P(x') per layer
    assert np.all(np.abs(delta) > 1e-4)  # the baseline really changes the answer's probability
    np.testing.assert_allclose(fine.p_baseline, coarse.p_baseline, rtol=1e-5)  # k = 0 is the baseline itself
    np.testing.assert_allclose(fine.attribution.sum(-1), delta, rtol=0.05, atol=2e-4)
    assert np.abs(fine.completeness_gap).max() < np.abs(coarse.completeness_gap).max()
    np.testing.assert_allclose(fine.completeness_gap, fine.attribution.sum(-1) - delta)
    # P(x) is the summed teacher-forced probability of the answer tokens
    ids = fine.token_ids
    s = int(fine.answer_start)
    with torch.no_grad():
        probs = torch.softmax(model.hf(input_ids=torch.tensor(ids)[None]).logits[0].float(), -1)
    assert float(fine.p_input) == pytest.approx(float(probs[np.arange(s - 1, len(ids) - 1), ids[s:]].sum()), rel=1e-5)


def test_bad_part_is_an_error(tiny_models):
    with pytest.raises(ValueError, match="part must be one of"):
        integrated_gradients(tiny_models["llama"], PROMPT, ANSWER, part="heads")
