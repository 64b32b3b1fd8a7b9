"""Every supported family, hand-written or derived from its module tree: on a tiny random model built
from its config class, h_(l+1) = h_l + a_l + m_l at every block through the nnsight trace, the traced
logits equal a plain transformers forward, and the engine (block calls from recorded arguments, the
decode of the last residual) reproduces the model. Both sides: wrong read points are refused."""

import pytest
import torch

from effdepth import UnsupportedArchitecture
from effdepth.access.adapters import REFUSED, Adapter, adapter_for, confirm, derive_adapter
from effdepth.testing import char_tokenizer, tiny_config, tiny_model

# One family per kind the issue names, and the derived families the table lists (kept in step by
# test_family_doc_matches_code in the slow table test); two blocks each, every kind of block once.
FAMILIES = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "olmo2",
    "gemma2",
    "gpt2",
    "gpt_neox",  # hand-written
    "gemma",
    "gemma3_text",
    "glm",
    "glm4",
    "granite",
    "smollm3",
    "starcoder2",
    "olmo",
    "olmo3",
    "phi",
    "phi3",
    "stablelm",
    "persimmon",
    "gptj",
    "codegen",
    "gpt_bigcode",
    "bloom",
    "exaone4",
    "helium",
    "apertus",
    "seed_oss",
    "ernie4_5",
    "internlm3",
    "nemotron",  # dense (sandwich: olmo3, glm4, exaone4)
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "phimoe",
    "deepseek_v2",
    "granitemoe",
    "jetmoe",
    "dots1",
    "hunyuan_v1_moe",
    "minimax_m2",  # mixture of experts
    "qwen3_next",
    "qwen3_5_text",
    "lfm2",  # hybrid attention / linear attention / convolution
]


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def _tiny(family, tok):
    return tiny_model(family, n_layers=2, vocab_size=len(tok))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_identity_and_parity(family, tok):
    from effdepth.access.model import wrap_module
    from effdepth.engine import clean_run, decode

    hf = _tiny(family, tok)
    model = wrap_module(hf, char_tokenizer(), spec=f"tiny:{family}")
    a = model.adapter
    ids = model.encode("Q: 3 + 4 = ? A: 7. The cat sat.")[None]
    hs, attns, mlps = [], [], []
    with torch.no_grad(), model.trace(ids):
        for layer in a.layer_modules(model.nn):
            hs.append(layer.input.save())
            out = a.module(layer, a.attn).output
            attns.append((out[0] if a.attn_is_tuple else out).save())
            mlps.append(a.module(layer, a.mlp).output.save())
        hs.append(a.layer_modules(model.nn)[-1].output.save())
        logits = model.nn.output.logits.save()
    assert len(attns) == model.n_layers >= 2
    for l in range(model.n_layers):
        h, out = hs[l], hs[l + 1][0] if isinstance(hs[l + 1], tuple) else hs[l + 1]
        scale = max(1.0, float(out.abs().max()))
        assert float((h + attns[l] + mlps[l] - out).abs().max()) <= 1e-5 * scale
        assert attns[l].abs().max() > 1e-4 and mlps[l].abs().max() > 1e-4  # neither read is trivially zero
    with torch.no_grad():
        plain = hf(ids, use_cache=False).logits
        torch.testing.assert_close(logits, plain, rtol=0, atol=1e-5)
        run = clean_run(model, ids[0])  # the engine's block calls rebuild h_L from h_0 ...
        torch.testing.assert_close(run.suffix(0, run.h[0][None])[0], run.h[-1], rtol=0, atol=1e-4)
        torch.testing.assert_close(decode(model, run.h[-1]), plain[0], rtol=0, atol=1e-4)  # ... and decode it


def test_moe_read_is_the_routed_sum():
    """Mixtral's m_l is the MoE block's output: the router-weighted sum of its experts, recomputed here
    from the router logits and each expert by hand."""
    hf = tiny_model("mixtral", n_layers=2, vocab_size=96)
    a = adapter_for(hf.config)
    block = a.layer_modules(hf)[0]
    moe = a.module(block, a.mlp)
    got = {}
    h1 = moe.register_forward_pre_hook(lambda m, args: got.update(x=args[0]))
    h2 = moe.register_forward_hook(lambda m, args, out: got.update(y=out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        hf(torch.randint(3, 90, (1, 7)), use_cache=False)
    h1.remove(), h2.remove()
    x = got["x"].reshape(-1, got["x"].shape[-1])
    cfg = hf.config
    with torch.no_grad():
        probs = torch.softmax(torch.nn.functional.linear(x, moe.gate.weight).float(), -1)
        w, idx = probs.topk(cfg.num_experts_per_tok, -1)
        w = w / w.sum(-1, keepdim=True)
        e = moe.experts
        y = torch.zeros_like(x)
        for k in range(cfg.num_experts_per_tok):
            for j in range(cfg.num_local_experts):
                rows = idx[:, k] == j
                if rows.any():
                    gate, up = torch.nn.functional.linear(x[rows], e.gate_up_proj[j]).chunk(2, -1)
                    out = torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, e.down_proj[j])
                    y[rows] += w[rows, k, None] * out
    torch.testing.assert_close(got["y"].reshape(y.shape), y, rtol=1e-4, atol=1e-5)


def test_wrong_read_points_are_refused():
    """Pointing the MLP read at the pre-MLP norm, or the attention read at its input norm, breaks the identity."""
    hf = tiny_model("llama", n_layers=2, vocab_size=96)
    ids = torch.randint(3, 90, (1, 7))
    good = adapter_for(hf.config)
    assert confirm(good, hf, ids)["identity"] < 1e-5
    for bad in (
        Adapter(**{**good.__dict__, "mlp": "post_attention_layernorm"}),
        Adapter(**{**good.__dict__, "attn": "input_layernorm", "attn_is_tuple": False}),
    ):
        with pytest.raises(UnsupportedArchitecture, match="block 0"):
            confirm(bad, hf, ids)


def test_derivation_agrees_with_hand_written_entries():
    """The module-tree derivation finds the read points the declarative entries name (sandwich and parallel too)."""
    for family in ("llama", "olmo2", "gemma2", "gpt2", "gpt_neox"):
        hf = tiny_model(family, n_layers=2, vocab_size=96)
        hand = adapter_for(hf.config)
        got = derive_adapter(hf, torch.randint(3, 90, (1, 7)), family=family)
        assert (
            got.layers,
            got.attn,
            got.mlp,
            got.final_norm,
            got.unembed,
            got.embed,
            got.attn_is_tuple,
            got.parallel_residual,
        ) == (
            hand.layers,
            hand.attn,
            hand.mlp,
            hand.final_norm,
            hand.unembed,
            hand.embed,
            hand.attn_is_tuple,
            hand.parallel_residual,
        ), family


def test_parallel_residual_detected_both_ways():
    assert adapter_for(tiny_config("phi", n_layers=2)).parallel_residual  # phi: attention and MLP read the same norm
    assert not adapter_for(tiny_config("phi3", n_layers=2)).parallel_residual


def test_hybrid_blocks_get_alternatives():
    """Qwen3-Next mixes linear-attention and attention blocks: one adapter reads both kinds."""
    a = adapter_for(tiny_config("qwen3_next", n_layers=2))
    assert "|" in a.attn and "linear_attn" in a.attn


def test_refused_families_say_why():
    from transformers import CONFIG_MAPPING

    for model_type, words in (
        ("bert", "post-LN"),
        ("bart", "encoder-decoder"),
        ("mamba", "state-space"),
        ("falcon_h1", "Mamba"),
    ):
        with pytest.raises(UnsupportedArchitecture, match=words):
            adapter_for(CONFIG_MAPPING[model_type]())
    assert all(len(reason) < 200 and "\n" not in reason for reason in REFUSED.values())


def test_config_level_adapter(tmp_path):
    """`effdepth_adapter` in config.json declares an adapter for a model type effdepth has no entry for."""
    cfg = tiny_config("llama", n_layers=2)
    cfg.model_type = "my_new_arch"

    declared = dict(
        family="mine",
        model_types=("my_new_arch",),
        layers="model.layers",
        attn="self_attn",
        mlp="mlp",
        final_norm="model.norm",
        unembed="lm_head",
        embed="model.embed_tokens",
        attn_is_tuple=True,
    )
    cfg.effdepth_adapter = declared
    assert adapter_for(cfg).family == "mine"
    cfg.effdepth_adapter = {**declared, "no_such_field": 1}
    with pytest.raises(UnsupportedArchitecture, match="effdepth_adapter"):
        adapter_for(cfg)


@pytest.mark.slow
def test_family_doc_matches_code():
    """book/families.md is the output of `effdepth check --families` for the pinned transformers, at
    least 30 families are supported, and every family of FAMILIES above is among them."""
    from pathlib import Path

    from effdepth.access.adapters import family_table, family_table_markdown

    rows = family_table()
    doc = (Path(__file__).resolve().parents[2] / "book" / "families.md").read_text()
    assert doc.split(FAMILY_MARKER, 1)[1].strip() == family_table_markdown(rows).strip()
    supported = {r["family"] for r in rows if r["status"] == "supported"}
    assert len(supported) >= 30
    assert set(FAMILIES) - {"gemma3"} <= supported | {"gemma3_text"}


FAMILY_MARKER = "<!-- generated by `effdepth check --families`; do not edit below -->"
