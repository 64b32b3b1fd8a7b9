"""The remote (NDIF) path under a strict sandbox: every measurement's trace bodies unpickle and run
with effdepth unimportable and only NDIF's whitelisted modules allowed, and give the fast path's numbers."""

import numpy as np
import pytest
import torch

from effdepth.access.model import wrap_module
from effdepth.access.ndif import SandboxRefusal
from effdepth.testing import char_tokenizer, tiny_model
from tests.conftest import PROMPTS

PROMPT, ANSWER = "Q: 5+7-5 A:", " 7"
REFERENCE = ["The cat sat on the mat.", "Q: 12 + 7 = ? A: 19", "a b c d e f"]


def _pair(family="llama", **kw):
    """The same random-weight module wrapped twice: strict-sandbox remote and plain local."""
    tok = char_tokenizer()
    hf = tiny_model(family, vocab_size=len(tok), **kw)
    return wrap_module(hf, char_tokenizer(), spec=f"tiny:{family}", remote="strict"), wrap_module(
        hf, char_tokenizer(), spec=f"tiny:{family}"
    )


@pytest.fixture(scope="module")
def pair():
    return _pair()


def _ids(model, text="hello there"):
    ids = model.encode(text)[None]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


# -- the sandbox itself: both sides of every rule -------------------------------------------------


def test_a_body_of_envoys_and_tensors_runs_and_returns_only_saved_names(pair):
    remote, plain = pair
    layers = list(remote.adapter.layer_modules(remote.nn))
    with torch.no_grad(), remote.trace(_ids(remote)):
        unsaved = layers[0].input.float()
        x = layers[1].input.float().save()
    with torch.no_grad():
        out = plain.hf(**_ids(plain), output_hidden_states=True)
    torch.testing.assert_close(x, out.hidden_states[1].float())
    assert "unsaved" not in locals()  # the server returns saved names only


def test_a_list_filled_inside_the_body_does_not_come_back(pair):
    """The body runs on unpickled copies: appending to a caller's list is lost (as on NDIF)."""
    remote, _ = pair
    layers = list(remote.adapter.layer_modules(remote.nn))
    kept = []
    with torch.no_grad(), remote.trace(_ids(remote)):
        kept.append(layers[0].input.save())
    assert kept == []


def test_naming_an_effdepth_object_inside_the_body_is_refused(pair):
    remote, _ = pair
    with pytest.raises(SandboxRefusal, match="effdepth.access.model"):
        with torch.no_grad(), remote.trace(_ids(remote)):
            y = remote.adapter.layer_modules(remote.nn)[0].input.save()  # noqa: F841


def test_calling_an_effdepth_function_inside_the_body_is_refused(pair):
    from effdepth.engine import softcap

    remote, _ = pair
    nn = remote.nn
    with pytest.raises(SandboxRefusal, match="effdepth.engine"):
        with torch.no_grad(), remote.trace(_ids(remote)):
            y = nn.output.logits.save()
            c = softcap(y)  # noqa: F841


def test_importing_outside_the_whitelist_inside_the_body_is_refused(pair):
    remote, _ = pair
    nn = remote.nn
    with pytest.raises(SandboxRefusal, match="'os'"):
        with torch.no_grad(), remote.trace(_ids(remote)):
            import os  # noqa: F401

            y = nn.output.logits.save()
    with torch.no_grad(), remote.trace(_ids(remote)):
        import math

        y = (nn.output.logits * math.pi).save()
    assert y.shape[-1] == remote.vocab_size


def test_the_nnsight_package_itself_is_not_on_the_servers_list(pair):
    """NDIF allows nnsight's envoy and serialisation modules, not `nnsight.save([])` in a body."""
    import nnsight

    remote, _ = pair
    nn = remote.nn
    with pytest.raises(SandboxRefusal, match="'nnsight'"):
        with torch.no_grad(), remote.trace(_ids(remote)):
            kept = nnsight.save([])
            kept.append(nn.output.logits)


def test_effdepth_is_unimportable_while_the_body_runs(pair):
    """Even a module object smuggled into the body cannot reach effdepth on the simulated server."""
    remote, _ = pair
    nn = remote.nn
    with pytest.raises(SandboxRefusal):
        with torch.no_grad(), remote.trace(_ids(remote)):
            y = nn.output.logits.save()  # noqa: F841  (a value the body names, as on the server)
            __import__("effdepth.stats")


# -- every measurement: strict remote == local fast path -----------------------------------------


def test_contributions(pair):
    from effdepth import contributions

    remote, plain = pair
    res = contributions(remote, PROMPTS[:3], batch_size=2)
    assert res.meta["params"]["method"] == "trace"
    np.testing.assert_allclose(
        res.to_frame().to_numpy(),
        contributions(plain, PROMPTS[:3], batch_size=2).to_frame().to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("part", ["layer", "attention", "mlp"])
def test_skip_effects(pair, part):
    from effdepth import skip_effects

    remote, plain = pair
    r, p = skip_effects(remote, PROMPTS[1:3], part=part), skip_effects(plain, PROMPTS[1:3], part=part)
    assert r.meta["params"]["method"] == "trace"
    np.testing.assert_allclose(r.layer_effect, p.layer_effect, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.output_effect, p.output_effect, rtol=1e-4, atol=1e-6)


def test_local_effects(pair):
    from effdepth import local_effects

    remote, plain = pair
    r, p = local_effects(remote, PROMPTS[1:3]), local_effects(plain, PROMPTS[1:3])
    np.testing.assert_allclose(r.layer_effect, p.layer_effect, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.output_effect, p.output_effect, rtol=1e-4, atol=1e-6)


def test_logit_lens(pair):
    from effdepth import logit_lens

    remote, plain = pair
    r, p = logit_lens(remote, PROMPTS[:2]), logit_lens(plain, PROMPTS[:2])
    for col in ("kl", "topk_overlap"):
        np.testing.assert_allclose(r.to_frame()[col], p.to_frame()[col], rtol=1e-4, atol=1e-5)


def test_residual_erasure_with_reference_means_from_a_trace(pair):
    from effdepth import residual_erasure
    from effdepth.measures.residual_erasure import mean_residuals

    remote, plain = pair
    torch.testing.assert_close(
        mean_residuals(remote, REFERENCE), mean_residuals(plain, REFERENCE), rtol=1e-5, atol=1e-6
    )
    r = residual_erasure(remote, PROMPT, ANSWER, reference_prompts=REFERENCE, batch_size=9)
    p = residual_erasure(plain, PROMPT, ANSWER, reference_prompts=REFERENCE)
    assert r.meta["params"]["method"] == "trace"
    np.testing.assert_allclose(r.effect, p.effect, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_depth_score(pair):
    from effdepth import depth_score
    from effdepth.data import Example

    remote, plain = pair
    by_level = {1: [Example("Q: 5+7-5 A:", " seven", 1)], 2: [Example("Q: 5+7-5+1 A:", " eight", 2)]}
    r, p = (
        depth_score(remote, by_level, split="answer", n_boot=50),
        depth_score(plain, by_level, split="answer", n_boot=50),
    )
    np.testing.assert_allclose(r.example_E, p.example_E, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.example_o, p.example_o, rtol=1e-4, atol=1e-6)
    assert (r.example_correct == p.example_correct).all() if hasattr(r, "example_correct") else True


def test_linear_maps():
    from effdepth import linear_maps

    tok = char_tokenizer()
    a = tiny_model("llama", n_layers=2, d_model=32, vocab_size=len(tok), seed=1)
    b = tiny_model("llama", n_layers=3, d_model=24, vocab_size=len(tok), seed=2)
    texts = [
        "".join(np.random.default_rng(i).choice(list("abcdefgh ijklmnop.Q:=+0123"), size=10 + (7 * i) % 50))
        for i in range(60)
    ]
    kw = dict(window=32, lambdas=(0.0, 1e-3), progress=False)
    ra = wrap_module(a, char_tokenizer(), spec="tiny:a", remote="strict")
    rb = wrap_module(b, char_tokenizer(), spec="tiny:b", remote="strict")
    r = linear_maps(ra, rb, texts, **kw)
    p = linear_maps(
        wrap_module(a, char_tokenizer(), spec="tiny:a"), wrap_module(b, char_tokenizer(), spec="tiny:b"), texts, **kw
    )
    np.testing.assert_allclose(r.relative_error, p.relative_error, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("part", ["layer", "attention", "mlp"])
def test_integrated_gradients_with_a_backward_pass_inside_the_trace(pair, part):
    from effdepth import integrated_gradients

    remote, plain = pair
    r = integrated_gradients(remote, PROMPT, ANSWER, part=part, steps=8, batch_size=3)
    p = integrated_gradients(plain, PROMPT, ANSWER, part=part, steps=8, batch_size=3)
    assert r.meta["params"]["method"] == "trace" and "method" not in p.meta["params"]
    np.testing.assert_allclose(r.attribution, p.attribution, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.p_baseline, p.p_baseline, rtol=1e-5, atol=1e-7)
    assert abs(float(r.p_input) - float(p.p_input)) < 1e-6
    assert np.abs(r.attribution).max() > 0  # the gradients really flowed


def test_a_model_folder_loads_for_the_simulated_remote_path_and_not_for_ndif(tmp_path):
    """The tokenizer is passed explicitly (nnsight cannot guess one for a folder); NDIF itself
    serves Hub models only, which the error says before any trace."""
    from effdepth import contributions, load_model
    from effdepth.errors import ModelNotAvailable
    from effdepth.testing import save_tiny

    save_tiny(tmp_path / "m", "qwen2")
    strict, plain = load_model(str(tmp_path / "m"), remote="strict"), load_model(str(tmp_path / "m"))
    assert strict.input_device.type == "cpu" and strict.tokenizer is not None
    r, p = contributions(strict, PROMPTS[:2]), contributions(plain, PROMPTS[:2])
    np.testing.assert_allclose(r.to_frame().to_numpy(), p.to_frame().to_numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelNotAvailable, match="Hub models only"):
        load_model(str(tmp_path / "m"), remote=True)


# -- download estimates: the formulas equal what the strict-sandbox traces actually send back -----

SAME_LEN = ["abcdefghijklmno", "ponmlkjihgfedcb", "Q: 12 + 7 = ? A"]  # equal token counts


def _downloaded(fn):
    from effdepth.access.ndif import tally

    with tally() as counts:
        fn()
    assert counts["traces"] > 0
    return counts["tensor_bytes"]


def test_download_formulas_equal_the_traced_payload(pair):
    from effdepth import (
        contributions,
        integrated_gradients,
        logit_lens,
        ndif_plan,
        residual_erasure,
        skip_effects,
    )
    from effdepth.measures.residual_erasure import encode_example

    remote, _ = pair
    L, d = remote.n_layers, remote.d_model
    T = len(remote.encode(SAME_LEN[0]))
    assert {len(remote.encode(p)) for p in SAME_LEN} == {T}
    assert _downloaded(lambda: contributions(remote, SAME_LEN, batch_size=2)) == ndif_plan.contributions_bytes(L, 3, T)
    assert _downloaded(lambda: skip_effects(remote, SAME_LEN)) == ndif_plan.skip_bytes(L, 3, T)
    assert _downloaded(
        lambda: skip_effects(remote, SAME_LEN, mode="future", n_splits=2, split_step=2)
    ) == ndif_plan.skip_bytes(L, 3, T, 2)
    assert _downloaded(lambda: logit_lens(remote, SAME_LEN)) == ndif_plan.lens_bytes(L, 3)
    ids, a0 = encode_example(remote, PROMPT, ANSWER)
    P = len(ids) - a0
    got = _downloaded(lambda: residual_erasure(remote, PROMPT, ANSWER, reference_prompts=REFERENCE, batch_size=9))
    assert got == ndif_plan.erasure_bytes(L, d, len(ids), P, n_reference=len(REFERENCE))
    got = _downloaded(lambda: integrated_gradients(remote, PROMPT, ANSWER, steps=8, batch_size=3))
    assert got == ndif_plan.ig_bytes(L, len(ids), 8, 3)


def test_linear_maps_download_is_the_residuals_and_beats_streamed_statistics():
    from effdepth import linear_maps, ndif_plan

    tok = char_tokenizer()
    m = wrap_module(
        tiny_model("llama", n_layers=2, d_model=16, vocab_size=len(tok), seed=1),
        char_tokenizer(),
        spec="tiny:a",
        remote="strict",
    )
    texts = ["".join(np.random.default_rng(i).choice(list("abcdefgh ijklmnop"), size=40)) for i in range(30)]
    res = linear_maps(m, m, texts, window=16, lambdas=(0.0, 1e-3), progress=False)
    n_windows = int(res.n_windows.sum())
    got = _downloaded(lambda: linear_maps(m, m, texts, window=16, lambdas=(0.0, 1e-3), seed=1, progress=False))
    full = ndif_plan.residuals_bytes(2, 16, n_windows, 16)  # every window full length: an upper bound
    assert 0.97 * full <= got <= full  # a batch is padded only to its longest window
    # a 70B model at the paper's setting: residuals ~2.7 GB per 8 x 128 batch; the statistics far more
    assert round(ndif_plan.residuals_bytes(80, 8192, 8, 128) / 1e9, 1) == 2.7
    assert ndif_plan.gram_statistics_bytes(80, 8192, 80, 8192) > 10 * ndif_plan.residuals_bytes(80, 8192, 400, 128)


def test_preflight_table_for_a_70b_config():
    from transformers import LlamaConfig

    from effdepth import ndif_plan, running

    cfg = LlamaConfig(
        num_hidden_layers=80,
        hidden_size=8192,
        intermediate_size=28672,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=128256,
    )
    dims = ndif_plan.Dims.of(cfg)
    assert (dims.n_layers, dims.d_model, dims.vocab_size) == (80, 8192, 128256) and 69e9 < dims.n_params < 72e9
    chapters = {c.name: running.chapter_defaults(c.name) for c in running.available_chapters()}
    rows = {r.chapter: r for r in ndif_plan.preflight("meta-llama/Llama-3.1-70B", dims, chapters, tokens=200)}
    assert not rows["zoo"].remote and not rows["objective"].remote and rows["zoo"].download_mb == 0
    n = chapters["contributions"]["n_examples"]
    assert rows["contributions"].download_mb == pytest.approx(80 * n * 200 * 36 / 1e6)
    assert (
        "the same 80 blocks at width 512 (of 8192), 1.6 GB" in rows["contributions"].note
    )  # narrow float32 controls, run locally
    # one request per trace, counted from the parameters (issue 27: the note's 70B figure)
    assert (
        rows["skipping"].requests == 2430
        and rows["complexity"].requests == 7028
        and rows["contributions"].requests == 3
    )
    assert sum(r.requests for r in rows.values()) == 9527
    assert rows["linear_maps"].download_mb == 0 and "src_model" in rows["linear_maps"].note
    text = ndif_plan.format_preflight("meta-llama/Llama-3.1-70B", dims, list(rows.values()))
    assert "80 layers" in text and "contributions" in text and "MB" in text.splitlines()[-1]


def test_run_remote_prints_the_preflight_before_any_chapter(monkeypatch, capsys):
    from transformers import LlamaConfig

    from effdepth import ndif_plan, running
    from effdepth.cli import main

    cfg = LlamaConfig(
        num_hidden_layers=80,
        hidden_size=8192,
        intermediate_size=28672,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=128256,
    )
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setattr(ndif_plan, "load_config", lambda spec: cfg)
    monkeypatch.setattr(ndif_plan, "service_check", lambda model, key: [])
    seen = []

    def fake_run(model, **kw):
        seen.append(capsys.readouterr().out)  # what was printed before the first chapter
        return {"contributions": "ok", "skipping": "ok"}

    monkeypatch.setattr(running, "run", fake_run)
    assert (
        main(
            [
                "run",
                "--model",
                "someorg/some-70b",
                "--remote",
                "--chapters",
                "contributions,skipping",
                "--set",
                "n_examples=10",
            ]
        )
        == 0
    )
    (printed,) = seen
    lines = printed.splitlines()
    assert "--remote preflight for someorg/some-70b: 80 layers, d=8192" in lines[0]
    contrib = next(line for line in lines if line.strip().startswith("contributions"))
    assert f"{80 * 10 * 200 * 36 / 1e6:,.1f} MB" in contrib  # --set n_examples=10 is used
    scoped = running.remote_preflight(
        "x/y", ["contributions", "logit_lens"], {"n_examples": 10, "contributions.n_examples": 40}
    )
    row = lambda name: next(line for line in scoped.splitlines() if line.strip().startswith(name))
    assert f"{80 * 40 * 200 * 36 / 1e6:,.1f} MB" in row(
        "contributions"
    ) and f"{80 * 10 * 200 * 36 / 1e6:,.1f}" not in row("contributions")
    assert any(line.strip().startswith("skipping") for line in lines) and not any(
        line.strip().startswith("logit_lens") for line in lines
    )
    # a config that cannot be read (no network): the run stops before any chapter, in one line
    monkeypatch.setattr(ndif_plan, "load_config", lambda spec: (_ for _ in ()).throw(OSError("no network")))
    with pytest.raises(ValueError, match="config of x/y cannot be read from the Hugging Face Hub \\(no network\\)"):
        running.remote_preflight("x/y", ["contributions"])
    seen.clear()
    assert main(["run", "--model", "someorg/some-70b", "--remote", "--chapters", "contributions"]) == 2 and not seen
    assert "cannot be read from the Hugging Face Hub" in capsys.readouterr().err


def test_the_preflight_counts_chapter_scoped_sets_as_the_run_does(monkeypatch):
    """issue 25 #6: `--set linear_maps.n_windows=…` (the Makefile's form) must reach the estimate."""
    from transformers import LlamaConfig

    from effdepth import ndif_plan, running

    cfg = LlamaConfig(
        num_hidden_layers=80,
        hidden_size=8192,
        intermediate_size=28672,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=128256,
    )
    monkeypatch.setattr(ndif_plan, "load_config", lambda spec: cfg)
    line = lambda text: next(x for x in text.splitlines() if x.strip().startswith("contributions"))
    plain = line(running.remote_preflight("o/m", ["contributions"]))
    scoped = line(running.remote_preflight("o/m", ["contributions"], {"contributions.n_examples": 10}))
    shared = line(running.remote_preflight("o/m", ["contributions"], {"n_examples": 10}))
    assert scoped == shared != plain and f"{80 * 10 * 200 * 36 / 1e6:,.1f} MB" in scoped
    other = line(running.remote_preflight("o/m", ["contributions"], {"skipping.n_examples": 10}))
    assert other == plain  # scoped to another chapter: not this one's
    assert running.chapter_values("a", {"n": 1, "a.n": 2, "b.n": 3}, {"n"}) == {"n": 2}


def test_the_random_init_control_of_a_remote_model_is_built_here(pair, monkeypatch):
    from effdepth.access import controls

    remote, plain = pair
    c = controls.control_of(remote, seed=5)
    assert not c.remote and c.device.type == "cpu" and c.dtype == torch.float32
    assert c.hf.config.to_dict() == plain.hf.config.to_dict()
    assert not torch.equal(c.hf.lm_head.weight, plain.hf.lm_head.weight)  # random, not the trained weights
    monkeypatch.setattr(controls.os, "sysconf", lambda name: 1)  # one free byte
    with pytest.raises(ValueError, match="runs here, not on NDIF .* needs 0.0 GB of float32 weights"):
        controls.control_of(remote, seed=6)


def test_preflight_of_a_linear_maps_pair_counts_both_models_and_the_sgd_passes():
    from effdepth import ndif_plan

    src, tgt = ndif_plan.Dims(28, 1536, 151936), ndif_plan.Dims(80, 8192, 128256)
    p = {
        "n_windows": 400,
        "window": 128,
        "compare_sgd": False,
        "sgd_steps": 10,
        "sgd_batch_windows": 8,
        "controls": False,
        "n_controls": 3,
    }
    (row,) = ndif_plan.preflight("tgt", tgt, {"linear_maps": p}, pair=(src, tgt))
    closed = ndif_plan.residuals_bytes(28, 1536, 400, 128) + ndif_plan.residuals_bytes(80, 8192, 400, 128)
    assert row.remote and row.download_mb == pytest.approx(closed / 1e6) and "control" not in row.note
    (row,) = ndif_plan.preflight(
        "tgt", tgt, {"linear_maps": {**p, "compare_sgd": True, "controls": True}}, pair=(src, tgt)
    )
    sgd = ndif_plan.residuals_bytes(28, 1536, 80, 128) + ndif_plan.residuals_bytes(80, 8192, 80, 128)
    assert row.download_mb == pytest.approx((closed + sgd) / 1e6) and "3 random-init control(s)" in row.note


# -- the API key lives in memory only (issue 27, item 7) ------------------------------------------


def test_a_remote_run_never_writes_the_key_to_nnsights_config_file(monkeypatch, tmp_path, capsys):
    """`effdepth run --remote` (the CLI's checks, the preflight, and the kernel's load path, here
    simulated) sets the key on nnsight's in-memory config; the user's config file keeps its bytes and
    mtime. The same check does catch nnsight's own persisting call."""
    import os

    from nnsight import CONFIG
    from transformers import LlamaConfig

    from effdepth import ndif_plan, running
    from effdepth.access import ndif
    from effdepth.cli import main

    user_file = tmp_path / "nnsight" / "config.yaml"
    user_file.parent.mkdir()
    user_file.write_text("API:\n  APIKEY: the-users-own-key\n")
    os.utime(user_file, ns=(1_000_000_000, 1_000_000_000))
    state = lambda: (user_file.read_bytes(), user_file.stat().st_mtime_ns)
    before = state()
    monkeypatch.setenv("NNSIGHT_CONFIG", str(user_file))
    monkeypatch.setenv("NDIF_API_KEY", "key-for-this-run-only")
    monkeypatch.setattr(CONFIG.API, "APIKEY", CONFIG.API.APIKEY)  # restored after the test
    cfg = LlamaConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=128, num_attention_heads=4, vocab_size=100)
    monkeypatch.setattr(ndif_plan, "load_config", lambda spec: cfg)
    monkeypatch.setattr(ndif_plan, "service_check", lambda *a, **k: [])
    monkeypatch.setattr(running, "run", lambda model, **kw: {"contributions": "ok"})
    assert main(["run", "--model", "someorg/some-model", "--remote", "--chapters", "contributions"]) == 0
    assert ndif.configure_key() == "key-for-this-run-only"  # what load_model(remote=True) calls in each kernel
    assert CONFIG.API.APIKEY == "key-for-this-run-only"  # nnsight's RemoteBackend reads it from here
    assert state() == before
    assert "key-for-this-run-only" not in capsys.readouterr().out
    CONFIG.set_default_api_key("key-for-this-run-only")  # what models.py used to call: the check sees it
    assert state() != before and "key-for-this-run-only" in user_file.read_text()


# -- every tensor inside a trace on the activation's device (issue 27, item 9) --------------------


def _on_meta_server(family="llama"):
    """A strict-sandbox model whose server copy lives on the meta device: every op of every trace is
    checked for tensors of two devices (`ndif.WrongDevice`), as a GPU-hosted model would refuse a
    CPU mask; the saved values come back as zeros of their shapes."""
    import dataclasses

    tok = char_tokenizer()
    m = wrap_module(
        tiny_model(family, vocab_size=len(tok), seed=3), char_tokenizer(), spec=f"tiny:{family}-meta", remote="strict"
    )
    return dataclasses.replace(m, server_device="meta")


def test_a_cpu_tensor_inside_a_trace_is_refused_on_a_model_of_another_device():
    from effdepth.access.ndif import WrongDevice

    m = _on_meta_server()
    layers, nn, d = list(m.adapter.layer_modules(m.nn)), m.nn, m.d_model
    mask = torch.ones(1, len(m.encode("hello there")), 1, dtype=torch.bool)
    with pytest.raises(WrongDevice, match="meta"):
        with torch.no_grad(), m.trace(_ids(m)):
            h = layers[1].input
            layers[1].input = torch.where(mask, h * 0, h)  # a mask built on the client's CPU
            y = nn.output.logits.save()
    with torch.no_grad(), m.trace(_ids(m)):  # the same body, the mask moved to the activation's device
        h = layers[1].input
        layers[1].input = torch.where(mask.to(h.device), h * 0, h)
        y = nn.output.logits.save()
    assert y.shape[-1] == m.vocab_size and y.device.type == "cpu"
    with pytest.raises(WrongDevice):  # per-layer values of a sharded model stacked as they are
        with torch.no_grad(), m.trace(_ids(m)):
            z = torch.stack([layers[0].input[0, 0], torch.zeros(d)]).save()  # noqa: F841


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_every_measurement_keeps_its_tensors_on_the_models_device(family):
    """Every trace body of every measurement, run against a server model on another device
    (meta): none combines a client-side CPU tensor with an activation."""
    from effdepth import (
        contributions,
        depth_score,
        integrated_gradients,
        linear_maps,
        local_effects,
        logit_lens,
        residual_erasure,
        skip_effects,
    )
    from effdepth.data import Example
    from effdepth.measures.depth_score import greedy_correct_batch
    from effdepth.measures.residual_erasure import encode_example

    m = _on_meta_server(family)
    contributions(m, PROMPTS[:2], batch_size=2)
    for part in ("layer", "attention", "mlp"):
        skip_effects(m, PROMPTS[1:2], part=part)
    skip_effects(m, PROMPTS[2:3], mode="future", n_splits=2, split_step=2)
    local_effects(m, PROMPTS[1:2])
    logit_lens(m, PROMPTS[:1])
    residual_erasure(m, PROMPT, ANSWER, reference_prompts=REFERENCE[:1], batch_size=9)
    for part in ("layer", "attention", "mlp"):
        integrated_gradients(m, PROMPT, ANSWER, part=part, steps=4, batch_size=2)
    depth_score(m, {1: [Example("Q: 5+7-5 A:", " seven", 1)]}, split="answer", n_boot=10)
    ids, a0 = encode_example(m, PROMPT, ANSWER)
    greedy_correct_batch(m, [ids], [a0])
    texts = ["".join(np.random.default_rng(i).choice(list("abcdefgh ijklmnop"), size=40)) for i in range(6)]
    linear_maps(m, m, texts, window=16, lambdas=(0.0, 1e-3), progress=False)


# -- the control of a remote model (issue 27, item 8) ---------------------------------------------


def test_a_70b_models_control_keeps_depth_and_blocks_at_a_width_that_fits_here():
    from transformers import LlamaConfig

    from effdepth.access import controls

    cfg = LlamaConfig(
        num_hidden_layers=80,
        hidden_size=8192,
        intermediate_size=28672,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=128256,
    )
    w = controls.remote_control_width(cfg, budget=2e9)
    n = controls.narrow_config(cfg, w)
    assert w == 512 and (n.num_hidden_layers, n.vocab_size, n.head_dim) == (80, 128256, 128)
    assert (n.num_attention_heads, n.num_key_value_heads, n.intermediate_size) == (4, 1, 1792)
    assert controls.n_params(n) * 4 <= 2e9 < controls.n_params(controls.narrow_config(cfg, 1024)) * 4
    assert cfg.hidden_size == 8192  # the model's own config is untouched
    with pytest.raises(ValueError, match="power of two"):
        controls.narrow_config(cfg, 3000)


def test_a_remote_models_control_is_narrowed_only_when_it_does_not_fit(pair, monkeypatch):
    from effdepth import skip_effects
    from effdepth.access import controls

    remote, plain = pair
    full = controls.control_of(remote, seed=7)
    assert full.d_model == plain.d_model and "width" not in full.spec
    monkeypatch.setenv(controls.CONTROL_GB_ENV, str(controls.n_params(plain.hf.config) * 4 / 1e9 * 0.6))
    narrow = controls.control_of(remote, seed=7)
    assert (
        narrow.d_model == plain.d_model // 2
        and narrow.n_layers == plain.n_layers
        and narrow.vocab_size == plain.vocab_size
    )
    assert f"width {plain.d_model // 2} of {plain.d_model}" in narrow.spec and narrow.revision != full.revision
    assert not narrow.remote and narrow.dtype == torch.float32
    r = skip_effects(narrow, PROMPTS[1:2])  # measured here, with the model's tokenizer and prompts
    assert r.layer_effect.shape == (plain.n_layers, plain.n_layers)


def test_request_counts_equal_the_traces_the_strict_simulation_sends(pair):
    from effdepth import (
        contributions,
        integrated_gradients,
        logit_lens,
        ndif_plan,
        residual_erasure,
        skip_effects,
    )
    from effdepth.access import ndif
    from effdepth.measures.residual_erasure import encode_example

    remote, _ = pair
    L = remote.n_layers

    def traces(fn):
        with ndif.tally() as counts:
            fn()
        return counts["traces"]

    assert traces(lambda: contributions(remote, SAME_LEN, batch_size=2)) == ndif_plan.contributions_requests(3, 2)
    assert traces(lambda: skip_effects(remote, SAME_LEN, seed=5)) == ndif_plan.skip_requests(L, 3)
    assert traces(
        lambda: skip_effects(remote, SAME_LEN[:1], mode="future", n_splits=2, split_step=2, seed=5)
    ) == ndif_plan.skip_requests(L, 1, 2)
    assert traces(lambda: logit_lens(remote, SAME_LEN[:2])) == ndif_plan.lens_requests(2)
    ids, a0 = encode_example(remote, PROMPT, ANSWER)
    got = traces(lambda: residual_erasure(remote, PROMPT, ANSWER, reference_prompts=REFERENCE, batch_size=9, seed=5))
    assert got == ndif_plan.erasure_requests(L, len(ids) - 2, len(REFERENCE), 9)
    assert traces(lambda: integrated_gradients(remote, PROMPT, ANSWER, steps=8, batch_size=3)) == ndif_plan.ig_requests(
        L, 8, 3
    )


def test_service_check_fails_fast_and_clearly_without_a_server(monkeypatch):
    """No network: nnsight's own request to a closed port fails in well under a second, with a line
    that says what to do; a refused key, an unhosted model and another nnsight version are named."""
    import time

    import nnsight
    from nnsight import CONFIG
    from nnsight import ndif as service

    from effdepth import ndif_plan

    monkeypatch.setattr(CONFIG.API, "HOST", "http://127.0.0.1:9")
    t = time.time()
    with pytest.raises(ndif_plan.NdifUnavailable, match="cannot be reached .* without --remote"):
        ndif_plan.service_check("meta-llama/Llama-3.1-70B", "some-key")
    assert time.time() - t < 5
    replies = {"/whoami": {"email": None}, "/status": {"deployments": {}}, "/env": {"packages": {}}}
    monkeypatch.setattr(service, "_get", lambda path, timeout=None, headers=None: replies[path])
    with pytest.raises(ndif_plan.NdifUnavailable, match="does not recognise the API key"):
        ndif_plan.service_check("meta-llama/Llama-3.1-70B", "some-key")
    replies["/whoami"] = {"email": "me@example.org"}
    replies["/status"] = {
        "deployments": {
            "a": {"repo_id": "openai-community/gpt2", "deployment_level": "HOT", "application_state": "RUNNING"}
        }
    }
    with pytest.raises(
        ndif_plan.NdifUnavailable,
        match="does not host 'meta-llama/Llama-3.1-70B' now; hosted models: openai-community/gpt2",
    ):
        ndif_plan.service_check("meta-llama/Llama-3.1-70B", "some-key")
    replies["/status"]["deployments"]["b"] = {
        "repo_id": "meta-llama/Llama-3.1-70B",
        "deployment_level": "HOT",
        "application_state": "RUNNING",
    }
    replies["/env"] = {"packages": {"nnsight": "0.0.1"}}
    with pytest.raises(
        ndif_plan.NdifUnavailable, match=f"NDIF runs nnsight 0.0.1, this machine nnsight {nnsight.__version__}"
    ):
        ndif_plan.service_check("meta-llama/Llama-3.1-70B", "some-key")
    replies["/env"] = {"packages": {"nnsight": nnsight.__version__, "torch": "0.1"}}
    assert any("torch 0.1" in n for n in ndif_plan.service_check("meta-llama/Llama-3.1-70B", "some-key"))


def test_the_model_page_measures_a_remote_model_without_its_weights(pair):
    """exact_match through a trace on the strict simulation (the client's copy is on meta) gives
    the local answers; a remote model records the dtype NDIF runs it in."""
    from transformers import LlamaConfig

    from effdepth.access.ndif import served_dtype
    from effdepth.accuracy import exact_match
    from effdepth.data import Example

    remote, plain = pair
    assert remote.hf.lm_head.weight.is_meta
    exs = [Example("Q: 5+7-5 A:", " 7", 1), Example("ab", "c", 1), Example("Q: 1 A:", " 12", 2)]
    assert exact_match(remote, exs, batch_size=2) == exact_match(plain, exs, batch_size=2)
    assert (
        served_dtype(LlamaConfig(dtype="bfloat16")) == torch.bfloat16 and served_dtype(LlamaConfig()) == torch.bfloat16
    )
