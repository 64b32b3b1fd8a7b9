"""§3.2 layer skipping and §2b local effects against an independent hook-based computation.

The reference runs one full plain-PyTorch forward per skipped layer (and split point), with a hook
that sets the block's output to its input at the intervened positions (or zeroes the attention /
MLP write), and compares every block's write with the clean run's.
"""

import re

import numpy as np
import pytest
import torch

from effdepth import local_effects, skip_effects
from effdepth.access.model import wrap_module
from effdepth.measures.skip_effects import position_masks, prompt_effects, split_points
from effdepth.testing import char_tokenizer, tiny_model
from tests.hooks import READ_POINTS, get

PROMPTS = ["The cat sat on the mat, and then it slept.", "Q: 12 + 7 = ? A: 19", "Hi there"]
LONG = [
    "The quick brown fox jumps over the lazy dog; it was not amused by it.",
    "a b c d e f g h i j k l m n o p q r s",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU 2 OpenMP threads make each small op
    ~100x slower (spin-waiting); restored afterwards for the other test files."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _out(o):
    return o[0] if isinstance(o, tuple) else o


@torch.no_grad()
def run_with_hooks(hf, family, ids, edit=None):
    """Block inputs h_0 … h_L, writes Δ_l (lists of [T, d]) and probabilities [T, V] of one forward.

    edit: None, or (kind, layer, keep) with kind 'layer' (output := input where keep is False),
    'attention'/'mlp' (that write multiplied by keep), or 'local' (layer = s; every block i > s and
    the final norm read their clean input minus the clean Δ_s where keep is False: needs `clean`).
    """
    layers_path, attn_name, attn_tuple, mlp_name = READ_POINTS[family]
    blocks = get(hf, layers_path)
    ins, outs, handles = [], [], []
    kind, s, keep, clean = edit if edit else (None, None, None, None)
    for i, block in enumerate(blocks):

        def pre(mod, args, kwargs, i=i):
            if kind == "local" and i > s:
                new = clean["h"][i] - (~keep)[:, None] * clean["d"][s]
                args = (new[None],) + tuple(args[1:])
                ins.append(new)
                return args, kwargs
            ins.append((args[0] if args else kwargs["hidden_states"])[0].clone())

        def post(mod, args, kwargs, output, i=i):
            h = _out(output)
            if kind == "layer" and i == s:
                x = args[0] if args else kwargs["hidden_states"]
                h = torch.where(keep[None, :, None], h, x)
                outs.append(h[0].clone())
                return h if not isinstance(output, tuple) else (h,) + tuple(output[1:])
            outs.append(h[0].clone())

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.register_forward_hook(post, with_kwargs=True))
    if kind in ("attention", "mlp"):
        sub = get(blocks[s], attn_name if kind == "attention" else mlp_name)
        is_tuple = kind == "attention" and attn_tuple

        def zero(mod, i, o):
            if is_tuple:
                return (o[0] * keep[None, :, None],) + tuple(o[1:])
            return o * keep[None, :, None]

        handles.append(sub.register_forward_hook(zero))
    if kind == "local":
        norm = get(hf, {"gpt2": "transformer.ln_f", "gpt_neox": "gpt_neox.final_layer_norm"}.get(family, "model.norm"))
        handles.append(
            norm.register_forward_pre_hook(lambda m, a: ((clean["h"][-1] - (~keep)[:, None] * clean["d"][s])[None],))
        )
    try:
        logits = hf(input_ids=ids[None], use_cache=False).logits[0]
    finally:
        for h in handles:
            h.remove()
    h = ins + [outs[-1]]
    deltas = [o - i for i, o in zip(ins, outs)]
    return {"h": h, "d": deltas, "p": torch.softmax(logits.double(), -1)}


def reference(model, family, prompts, mode="current", part="layer", n_splits=4, seed=0, step=8, local=False):
    """Per-example max matrices [P, L, L] (relative changes clipped to [0, 1], as the measurement
    defines them) and outputs [P, L], from one hooked forward per variant."""
    L = model.n_layers
    ex_layer, ex_out = [], []
    for p in prompts:
        ids = model.encode(p)
        T = len(ids)
        splits = split_points(T, n_splits, seed, key=p, step=step) if mode == "future" else [0]
        inter, meas = position_masks(T, mode, splits)
        clean = run_with_hooks(model.hf, family, ids)
        E, O = np.zeros((len(splits), L, L)), np.zeros((len(splits), L))
        for j in range(len(splits)):
            keep = ~inter[j]
            for s in range(L):
                run = run_with_hooks(model.hf, family, ids, ("local" if local else part, s, keep, clean))
                for l in range(s, L):
                    d_bar = run["d"][l].double()
                    if local and l == s:  # the skipped layer's own write is gone where intervened
                        d_bar = clean["d"][s].double() * keep[:, None]
                    d = clean["d"][l].double()
                    r = (d_bar - d).norm(dim=-1) / d.norm(dim=-1).clamp_min(1e-6)
                    E[j, s, l] = min(
                        float(r[meas[j]].max()), 1.0
                    )  # relative changes are clipped to [0, 1] (the colour scale)
                O[j, s] = (run["p"] - clean["p"]).norm(dim=-1)[meas[j]].max()
        ex_layer.append(E.max(0))
        ex_out.append(O.max(0))
    return np.stack(ex_layer), np.stack(ex_out)


@pytest.mark.parametrize(
    "family,mode,part",
    [
        ("llama", "current", "layer"),
        ("llama", "future", "layer"),
        ("gpt2", "current", "layer"),
        ("gpt_neox", "future", "layer"),
        ("gemma2", "current", "layer"),
        ("olmo2", "current", "attention"),
        ("qwen3", "future", "mlp"),
    ],
)
def test_fast_path_matches_hook_reference(tiny_models, family, mode, part):
    model = tiny_models[family]
    prompts = LONG[:1] if mode == "future" else PROMPTS[1:]
    res = skip_effects(model, prompts, mode=mode, part=part, split_step=4, method="fast")
    ref_layer, ref_out = reference(model, family, prompts, mode, part, step=4)
    np.testing.assert_allclose(res.example_layer_effect, ref_layer, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(res.example_output_effect, ref_out, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.layer_effect, ref_layer.max(0), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(res.output_effect, ref_out.max(0), rtol=1e-4, atol=1e-6)
    assert res.output_effect.max() > 1e-4  # the reference is not trivially zero


def test_structure_current_and_future(tiny_models):
    model = tiny_models["llama"]
    L = model.n_layers
    cur = skip_effects(model, PROMPTS, mode="current")
    np.testing.assert_allclose(np.diag(cur.layer_effect), 1.0, atol=1e-6)
    assert np.all(cur.layer_effect[np.tril_indices(L, -1)] == 0)
    assert np.all(cur.layer_effect[np.triu_indices(L, 1)] > 1e-3)  # skipping changes later layers
    assert np.all(cur.mean_layer_effect <= cur.layer_effect + 1e-9)
    fut = skip_effects(model, LONG, mode="future", split_step=4)
    np.testing.assert_allclose(np.diag(fut.layer_effect), 0.0, atol=1e-6)
    assert np.all(fut.layer_effect[np.triu_indices(L, 1)] > 1e-4)  # …but it reaches later tokens
    assert fut.split_points.shape == (2, 4) and (fut.split_points % 4 == 0).all()
    frame = cur.to_frame()
    assert len(frame) == L * L + L and set(frame.target) == {"layer", "output"}
    row = frame[(frame.skipped == 1) & (frame.layer == 2)]
    assert row.effect.item() == pytest.approx(cur.layer_effect[1, 2])


def test_split_points_follow_the_spec():
    pts = split_points(100, n_splits=4, seed=3, key="x")
    assert len(pts) == 4 and all(t % 8 == 0 and 8 <= t < 96 for t in pts)
    assert pts == split_points(100, n_splits=4, seed=3, key="x")
    assert any(split_points(100, 4, seed=s, key="x") != pts for s in range(4, 9))
    assert split_points(12, 4) == []  # 8 is not < 12 - 4
    inter, meas = position_masks(20, "future", [8])
    assert (
        not inter[0, 0]
        and inter[0, 1:8].all()
        and not inter[0, 8:].any()
        and meas[0, 8:].all()
        and not meas[0, :8].any()
    )


@pytest.mark.parametrize("mode,part", [("current", "layer"), ("future", "attention")])
def test_fast_path_equals_nnsight_path(tiny_models, mode, part):
    model = tiny_models["gpt_neox" if part == "attention" else "llama"]
    prompts = LONG if mode == "future" else PROMPTS
    kw = dict(mode=mode, part=part, split_step=4, positions=True)
    fast = skip_effects(model, prompts, method="fast", **kw)
    traced = skip_effects(model, prompts, method="trace", batch_size=5, **kw)
    for name in (
        "example_layer_effect",
        "example_output_effect",
        "mean_layer_effect",
        "position_layer_effect",
        "position_output_effect",
    ):
        np.testing.assert_allclose(getattr(fast, name), getattr(traced, name), rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("family,mode", [("llama", "current"), ("gpt2", "future")])
def test_local_effects_match_hook_reference(tiny_models, family, mode):
    model = tiny_models[family]
    prompts = LONG[:1] if mode == "future" else PROMPTS[:2]
    res = local_effects(model, prompts, mode=mode, split_step=4)
    ref_layer, ref_out = reference(model, family, prompts, mode, step=4, local=True)
    np.testing.assert_allclose(res.example_layer_effect, ref_layer, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(res.example_output_effect, ref_out, rtol=1e-4, atol=1e-6)
    traced = local_effects(model, prompts, mode=mode, split_step=4, method="trace", batch_size=3)
    np.testing.assert_allclose(traced.example_layer_effect, res.example_layer_effect, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(traced.example_output_effect, res.example_output_effect, rtol=1e-4, atol=1e-6)
    skip = skip_effects(model, prompts, mode=mode, split_step=4)
    np.testing.assert_allclose(res.layer_effect[:, 0], skip.layer_effect[:, 0])  # nothing upstream
    np.testing.assert_allclose(np.diag(res.layer_effect), np.diag(skip.layer_effect), atol=1e-6)
    # the first layer after the skipped one sees the same input either way
    np.testing.assert_allclose(np.diag(res.layer_effect, 1), np.diag(skip.layer_effect, 1), rtol=1e-4, atol=1e-5)


def test_remote_local_runs_the_nnsight_path():
    tok = char_tokenizer()
    model = wrap_module(tiny_model("llama", vocab_size=len(tok)), char_tokenizer(), spec="tiny:llama", remote="local")
    remote = skip_effects(model, PROMPTS[1:])  # auto: the trace path, through NDIF's serialisation
    assert remote.meta["params"]["method"] == "trace"
    plain = wrap_module(model.hf, char_tokenizer(), spec="tiny:llama")
    np.testing.assert_allclose(remote.layer_effect, skip_effects(plain, PROMPTS[1:]).layer_effect, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        remote.output_effect, skip_effects(plain, PROMPTS[1:]).output_effect, rtol=1e-4, atol=1e-6
    )
    loc = local_effects(model, PROMPTS[2:])
    np.testing.assert_allclose(loc.layer_effect, local_effects(plain, PROMPTS[2:]).layer_effect, rtol=1e-4, atol=1e-5)


def test_bad_arguments(tiny_models):
    model = tiny_models["llama"]
    with pytest.raises(ValueError, match="at least one prompt"):
        skip_effects(model, [])
    with pytest.raises(ValueError, match="mode"):
        skip_effects(model, PROMPTS, mode="past")
    with pytest.raises(ValueError, match="long enough"):
        skip_effects(model, ["Hi"], mode="future")
    with pytest.raises(ValueError, match="method"):
        prompt_effects(model, model.encode(PROMPTS[0]), "current", [0], "auto")


@pytest.mark.slow
def test_notebook_executes_on_a_tiny_model(tmp_path, monkeypatch):
    import nbformat

    from effdepth import running
    from effdepth.testing import save_tiny

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel: one thread is fastest for a tiny model
    folder = save_tiny(tmp_path / "m", "llama", n_layers=4)
    params = {
        "model": str(folder),
        "n_examples": 3,
        "n_examples_future": 2,
        "position_examples": 1,
        "n_controls": 3,
        "n_perm": 200,
    }
    out = running.execute(running.NOTEBOOKS / "skipping.md", tmp_path / "skipping.ipynb", params)
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    # 3a, 3b (each with its control row), halves ×2, 17a/b, parts ×2, 13 + control, positions + control, 5a/b
    assert sum(any(k.endswith("image/png") for k in o.get("data", {})) for o in outputs) >= 14
    text = "\n".join(str(v) for o in outputs for v in o.get("data", {}).values())
    assert (
        folder.name in text and "nnsight" in text
    )  # the model that made it (by name: no machine path), and the versions
    assert "on 3 random-init control(s)" in text  # the run names its controls
    # every sentence comes from the chapter module through myst-nb glue; the Markdown cites it
    glued = {o["metadata"]["scrapbook"]["name"] for o in outputs if "scrapbook" in o.get("metadata", {})}
    assert {"summary", "current_verdict", "future_verdict", "output_verdict", "current_diag", "run"} <= glued
    cited = set(
        re.findall(
            r"\{glue:(?:md|text)\}`([a-z0-9_]+)", "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        )
    )
    assert cited and cited <= glued  # no citation of a name that was not glued
    import jupytext

    code = "\n".join(c.source for c in jupytext.read(running.NOTEBOOKS / "skipping.md").cells if c.cell_type == "code")
    assert "Markdown(" not in code and not re.findall(r'"[^"\n]{60,}"', code)  # no sentences built in code cells
    assert not any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs
    )  # static in the book
