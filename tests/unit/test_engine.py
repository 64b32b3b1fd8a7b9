"""The suffix engine: running blocks b … L-1 from a residual reproduces the model, for every family."""

import pytest
import torch

from effdepth.engine import clean_run
from tests.conftest import FAMILIES
from tests.hooks import capture

TEXT = "Q: 3 + 4 = ? A: 7. The cat sat."


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU 2 OpenMP threads make each small op
    ~100x slower (spin-waiting); restored afterwards for the other test files."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("family", FAMILIES)
def test_clean_run_and_suffix_reproduce_the_model(tiny_models, family):
    model = tiny_models[family]
    ids = model.encode(TEXT)
    run = clean_run(model, ids)
    hs, _, _, logits = capture(model.hf, family, ids[None])  # independent hooks
    assert len(run.h) == model.n_layers + 1
    for b in range(model.n_layers + 1):
        torch.testing.assert_close(run.h[b], hs[b][0], rtol=0, atol=0)
    # decode(h_L) is the model's own output (final norm, unembedding, Gemma soft-capping)
    torch.testing.assert_close(run.decode(run.h[-1]), logits[0], rtol=0, atol=1e-6)
    L = model.n_layers
    for b in (0, L // 2, L):  # from any residual index, as a batch of 3 identical rows
        out = run.suffix(b, run.h[b].expand(3, -1, -1))
        torch.testing.assert_close(out, run.h[-1].expand(3, -1, -1), rtol=0, atol=2e-6)
    assert run.output_change(run.h[-1]).abs().max() < 1e-6


def test_an_edit_propagates_only_forward(tiny_models):
    model = tiny_models["llama"]
    ids = model.encode(TEXT)
    run = clean_run(model, ids)
    T = run.T
    h = run.h[1].expand(2, -1, -1).clone()
    h[1, 5] += 3.0  # perturb one position of one variant
    out = run.suffix(1, h)
    torch.testing.assert_close(out[0], run.h[-1], rtol=0, atol=2e-6)
    torch.testing.assert_close(out[1, :5], run.h[-1][:5], rtol=0, atol=2e-6)  # causal: earlier positions untouched
    assert (out[1, 5:] - run.h[-1][5:]).norm(dim=-1).min() > 1e-4
    change = run.output_change(out)
    assert change.shape == (2, T) and change[0].max() < 1e-6 and change[1, 5] > 1e-4
    # the same edit through a hooked full forward gives the same final residual
    hs = {}
    handle = model.hf.model.layers[1].register_forward_pre_hook(
        lambda m, a, k: ((h[1:2],) + a[1:], k), with_kwargs=True
    )
    fin = model.hf.model.norm.register_forward_pre_hook(lambda m, a: hs.update(last=a[0][0]))
    try:
        with torch.no_grad():
            model.hf(ids[None], use_cache=False)
    finally:
        handle.remove()
        fin.remove()
    torch.testing.assert_close(out[1], hs["last"], rtol=0, atol=2e-6)


@pytest.mark.parametrize("max_batch", [None, 3])
def test_staggered_batches_equal_separate_runs(tiny_models, max_batch):
    model = tiny_models["gpt_neox"]  # parallel residual
    run = clean_run(model, model.encode(TEXT))
    L = model.n_layers
    g = torch.Generator().manual_seed(0)
    starts = {b: run.h[b] + 0.1 * torch.randn(2, *run.h[b].shape, generator=g) for b in (3, 0, 2, L)}
    seen = []

    def on_layer(l, h_in, h_out, index):
        seen.append((l, index.tolist()))

    together = run.staggered(starts, on_layer=on_layer, max_batch=max_batch)
    for b, h in starts.items():
        torch.testing.assert_close(together[b], run.suffix(b, h), rtol=0, atol=2e-6)
    torch.testing.assert_close(together[L], starts[L])  # nothing left to run
    # variants are numbered in increasing start order: b=0 -> rows 0,1; b=2 -> 2,3; b=3 -> 4,5
    rows_at = {}
    for l, idx in seen:
        rows_at.setdefault(l, []).extend(idx)
    assert (
        sorted(rows_at[0]) == [0, 1]
        and sorted(rows_at[2]) == [0, 1, 2, 3]
        and sorted(rows_at[L - 1]) == [0, 1, 2, 3, 4, 5]
    )
    if max_batch:
        assert max(len(idx) for _, idx in seen) <= max_batch
