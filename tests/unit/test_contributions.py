"""§3.1 against an independent hook-based computation, plus invariants."""

import numpy as np
import pytest
import torch

from effdepth import contributions
from effdepth.access.adapters import adapter_for
from effdepth.measures.contributions import MAX_COLUMNS, MEAN_COLUMNS
from tests.conftest import PROMPTS
from tests.hooks import capture


def reference(model, family, prompts):
    """Token-weighted means and maxima from plain hooks, one prompt at a time, float64."""
    per_tok = {c: [] for c in MEAN_COLUMNS}
    parallel = adapter_for(model.hf.config).parallel_residual
    cos = lambda x, y: (x * y).sum(-1) / (x.norm(dim=-1).clamp_min(1e-6) * y.norm(dim=-1).clamp_min(1e-6))
    for p in prompts:
        hs, attns, mlps, _ = capture(model.hf, family, model.encode(p)[None])
        rows = {c: [] for c in MEAN_COLUMNS}
        for l in range(len(attns)):
            h, a, m = hs[l][0].double(), attns[l][0].double(), mlps[l][0].double()
            r = h if parallel else h + a
            rows["rel_layer"].append((a + m).norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-6))
            rows["rel_attn"].append(a.norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-6))
            rows["rel_mlp"].append(m.norm(dim=-1) / r.norm(dim=-1).clamp_min(1e-6))
            rows["cos_layer"].append(cos(a + m, h))
            rows["cos_attn"].append(cos(a, h))
            rows["cos_mlp"].append(cos(m, r))
            rows["cos_io"].append(cos(h, hs[l + 1][0].double()))
            rows["norm_h"].append(h.norm(dim=-1))
            rows["norm_attn"].append(a.norm(dim=-1))
            rows["norm_mlp"].append(m.norm(dim=-1))
        for c in MEAN_COLUMNS:
            per_tok[c].append(torch.stack(rows[c]))  # [L, T]
    cat = {c: torch.cat(v, dim=1) for c, v in per_tok.items()}
    means = {c: v.mean(1).numpy() for c, v in cat.items()}
    maxes = {c: cat[c].max(1).values.numpy() for c in MAX_COLUMNS}
    return means, maxes


@pytest.mark.parametrize("family", ["llama", "olmo2", "gpt2", "gpt_neox", "gemma2"])
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("method", ["fast", "trace"])
def test_matches_hooks(tiny_models, family, batch_size, method):
    model = tiny_models[family]
    frame = contributions(model, PROMPTS, batch_size=batch_size, method=method).to_frame()
    means, maxes = reference(model, family, PROMPTS)
    assert list(frame.index) == list(range(model.n_layers))
    for c in MEAN_COLUMNS:
        np.testing.assert_allclose(frame[c].to_numpy(), means[c], rtol=2e-4, atol=1e-5, err_msg=c)
    for c in MAX_COLUMNS:
        np.testing.assert_allclose(frame[f"max_{c}"].to_numpy(), maxes[c], rtol=2e-4, atol=1e-5, err_msg=c)


def test_invariants_and_zeroed_layer(tiny_models):
    model = tiny_models["llama"]
    layer = model.hf.model.layers[1]
    saved = [p.detach().clone() for p in (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight)]
    try:
        with torch.no_grad():  # layer 1 writes nothing
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        frame = contributions(model, PROMPTS, store=None).to_frame()
    finally:
        with torch.no_grad():
            layer.self_attn.o_proj.weight.copy_(saved[0])
            layer.mlp.down_proj.weight.copy_(saved[1])
    assert frame.loc[1, "rel_layer"] == 0 and frame.loc[1, "rel_attn"] == 0 and frame.loc[1, "max_rel_mlp"] == 0
    assert frame.loc[1, "cos_io"] == pytest.approx(1.0, abs=1e-5)
    assert (frame.loc[[0, 2, 3], "rel_layer"] > 0).all()
    for c in ("cos_layer", "cos_attn", "cos_mlp", "cos_io"):
        assert frame[c].between(-1 - 1e-6, 1 + 1e-6).all()
    assert (frame["max_rel_layer"] >= frame["rel_layer"] - 1e-7).all()


def test_second_call_reads_the_cache(tiny_models, monkeypatch):
    model = tiny_models["llama"]
    first = contributions(model, PROMPTS[:2]).to_frame()
    import effdepth.measures.contributions as mod

    monkeypatch.setattr(mod, "gram_local", lambda *a, **k: pytest.fail("recomputed instead of reading the cache"))
    second = contributions(model, PROMPTS[:2]).to_frame()
    assert first.equals(second)


def test_empty_prompt_list_is_an_error(tiny_models):
    with pytest.raises(ValueError, match="at least one prompt"):
        contributions(tiny_models["llama"], [])


def test_unknown_method_is_an_error(tiny_models):
    with pytest.raises(ValueError, match="'fast' or 'trace'"):
        contributions(tiny_models["llama"], PROMPTS, method="hooks")


def test_remote_local_runs_the_nnsight_path():
    from effdepth.access.model import wrap_module
    from effdepth.testing import char_tokenizer, tiny_model

    tok = char_tokenizer()
    remote = wrap_module(tiny_model("llama", vocab_size=len(tok)), char_tokenizer(), spec="tiny:llama", remote="local")
    res = contributions(remote, PROMPTS[:3], batch_size=2)  # auto: the trace path, through NDIF's serialisation
    assert res.meta["params"]["method"] == "trace"
    with pytest.raises(ValueError, match="local model"):
        contributions(remote, PROMPTS[:3], method="fast")
    plain = contributions(wrap_module(remote.hf, char_tokenizer(), spec="tiny:llama"), PROMPTS[:3], batch_size=2)
    assert plain.meta["params"]["method"] == "fast"
    np.testing.assert_allclose(res.to_frame().to_numpy(), plain.to_frame().to_numpy(), rtol=1e-5, atol=1e-6)
