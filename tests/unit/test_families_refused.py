"""OPT, gpt_oss and Falcon (issue 27, item 12): each refusal states the reason that is true of the model,
shown here with plain hooks on a tiny instance; OPT's tiny instance keeps its projection switch."""

import pytest
import torch

from effdepth.access.adapters import REFUSED, UnsupportedArchitecture, adapter_for, confirm
from effdepth.testing import perturb, shrink_config


def _tiny(config, seed=0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return perturb(AutoModelForCausalLM.from_config(shrink_config(config), dtype=torch.float32)).eval()


def _record(model, block, names):
    """{name: (first output of that submodule of `block`, a clone taken when the hook ran)} of one forward."""
    got = {}

    def hook(name):
        def keep(mod, args, out):
            got[name] = (out, (out[0] if isinstance(out, tuple) else out).clone())

        return keep

    handles = [block.get_submodule(n).register_forward_hook(hook(n)) for n in names]

    def pre(m, a, k):
        got.setdefault("h", (a[0] if a else k["hidden_states"]).clone())

    def post(m, a, o):
        got.setdefault("out", o[0] if isinstance(o, tuple) else o)

    handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    handles.append(block.register_forward_hook(post))
    try:
        with torch.no_grad():
            model(input_ids=torch.randint(3, model.config.vocab_size, (1, 9)), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return got


def test_shrink_config_shrinks_opts_projection_and_keeps_the_switch():
    from transformers import OPTConfig

    plain = shrink_config(OPTConfig())  # word_embed_proj_dim == hidden_size: no project_in / project_out
    assert plain.word_embed_proj_dim == plain.hidden_size == 64
    projected = shrink_config(OPTConfig(hidden_size=1024, word_embed_proj_dim=512))  # OPT-350m's switch
    assert projected.word_embed_proj_dim == 32 != projected.hidden_size


def test_opt_is_refused_because_its_mlp_is_inline_on_a_flattened_residual():
    from transformers import CONFIG_MAPPING

    with pytest.raises(UnsupportedArchitecture, match="fc1, activation and fc2 inline"):
        adapter_for(CONFIG_MAPPING["opt"]())
    model = _tiny(CONFIG_MAPPING["opt"]())
    block = model.model.decoder.layers[0]
    assert model.model.decoder.project_out is None  # the shrunk projection equals the width: no extra layers
    got = _record(model, block, ["self_attn", "fc2"])
    h, a, out = got["h"], got["self_attn"][1], got["out"]
    m = got["fc2"][1]
    assert m.ndim == 2 and m.shape[0] == h.shape[0] * h.shape[1]  # [B*T, d], not the residual's [B, T, d]
    torch.testing.assert_close(h + a + m.view_as(h), out, rtol=0, atol=1e-5)  # the residual itself is additive


def test_gpt_oss_is_refused_because_its_mlp_returns_a_tuple():
    from transformers import CONFIG_MAPPING

    with pytest.raises(UnsupportedArchitecture, match="returns a tuple"):
        adapter_for(CONFIG_MAPPING["gpt_oss"]())
    model = _tiny(CONFIG_MAPPING["gpt_oss"]())
    got = _record(model, model.model.layers[0], ["self_attn", "mlp"])
    assert isinstance(got["mlp"][0], tuple)
    h, a, m, out = got["h"], got["self_attn"][1], got["mlp"][1], got["out"]
    torch.testing.assert_close(h + a + m, out, rtol=0, atol=1e-5)  # with element 0 the identity holds


def test_parallel_falcon_is_refused_because_attention_is_added_into_the_mlp_output_in_place():
    from transformers import FalconConfig

    with pytest.raises(UnsupportedArchitecture, match="in place"):
        adapter_for(FalconConfig())
    model = _tiny(FalconConfig())
    got = _record(model, model.transformer.h[0], ["self_attention", "mlp"])
    h, a, out = got["h"], got["self_attention"][1], got["out"]
    m_read, m_at_hook = got["mlp"][0], got["mlp"][1]
    torch.testing.assert_close(
        h + a + m_at_hook, out, rtol=0, atol=1e-5
    )  # cloned when the hook ran: the identity holds
    torch.testing.assert_close(m_read, m_at_hook + a, rtol=0, atol=1e-5)  # the tensor a hook keeps became a + m


def test_sequential_falcon_rw_is_derived():
    from transformers import FalconConfig

    config = FalconConfig(parallel_attn=False, new_decoder_architecture=False, alibi=True)
    adapter = adapter_for(config)
    assert adapter.mlp == "mlp" and not adapter.parallel_residual
    model = _tiny(config)
    confirm(adapter, model, torch.randint(3, 96, (1, 9)))
    assert all(len(REFUSED[t]) < 200 for t in ("opt", "gpt_oss", "falcon"))
