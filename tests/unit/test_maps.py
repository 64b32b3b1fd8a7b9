"""§3.4 shallow-to-deep linear maps: the closed form against numpy, streaming, controls, SGD, refusals."""

import json
import re

import numpy as np
import pytest
import torch

from effdepth import linear_maps
from effdepth.access.model import wrap_module
from effdepth.chapters.linear_maps import resolve_pair
from effdepth.measures.linear_maps import (
    RidgeAccumulator,
    SGDRecipe,
    TokenizerMismatch,
    choose_block,
    fit_affine,
    make_windows,
    peak_memory_bytes,
    split_windows,
)
from effdepth.store import Store
from effdepth.testing import char_tokenizer, tiny_model
from effdepth.verdicts import STATES
from tests.hooks import capture

TEXTS = [
    "".join(np.random.default_rng(i).choice(list("abcdefgh ijklmnop.Q:=+0123"), size=10 + (7 * i) % 50))
    for i in range(160)
]
WINDOW = 32


def _random_problem(seed=0, N=400, d1=9, d2=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, d1)) * rng.uniform(0.1, 20, d1) + rng.normal(size=d1) * 30  # large mean, mixed scales
    W = rng.normal(size=(d1, d2))
    Y = X @ W + 5 + 0.3 * rng.normal(size=(N, d2))
    return X, Y


@pytest.fixture(scope="module")
def pair():
    tok = char_tokenizer()
    a = wrap_module(
        tiny_model("llama", n_layers=2, d_model=32, vocab_size=len(tok), seed=1), char_tokenizer(), spec="tiny:a"
    )
    b = wrap_module(
        tiny_model("llama", n_layers=4, d_model=48, vocab_size=len(tok), seed=2), char_tokenizer(), spec="tiny:b"
    )
    return a, b


def test_closed_form_equals_numpy_lstsq():
    X, Y = _random_problem()
    W, b, info = fit_affine(X, Y, lam_rel=0.0)
    sol, *_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], Y, rcond=None)
    np.testing.assert_allclose(W.numpy(), sol[:-1], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.numpy(), sol[-1], rtol=1e-9, atol=1e-8)
    assert info["lam"][0, 0] == 0
    # weighted by 1/||y||^2: weighted least squares = lstsq on rows scaled by sqrt(w)
    Ww, bw, _ = fit_affine(X, Y, weighting="relative")
    s = 1 / np.linalg.norm(Y, axis=1, keepdims=True)
    solw, *_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))] * s, Y * s, rcond=None)
    np.testing.assert_allclose(Ww.numpy(), solw[:-1], rtol=1e-8, atol=1e-9)
    assert not np.allclose(Ww.numpy(), W.numpy(), atol=1e-6)  # the weighting changes the answer


def test_validation_error_per_lambda_from_one_eigendecomposition():
    X, Y = _random_problem(1, N=60, d1=12)  # few tokens: ridge helps
    Xv, Yv = _random_problem(2, N=200, d1=12)
    lambdas = (0.0, 1e-3, 1e-1, 1.0)
    for weighting in ("none", "relative"):
        W, b, info = fit_affine(X, Y, X_val=Xv, Y_val=Yv, lambdas=lambdas, weighting=weighting)
        wv = np.ones(len(Yv)) if weighting == "none" else 1 / (Yv**2).sum(1)
        wt = np.ones(len(Y)) if weighting == "none" else 1 / (Y**2).sum(1)
        mu = (Y * wt[:, None]).sum(0) / wt.sum()
        direct = []
        for lam in lambdas:
            Wl, bl, _ = fit_affine(X, Y, lam, weighting=weighting)
            r = Yv - (Xv @ Wl.numpy() + bl.numpy())
            direct.append((wv * (r**2).sum(1)).sum() / (wv * ((Yv - mu) ** 2).sum(1)).sum())
        np.testing.assert_allclose(info["val_fvu"][0, 0], direct, rtol=1e-7)
        best = int(np.argmin(direct))
        assert info["lam_rel"][0, 0] == lambdas[best]


def test_streamed_accumulation_equals_one_shot():
    X, Y = _random_problem(3, N=500)
    W1, b1, _ = fit_affine(X, Y, 1e-4)
    W7, b7, _ = fit_affine(X, Y, 1e-4, chunks=7)
    np.testing.assert_allclose(W7.numpy(), W1.numpy(), rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(b7.numpy(), b1.numpy(), rtol=1e-10, atol=1e-10)
    # several sources and targets in one accumulator = one fit per pair
    rng = np.random.default_rng(4)
    Xs = torch.tensor(rng.normal(size=(3, 300, 5)) + 2)
    Ys = torch.tensor(rng.normal(size=(2, 300, 4)) + Xs[:2, :, :4].numpy() * 3)
    acc = RidgeAccumulator(3, 5, 2, 4)
    for c in range(0, 300, 64):
        acc.add(Xs[:, c : c + 64], Ys[:, c : c + 64])
    acc.factor()
    acc.select((0.0,))
    W, b = acc.maps()
    for m in range(3):
        for n in range(2):
            Wr, br, _ = fit_affine(Xs[m], Ys[n], 0.0)
            np.testing.assert_allclose(W[m, :, n].numpy(), Wr.numpy(), atol=1e-10)
            np.testing.assert_allclose(b[m, n].numpy(), br.numpy(), atol=1e-10)


def test_matches_brute_force_and_is_invariant_to_blocks_and_batches(pair):
    a, b = pair
    off = Store(enabled=False)
    res = linear_maps(a, b, TEXTS, window=WINDOW, lambdas=(0.0,), store=off, progress=False)
    assert res.relative_error.shape == (3, 5)
    # brute force: activations from plain forward hooks (no nnsight), numpy lstsq per pair
    w = make_windows(a.tokenizer, TEXTS, WINDOW)
    idx = split_windows(len(w), (0.8, 0.1, 0.1), 0)

    def acts(model, ii):
        ids, mask, keep = w.batch(ii)
        hs = capture(model.hf, "llama", ids, mask)[0]
        return [h[keep].double().numpy() for h in hs]

    Xtr, Ytr, Xte, Yte = acts(a, idx["train"]), acts(b, idx["train"]), acts(a, idx["test"]), acts(b, idx["test"])
    assert sum(len(x) for x in [Xtr[0], Xte[0]]) + w.n_tokens(idx["val"]) == w.n_tokens(range(len(w)))
    ref = np.zeros((3, 5))
    for m in range(3):
        for n in range(5):
            sol, *_ = np.linalg.lstsq(np.c_[Xtr[m], np.ones(len(Xtr[m]))], Ytr[n], rcond=None)
            pred = np.c_[Xte[m], np.ones(len(Xte[m]))] @ sol
            ref[m, n] = (np.linalg.norm(Yte[n] - pred, axis=1) / np.linalg.norm(Yte[n], axis=1)).mean()
    # atol: entry [0, 0] is an exact fit (shared embeddings), ~1e-15 by lstsq and ~5e-9 through the
    # float64 normal equations (condition number squared); every other entry is ~0.2-0.6
    np.testing.assert_allclose(res.relative_error, ref, rtol=1e-6, atol=2e-8)
    assert res.tokens == {"train": len(Xtr[0]), "val": w.n_tokens(idx["val"]), "test": len(Xte[0])}
    # the 1/||y||^2-weighted variant (per-pair Gram matrices) against one weighted fit per pair
    wres = linear_maps(a, b, TEXTS, window=WINDOW, lambdas=(0.0,), weighting="relative", store=off, progress=False)
    for m, n in [(0, 0), (1, 3), (2, 4)]:
        W, bias, _ = fit_affine(Xtr[m], Ytr[n], weighting="relative")
        pred = Xte[m] @ W.numpy() + bias.numpy()
        expect = (np.linalg.norm(Yte[n] - pred, axis=1) / np.linalg.norm(Yte[n], axis=1)).mean()
        assert wres.relative_error[m, n] == pytest.approx(expect, rel=1e-6, abs=1e-9)
    assert not np.allclose(wres.relative_error, res.relative_error)
    # target blocks and batch sizes change how the work is cut, not the answer
    blocked = linear_maps(a, b, TEXTS, window=WINDOW, target_block=2, batch_size=3, store=off, progress=False)
    whole = linear_maps(a, b, TEXTS, window=WINDOW, store=off, progress=False)
    np.testing.assert_allclose(
        blocked.relative_error, whole.relative_error, rtol=1e-7, atol=2e-8
    )  # [0, 0] exact fit, as above
    # the validated ridge strength is the same wherever the fit is not exact; at the exact-fit entry
    # every lambda reaches round-off level and which one wins is round-off too
    fit = whole.relative_error > 1e-6
    assert fit.sum() == fit.size - 1 and blocked.relative_error[0, 0] < 1e-7
    np.testing.assert_array_equal(blocked.lam_rel[fit], whole.lam_rel[fit])
    assert (whole.relative_error <= res.relative_error + 0.02).all()  # validated ridge is never much worse


def test_identity_control_and_relative_depth(pair):
    _, b = pair
    res = linear_maps(b, b, TEXTS, window=WINDOW, progress=False)
    diag = np.diag(res.relative_error)
    assert diag.max() < 1e-5
    off = res.relative_error[~np.eye(5, dtype=bool)]
    assert off.min() > 1e-3  # different layers are not linear copies of each other
    bm = res.best_match()
    assert list(bm["best_tgt_layer"]) == [1, 2, 3, 4]
    np.testing.assert_allclose(bm["best_tgt_depth"], bm["src_depth"])
    assert list(res.best_source()["best_src_layer"]) == [1, 2, 3, 4]
    frame = res.to_frame()
    assert len(frame) == 25 and frame["tgt_depth"].max() == 1.0


def test_second_call_reads_the_cache(pair, monkeypatch):
    a, b = pair
    first = linear_maps(a, b, TEXTS[:60], window=WINDOW, progress=False)
    import effdepth.measures.linear_maps as mod

    monkeypatch.setattr(
        mod, "capture_residuals", lambda *a, **k: pytest.fail("recomputed instead of reading the cache")
    )
    second = linear_maps(a, b, TEXTS[:60], window=WINDOW, progress=False)
    np.testing.assert_array_equal(first.relative_error, second.relative_error)
    assert second.meta["src"]["model"] == "tiny:a" and second.meta["tgt"]["model"] == "tiny:b"


def test_resumes_from_finished_target_blocks(pair, monkeypatch, tmp_path):
    a, b = pair
    store = Store(tmp_path / "store")
    first = linear_maps(a, b, TEXTS[:60], window=WINDOW, target_block=2, store=store, progress=False)
    finals = list((tmp_path / "store" / "linear_maps").glob("*.npz"))
    blocks = list(
        (tmp_path / "store" / "linear_maps").glob("*/items/*.npz")
    )  # one cache entry per block (results.measure)
    assert len(finals) == 1 and len(blocks) == 3  # 5 targets in blocks of ≤ 2
    for f in finals:  # as if the run died after its last block, before combining
        f.unlink()
        f.with_suffix(".json").unlink()
    import effdepth.measures.linear_maps as mod

    monkeypatch.setattr(mod, "capture_residuals", lambda *a, **k: pytest.fail("a finished block was recomputed"))
    again = linear_maps(a, b, TEXTS[:60], window=WINDOW, target_block=2, store=store, progress=False)
    np.testing.assert_array_equal(first.relative_error, again.relative_error)


def test_sgd_converges_towards_the_closed_form(pair):
    a, b = pair
    off = Store(enabled=False)
    closed = linear_maps(a, b, TEXTS, window=WINDOW, store=off, progress=False)
    recipe = SGDRecipe(lr=2e-2, warmup=20, steps=300, batch_windows=8, eval_at=(10, 100, 300), cache_activations=True)
    sgd = linear_maps(a, b, TEXTS, "sgd", sgd=recipe, window=WINDOW, store=off, progress=False)
    curve = sgd.sgd_eval_error.reshape(3, -1).mean(1)
    gap = curve - closed.relative_error.mean()
    assert gap[0] > gap[1] > gap[2] > -0.005  # approaches from above
    assert gap[2] < 0.25 * gap[0]
    assert np.all(sgd.relative_error > closed.relative_error - 0.01)
    assert sgd.loss_history[-20:].mean() < 0.2 * sgd.loss_history[:5].mean()


def test_different_tokenizers_are_refused(pair):
    a, _ = pair
    other_tok = char_tokenizer(chars="abcdefghijklmnopqrstuvwxyz0123456789 .")
    other = wrap_module(
        tiny_model("llama", n_layers=2, d_model=32, vocab_size=len(other_tok)), other_tok, spec="tiny:other"
    )
    with pytest.raises(TokenizerMismatch, match="different tokenizers"):
        linear_maps(a, other, TEXTS, window=WINDOW, progress=False)
    no_bos = wrap_module(
        tiny_model("llama", n_layers=2, d_model=32, vocab_size=len(char_tokenizer())),
        char_tokenizer(add_bos=False),
        spec="tiny:nobos",
    )
    with pytest.raises(TokenizerMismatch, match="tokenize"):
        linear_maps(a, no_bos, TEXTS, window=WINDOW, progress=False)


def test_windows_drop_position_zero_and_pack_without_splitting():
    tok = char_tokenizer()
    w = make_windows(tok, ["abc", "defgh", "ijklmnopqrstuvwxyz"], window=10)
    # '<bos>abc' (4) + '<bos>defgh' (6) fill one window; the 19-token text is cut into 10 + 9
    assert w.lengths.tolist() == [10, 10, 9]
    ids, mask, keep = w.batch([0, 2])
    assert not keep[:, 0].any() and keep[0, 1:].all() and keep[1, 1:9].all() and not keep[1, 9]
    assert w.n_tokens([0, 1, 2]) == 9 + 9 + 8
    s = split_windows(50, (0.8, 0.1, 0.1), seed=3)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(50))
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (40, 5, 5)
    assert not np.array_equal(s["test"], split_windows(50, (0.8, 0.1, 0.1), seed=4)["test"])


def test_memory_blocks_for_the_paper_setting():
    full = peak_memory_bytes(1536, 5120, 28, 48)
    assert full > 8 * 29 * 49 * 1536 * 5120  # the float64 cross terms of all pairs alone are 89 GB
    B = choose_block(1536, 5120, 28, 48, memory_gb=40, batch_tokens=4096)
    assert 1 <= B < 49
    assert peak_memory_bytes(1536, 5120, 28, 48, B) <= 40 * 2**30 < peak_memory_bytes(1536, 5120, 28, 48, B + 1)


def test_pairs_and_c4_offline(tmp_path, monkeypatch):
    from effdepth import zoo

    assert resolve_pair("zoo:default") == (f"zoo:{zoo.SHALLOW}", f"zoo:{zoo.DEEP}", "")
    src, tgt, why = resolve_pair("Qwen/Qwen2.5-14B")
    assert src is None and tgt is None and "sharing a tokenizer" in why
    assert resolve_pair("x", "a", "b") == ("a", "b", "")

    from effdepth.data import DatasetNotAvailable
    from effdepth.data.c4 import c4_texts

    monkeypatch.delenv("EFFDEPTH_C4", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotAvailable, match="EFFDEPTH_C4"):
        c4_texts(4)
    f = tmp_path / "c4.jsonl"
    f.write_text("".join(json.dumps({"text": f"document {i}", "url": "x"}) + "\n" for i in range(20)))
    first = c4_texts(5, seed=1, path=f)
    assert len(first) == 5 and all(t.startswith("document ") for t in first)
    assert first == c4_texts(5, seed=1, path=f) and first != c4_texts(5, seed=2, path=f)
    monkeypatch.setenv("EFFDEPTH_C4", str(f))
    assert c4_texts(5, seed=1) == first


@pytest.mark.slow
def test_notebook_executes_on_a_tiny_pair(tmp_path):
    from effdepth.running import NOTEBOOKS, execute
    from effdepth.testing import save_tiny

    a = save_tiny(tmp_path / "a", "llama", n_layers=2)
    b = save_tiny(tmp_path / "b", "llama", n_layers=4, seed=1)
    out = execute(
        NOTEBOOKS / "linear_maps.md",
        tmp_path / "linear_maps.ipynb",
        {
            "model": str(a),
            "src_model": str(a),
            "tgt_model": str(b),
            "n_windows": 30,
            "window": 40,
            "sgd_steps": 20,
            "sgd_batch_windows": 4,
        },
    )
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if any(k.endswith("image/png") for k in o.get("data", {}))]
    assert len(images) >= 5  # Fig 8 with its control, relative depth, controls, weighting, SGD comparison
    glued = {
        o["metadata"]["scrapbook"]["name"]: "".join(next(iter(o["data"].values())))
        for o in outputs
        if "scrapbook" in o.get("metadata", {})
    }
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    cited = set(re.findall(r"\{glue:(?:md|text)\}[` ]([A-Za-z0-9_]+)", md))
    assert (
        {"lm_run_text", "lm_matrix_text", "lm_control_text", "lm_verdict_text"} <= cited <= set(glued)
    )  # every slot the page cites is filled
    assert glued["lm_identity_text"].startswith("Identity control: the largest diagonal error is")
    assert "random-target controls" in glued["lm_control_text"] and "(3 seeds)" in glued["lm_control_text"]
    assert glued["lm_paper_pattern"].strip("'").split(" (")[0] in STATES
    assert "Mean relative error: least squares" in glued["lm_weighting_text"]
    assert (
        "**a (local folder) → b (local folder)**" in glued["lm_run_text"]
    )  # prose (and figure titles) name the models, folders by their name
    assert "Projection for the paper's setting" in glued["lm_paper_setting_text"]
    assert "tqdm" not in json.dumps(outputs) and "it/s" not in json.dumps(outputs)
    # no sentence is built in a code cell (the verdicts come from effdepth.chapters.linear_maps, glued by
    # glue_all): tests/test_notebook_lint.py checks every notebook's code cells and glued names


@pytest.mark.slow
def test_notebook_without_a_pair_still_fills_its_slots(tmp_path):
    from effdepth.running import NOTEBOOKS, execute
    from effdepth.testing import save_tiny

    a = save_tiny(tmp_path / "a", "llama", n_layers=2)
    out = execute(NOTEBOOKS / "linear_maps.md", tmp_path / "lm.ipynb", {"model": str(a)})
    outputs = [
        o for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    glued = {
        o["metadata"]["scrapbook"]["name"]: "".join(next(iter(o["data"].values())))
        for o in outputs
        if "scrapbook" in o.get("metadata", {})
    }
    md = "\n".join("".join(c["source"]) for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "markdown")
    assert set(re.findall(r"\{glue:(?:md|text)\}[` ]([A-Za-z0-9_]+)", md)) <= set(glued)
    assert "is not a pair" in glued["lm_verdict_text"] and "is not a pair" in glued["lm_run_text"]
