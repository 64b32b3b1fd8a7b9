"""§4a residual erasure against an independent hook-based computation, plus its structure."""

import numpy as np
import pytest
import torch

from effdepth import residual_erasure
from effdepth.measures.residual_erasure import mean_residuals
from tests.hooks import READ_POINTS, capture, get

PROMPT, ANSWER = "Q: 5+7-5 A:", " 7"
REFERENCE = ["The cat sat on the mat.", "Q: 12 + 7 = ? A: 19", "a b c d e f"]


def reference_means(model, family, prompts):
    """Mean of every residual (block inputs and the last block's output) over all positions, by hooks."""
    sums, n = None, 0
    for p in prompts:
        hs, _, _, _ = capture(model.hf, family, model.encode(p)[None])
        s = torch.stack([h[0].double().sum(0) for h in hs])
        sums = s if sums is None else sums + s
        n += hs[0].shape[1]
    return sums / n


@torch.no_grad()
def reference_effect(model, family, ids, answer_start, means):
    """Full forwards with a forward pre-hook that overwrites h_b[t] (one batch row per t); float64 probabilities."""
    layers = get(model.hf, READ_POINTS[family][0])
    final_norm = {"gpt2": "transformer.ln_f", "gpt_neox": "gpt_neox.final_layer_norm"}.get(family, "model.norm")
    targets = list(layers) + [get(model.hf, final_norm)]
    T = len(ids)
    scored = list(range(answer_start - 1, T - 1))
    clean = torch.softmax(model.hf(input_ids=ids[None]).logits[0].double(), -1)
    out = np.full((len(targets), T, len(scored)), np.nan)
    rows = torch.arange(T - 1)  # row i of the batch erases position t = i + 1
    for b, module in enumerate(targets):

        def pre(mod, args, kwargs, b=b):
            key = None if args else "hidden_states"
            h = (args[0] if args else kwargs[key]).clone()
            h[rows, rows + 1] = means[b].to(h.dtype)
            return ((h,) + tuple(args[1:]), kwargs) if key is None else (args, {**kwargs, key: h})

        handle = module.register_forward_pre_hook(pre, with_kwargs=True)
        try:
            p = torch.softmax(model.hf(input_ids=ids[None].repeat(T - 1, 1)).logits.double(), -1)
        finally:
            handle.remove()
        out[b, 1:] = (p[:, scored] - clean[scored]).norm(dim=-1).numpy()
    return out


@pytest.mark.parametrize("family", ["llama", "gpt2", "olmo2"])
def test_matches_hooks_every_entry(tiny_models, family):
    model = tiny_models[family]
    res = residual_erasure(model, PROMPT, ANSWER, reference_prompts=REFERENCE, per_position=True, batch_size=7)
    means = reference_means(model, family, REFERENCE)
    np.testing.assert_allclose(mean_residuals(model, REFERENCE).double().numpy(), means.numpy(), rtol=1e-5, atol=1e-5)
    ids = torch.cat([model.encode(PROMPT), model.encode(ANSWER, add_special_tokens=False)])
    answer_start = len(model.encode(PROMPT))
    ref = reference_effect(model, family, ids, answer_start, means)
    L, T = model.n_layers, len(ids)
    assert res.effect.shape == (L + 1, T)
    assert int(res.answer_start) == answer_start and list(res.predicting) == list(range(answer_start - 1, T - 1))
    assert np.isnan(res.effect[:, 0]).all()  # position 0 is never erased
    np.testing.assert_allclose(res.position_effect[:, 1:], ref[:, 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.effect[:, 1:], ref[:, 1:].max(-1), rtol=1e-4, atol=1e-5)
    assert (res.effect[:, 1:-1] > 0).any(axis=1).all()  # every residual index matters somewhere


def test_last_residual_changes_only_its_own_prediction(tiny_models):
    model = tiny_models["llama"]
    res = residual_erasure(model, PROMPT, ANSWER, reference_prompts=REFERENCE, per_position=True)
    L = model.n_layers
    scored = list(res.predicting)
    last = res.position_effect[L]  # [T erased, P scored]
    for t in range(1, last.shape[0]):
        for j, p in enumerate(scored):
            if p == t:
                assert last[t, j] > 1e-4, (t, p)
            else:  # nothing but float noise of differently shaped matmuls
                assert last[t, j] < 1e-6, (t, p)
    # causality at every depth: erasing position t never changes a prediction at an earlier position
    for b in range(L + 1):
        for t in range(1, last.shape[0]):
            for j, p in enumerate(scored):
                if p < t:
                    assert res.position_effect[b, t, j] < 1e-6
    assert (res.effect[:, -1] == 0).all()  # the last token predicts nothing that is scored


def test_trace_method_and_explicit_vectors_agree(tiny_models):
    model = tiny_models["qwen3"]
    vectors = mean_residuals(model, ["Q: 1+2 A: 3"])  # §3.5: the mean of one counterfactual example
    fast = residual_erasure(model, PROMPT, ANSWER, vectors=vectors, method="fast")
    trace = residual_erasure(model, PROMPT, ANSWER, vectors=vectors.numpy(), method="trace", batch_size=9)
    np.testing.assert_allclose(fast.effect, trace.effect, rtol=1e-4, atol=1e-5)
    via_prompts = residual_erasure(model, PROMPT, ANSWER, reference_prompts=["Q: 1+2 A: 3"])
    np.testing.assert_allclose(fast.effect, via_prompts.effect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[L\+1, d\]"):
        residual_erasure(model, PROMPT, ANSWER, vectors=vectors[:-1])


def test_front_option_and_frame(tiny_models):
    model = tiny_models["llama"]
    res = residual_erasure(model, PROMPT, ANSWER, reference_prompts=REFERENCE, front=True)
    assert not np.isnan(res.effect).any() and (res.effect[:, 0] > 0).any()
    frame = res.to_frame()
    assert len(frame) == res.effect.size and set(frame["token"]) >= set("Q:57")
