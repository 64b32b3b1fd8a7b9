"""§3.2 logit lens against a hook reference that decodes every block input by hand."""

import numpy as np
import pytest
import torch

from effdepth import logit_lens
from effdepth.access.model import wrap_module
from effdepth.testing import char_tokenizer, tiny_model
from tests.conftest import PROMPTS
from tests.hooks import capture, get

DECODE = {  # family: (final norm, unembedding), written out independently of effdepth/access/adapters.py
    "llama": ("model.norm", "lm_head"),
    "gemma2": ("model.norm", "lm_head"),
    "gpt2": ("transformer.ln_f", "lm_head"),
    "gpt_neox": ("gpt_neox.final_layer_norm", "lm_head"),
    "olmo2": ("model.norm", "lm_head"),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU 2 OpenMP threads make each small op
    ~100x slower (spin-waiting); restored afterwards for the other test files."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@torch.no_grad()
def reference(model, family, prompts, k=5):
    """[P, L+1] KL and overlap against the model's own output logits (float64)."""
    norm_path, head_path = DECODE[family]
    norm, head = get(model.hf, norm_path), get(model.hf, head_path)
    cap = getattr(model.hf.config, "final_logit_softcapping", None)
    kls, ovs = [], []
    for p in prompts:
        hs, _, _, logits = capture(model.hf, family, model.encode(p)[None])
        lf = torch.log_softmax(logits[0].double(), -1)
        row_kl, row_ov = [], []
        for h in hs:  # h_0 … h_{L-1} (block inputs) and h_L
            lg = head(norm(h[0])).double()
            if cap:
                lg = torch.tanh(lg / cap) * cap
            lp = torch.log_softmax(lg, -1)
            row_kl.append(float((lp.exp() * (lp - lf)).sum(-1).mean()))
            tb, tf = lp.topk(k).indices, lf.topk(k).indices
            row_ov.append(float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(tb, tf)])))
        kls.append(row_kl)
        ovs.append(row_ov)
    return np.array(kls), np.array(ovs)


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2", "gpt_neox", "olmo2"])
def test_lens_matches_hook_reference(tiny_models, family):
    model = tiny_models[family]
    res = logit_lens(model, PROMPTS[:2])
    ref_kl, ref_ov = reference(model, family, PROMPTS[:2])
    np.testing.assert_allclose(res.example_kl, ref_kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.example_topk_overlap, ref_ov, atol=1e-6)
    np.testing.assert_allclose(res.kl, ref_kl[:, :-1].mean(0), rtol=1e-4, atol=1e-6)
    assert res.kl.shape == (model.n_layers,) and res.kl.min() > 1e-3  # early residuals are far from the output
    # the lens of the final residual is the model's own output distribution
    assert res.final_kl == 0 and res.final_topk_overlap == 1
    assert np.abs(ref_kl[:, -1]).max() < 1e-6 and (ref_ov[:, -1] == 1).all()


def test_chunked_trace_and_remote_paths_agree(tiny_models):
    model = tiny_models["gemma2"]  # final logit soft-capping
    fast = logit_lens(model, PROMPTS[:2])
    chunked = logit_lens(model, PROMPTS[:2], max_elems=3 * model.vocab_size + 1)  # 3 positions at a time, no cache
    traced = logit_lens(model, PROMPTS[:2], method="trace", max_elems=5 * model.vocab_size)
    for other in (chunked, traced):
        np.testing.assert_allclose(other.example_kl, fast.example_kl, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(other.example_topk_overlap, fast.example_topk_overlap, atol=1e-6)
    tok = char_tokenizer()
    remote = wrap_module(tiny_model("llama", vocab_size=len(tok)), char_tokenizer(), spec="tiny:llama", remote="local")
    res = logit_lens(remote, PROMPTS[1:2])
    assert res.meta["params"]["method"] == "trace"
    plain = logit_lens(wrap_module(remote.hf, char_tokenizer(), spec="tiny:llama"), PROMPTS[1:2])
    np.testing.assert_allclose(res.example_kl, plain.example_kl, rtol=1e-4, atol=1e-6)
    assert res.final_kl == pytest.approx(0, abs=1e-6) and res.final_topk_overlap == 1


def test_frame_and_arguments(tiny_models):
    model = tiny_models["llama"]
    res = logit_lens(model, PROMPTS[:1], k=3)
    frame = res.to_frame()
    assert list(frame.index) == list(range(model.n_layers + 1))
    assert frame.loc[model.n_layers, "kl"] == 0 and frame.loc[0, "residual"] == "input of layer 0"
    assert frame.topk_overlap.between(0, 1).all()
    with pytest.raises(ValueError, match="at least one prompt"):
        logit_lens(model, [])
    with pytest.raises(ValueError, match="k must be"):
        logit_lens(model, PROMPTS, k=0)


@pytest.mark.slow
def test_notebook_executes_on_a_tiny_model(tmp_path, monkeypatch):
    import nbformat

    from effdepth import running
    from effdepth.testing import save_tiny

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel: one thread is fastest for a tiny model
    folder = save_tiny(tmp_path / "m", "llama", n_layers=3)
    out = running.execute(
        running.NOTEBOOKS / "logit_lens.md", tmp_path / "logit_lens.ipynb", {"model": str(folder), "n_examples": 3}
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert sum(any(k.endswith("image/png") for k in o.get("data", {})) for o in outputs) >= 2
    # glued findings are stored under papermill's record mime types; the run text names the model
    text = "\n".join(
        str(v)
        for o in outputs
        for k, v in o.get("data", {}).items()
        if k.endswith(("text/markdown", "text/plain", "text/html"))
    )
    assert folder.name in text and "nnsight" in text  # by its folder name: no machine path
    assert "the final residual gives KL 0.0e+00 and overlap 1.00" in text


def test_blockwise_topk_equals_topk():
    from effdepth.measures.logit_lens import _topk

    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 4096, generator=g)
    z[3, 100:105] = 9.0 + torch.arange(5.0)  # all of one row's top 5 in one block
    z[4, ::64] = 7.0 + torch.rand(64, generator=g)  # one per block
    zmax, top = _topk(z, 5)
    ref = z.topk(5, -1)
    assert torch.equal(zmax[:, 0], z.amax(-1))
    assert torch.equal(top.sort(-1).values, ref.indices.sort(-1).values)
    small_max, small_top = _topk(z[:, :100], 5)  # small vocabulary: plain topk
    assert torch.equal(small_top, z[:, :100].topk(5, -1).indices)


def test_lens_on_a_large_vocabulary_matches_reference():
    """V = 4096 takes the blockwise top-k and several position chunks."""
    model = wrap_module(tiny_model("llama", vocab_size=4096, n_layers=3), char_tokenizer(), spec="tiny:llama-4096")
    res = logit_lens(model, PROMPTS[:2], max_elems=4 * 4 * 4096)  # 4 positions (x 4 residuals) per chunk
    ref_kl, ref_ov = reference(model, "llama", PROMPTS[:2])
    np.testing.assert_allclose(res.example_kl, ref_kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.example_topk_overlap, ref_ov, atol=1e-6)
    assert res.final_kl == 0 and res.final_topk_overlap == 1
