"""Every family: h_{l+1} = h_l + a_l + m_l at every layer, and traced logits equal a plain forward."""

import pytest
import torch

from effdepth import UnsupportedArchitecture
from effdepth.access.adapters import adapter_for, supported_families
from effdepth.testing import tiny_config
from tests.conftest import FAMILIES
from tests.hooks import capture


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_identity_through_adapter(tiny_models, family):
    model = tiny_models[family]
    ids = model.encode("Q: 3 + 4 = ? A: 7. The cat sat.")[None]
    adapter = model.adapter
    hs, attns, mlps = [], [], []
    with torch.no_grad(), model.trace(ids):
        for layer in adapter.layer_modules(model.nn):
            hs.append(layer.input.save())
            a = adapter.module(layer, adapter.attn).output
            attns.append((a[0] if adapter.attn_is_tuple else a).save())
            mlps.append(adapter.module(layer, adapter.mlp).output.save())
        last = adapter.layer_modules(model.nn)[-1].output.save()
        logits = model.nn.output.logits.save()
    hs.append(last)
    assert len(attns) == model.n_layers
    for l in range(model.n_layers):
        torch.testing.assert_close(hs[l] + attns[l] + mlps[l], hs[l + 1], rtol=0, atol=1e-5)
        # the reads are not trivially zero
        assert attns[l].abs().max() > 1e-4 and mlps[l].abs().max() > 1e-4
    plain = model.hf(ids).logits
    torch.testing.assert_close(logits, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_agrees_with_hand_written_hooks(tiny_models, family):
    """The adapter's read-out points are the ones the hooks in tests/hooks.py name independently."""
    model = tiny_models[family]
    ids = model.encode("hello there")[None]
    hs, attns, mlps, _ = capture(model.hf, family, ids)
    for l in range(model.n_layers):
        torch.testing.assert_close(hs[l] + attns[l] + mlps[l], hs[l + 1], rtol=0, atol=1e-5)


def test_wrong_read_point_breaks_identity(tiny_models):
    """For OLMo 2 the raw attention output is NOT a_l: the test above would catch such an adapter."""
    model = tiny_models["olmo2"]
    ids = model.encode("hello there")[None]
    layer = model.hf.model.layers[0]
    got = {}
    handles = [  # hooks must return None, or they would replace the module's input/output
        layer.register_forward_pre_hook(lambda m, a: got.update(h=a[0]) or None),
        layer.self_attn.register_forward_hook(lambda m, i, o: got.update(a=o[0]) or None),
        layer.mlp.register_forward_hook(lambda m, i, o: got.update(m=o) or None),
        layer.register_forward_hook(lambda m, i, o: got.update(out=o) or None),
    ]
    with torch.no_grad():
        model.hf(ids)
    for h in handles:
        h.remove()
    assert (got["h"] + got["a"] + got["m"] - got["out"]).abs().max() > 1e-3


def test_post_ln_refused_with_reason():
    with pytest.raises(UnsupportedArchitecture, match="post-LN"):
        adapter_for(tiny_config("bert"))


def test_unknown_architecture_names_supported_families():
    class Cfg:
        model_type = "fancy_new_arch"

    with pytest.raises(UnsupportedArchitecture) as err:
        adapter_for(Cfg())
    for fam in supported_families():
        assert fam in str(err.value)


def test_gpt_neox_sequential_residual_flag():
    assert adapter_for(tiny_config("gpt_neox")).parallel_residual
    assert not adapter_for(tiny_config("gpt_neox", use_parallel_residual=False)).parallel_residual
