"""MoEUT (effdepth.access.moeut): a real transformers causal LM whose shared layers the measurements see
as one layer per application."""

import numpy as np
import pytest
import torch

from effdepth.access import moeut as M

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=4,
    group_size=2,
    num_attention_heads=2,
    head_dim=16,
    att_n_experts=3,
    att_k=2,
    ff_n_experts=6,
    ff_expert_size=8,
    ff_k=2,
)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return M.MoEUTForCausalLM(M.MoEUTConfig(**{**TINY, **kw})).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from effdepth.tokenizer import zoo_tokenizer

    folder = tmp_path_factory.mktemp("moeut")
    tiny(seed=3).save_pretrained(folder)
    zoo_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(saved):
    import effdepth

    return effdepth.load_model(str(saved))


def ids_of(*texts):
    from effdepth.tokenizer import BOS_ID, encode

    return torch.tensor([[BOS_ID] + encode(t) for t in texts])


def test_forward_backward_reaches_every_shared_weight():
    model = tiny().train()
    ids = torch.randint(4, 100, (4, 24))
    out = model(input_ids=ids)
    assert out.logits.shape == (4, 24, 100)
    torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 100), ids[:, 1:].reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert torch.isfinite(out.logits).all()


def test_entropy_regulariser_only_adds_gradient():
    """The auxiliary loss leaves the logits unchanged and only adds gradient to the expert gates."""
    model = tiny()
    ids = torch.randint(4, 100, (2, 16))
    with torch.no_grad():
        eval_logits = model(input_ids=ids).logits
    model.train()
    train_logits = model(input_ids=ids).logits
    assert torch.equal(train_logits, eval_logits)
    train_logits.sum().mul(0).backward()  # the LM loss contributes nothing: what is left is the regulariser
    sel = model.model.shared_layers[0].ffn.sel.weight.grad
    assert sel is not None and sel.abs().sum() > 0
    head = model.lm_head.weight.grad  # the regulariser does not depend on the unembedding
    assert head is None or head.abs().sum() == 0
    model.config.ff_entropy_reg = model.config.att_entropy_reg = 0.0
    model.zero_grad()
    model(input_ids=ids).logits.sum().mul(0).backward()
    assert model.model.shared_layers[0].ffn.sel.weight.grad.abs().sum() == 0


def test_shared_layers_really_share_weights():
    model = tiny()
    G = model.config.group_size
    L = model.config.num_hidden_layers
    layers, shared = model.model.layers, model.model.shared_layers
    assert len(layers) == L and len(shared) == G
    for i, layer in enumerate(layers):
        assert layer.attn.weights is shared[i % G].attention
        assert layer.mlp.weights is shared[i % G].ffn
        assert not list(layer.parameters())  # applications own no parameters
    assert not any(k.startswith("model.layers.") for k in model.state_dict())
    # zeroing the shared output experts of group member 0 silences the attention of applications 0 and 2 only
    with torch.no_grad():
        shared[0].attention.o_experts.zero_()
    seen = {}
    hooks = [
        layers[i].attn.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o.abs().max().item()))
        for i in range(L)
    ]
    with torch.no_grad():
        model(input_ids=ids_of("Q: 1+1 A: 2"))
    for h in hooks:
        h.remove()
    assert seen[0] == 0 and seen[2] == 0
    assert seen[1] > 0 and seen[3] > 0


def test_parameter_count_matching():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=100,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=6,
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=False,
        )
    )
    target = M.n_params(llama)
    cfg = M.matched_config(
        target, **{**TINY, "hidden_size": 64, "num_hidden_layers": 6, "head_dim": 32, "ff_expert_size": 64}
    )
    model = M.MoEUTForCausalLM(cfg)
    assert M.n_params(model) == M.moeut_param_count(cfg)
    per_expert = 2 * 64 * 64 + 64  # keys, values and one gate row per expert, for each of the 2 distinct layers
    assert abs(M.n_params(model) - target) <= per_expert * cfg.group_size / 2
    assert abs(M.n_params(model) - target) / target < 0.03


def test_sparse_and_dense_experts_agree():
    dense, sparse = tiny(moe_impl="dense"), tiny(moe_impl="sparse")
    sparse.load_state_dict(dense.state_dict())
    ids = torch.randint(4, 100, (3, 40))
    with torch.no_grad():
        torch.testing.assert_close(dense(input_ids=ids).logits, sparse(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_padding_and_logits_to_keep():
    model = tiny()
    a, b = ids_of("Q: 12+3 A: 15"), ids_of("Q: 7 A: 7")
    batch = torch.zeros(2, a.shape[1], dtype=torch.long)
    batch[0], batch[1, : b.shape[1]] = a[0], b[0]
    mask = (torch.arange(a.shape[1]) < torch.tensor([[a.shape[1]], [b.shape[1]]])).long()
    with torch.no_grad():
        both = model(input_ids=batch, attention_mask=mask).logits
        torch.testing.assert_close(both[1, : b.shape[1]], model(input_ids=b).logits[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            model(input_ids=a, logits_to_keep=1).logits[0, -1], both[0, -1], rtol=1e-5, atol=1e-5
        )


def test_generate_is_greedy_argmax():
    model = tiny()
    ids = ids_of("Q: 2*3 A:")
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    seq = ids
    with torch.no_grad():
        for _ in range(4):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(out, seq)


def test_load_model_on_a_saved_folder(saved, loaded):
    from transformers import AutoModelForCausalLM

    assert loaded.adapter.family == "moeut"
    assert loaded.n_layers == TINY["num_hidden_layers"]
    assert loaded.d_model == TINY["hidden_size"]
    again = AutoModelForCausalLM.from_pretrained(saved)
    ids = ids_of("Q: 9-4 A: 5")
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, tiny(seed=3)(input_ids=ids).logits)
        torch.testing.assert_close(loaded.hf(input_ids=ids).logits, again(input_ids=ids).logits)


def test_adapter_identity_and_traced_logits(loaded):
    """h_{l+1} = h_l + a_l + m_l for every application, read through nnsight; traced logits = plain forward."""
    ad = loaded.adapter
    ids = ids_of("Q: What is 3 - (2 + 8)? A: -7")
    hs, attns, mlps, outs = [], [], [], []
    with torch.no_grad(), loaded.trace(ids):
        for layer in ad.layer_modules(loaded.nn):
            hs.append(layer.input.save())
            attns.append(ad.module(layer, ad.attn).output.save())
            mlps.append(ad.module(layer, ad.mlp).output.save())
            outs.append(layer.output.save())
        logits = loaded.nn.output.logits.save()
    with torch.no_grad():
        plain = loaded.hf(input_ids=ids).logits
    torch.testing.assert_close(logits, plain, rtol=0, atol=0)
    for l in range(loaded.n_layers):
        torch.testing.assert_close(hs[l] + attns[l] + mlps[l], outs[l], rtol=0, atol=0)
        if l + 1 < loaded.n_layers:
            torch.testing.assert_close(outs[l], hs[l + 1], rtol=0, atol=0)
        assert attns[l].abs().max() > 0 and mlps[l].abs().max() > 0
    # applications of the same shared weights still write different things (their inputs differ)
    assert not torch.allclose(attns[0], attns[2])


def test_measurements_run_on_moeut(loaded):
    """The book's measurements on MoEUT: the fast engine and the nnsight trace form agree."""
    import effdepth
    from effdepth.measures.residual_erasure import mean_residuals

    prompts = ["Q: What is 3 - (2 + 8)? A: -7", "Q: Calculate 12 divided by 4. A: 3"]
    fast = effdepth.skip_effects(loaded, prompts, mode="future", n_splits=2, method="fast")
    trace = effdepth.skip_effects(loaded, prompts, mode="future", n_splits=2, method="trace")
    np.testing.assert_allclose(fast.layer_effect, trace.layer_effect, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.output_effect, trace.output_effect, rtol=1e-4, atol=1e-5)
    assert fast.layer_effect.shape == (4, 4)
    vectors = mean_residuals(loaded, ["Q: What is 5 + (1 - 9)? A: -3"])
    er_fast = effdepth.residual_erasure(loaded, "Q: What is 3 - (2 + 8)? A:", " -7", vectors=vectors, method="fast")
    er_trace = effdepth.residual_erasure(loaded, "Q: What is 3 - (2 + 8)? A:", " -7", vectors=vectors, method="trace")
    assert er_fast.effect.shape == (5, len(loaded.encode("Q: What is 3 - (2 + 8)? A: -7")))
    np.testing.assert_allclose(er_fast.effect, er_trace.effect, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert np.nanmax(er_fast.effect) > 0
    frame = effdepth.contributions(loaded, prompts).to_frame()
    assert len(frame) == 4 and (frame.rel_layer > 0).all()
