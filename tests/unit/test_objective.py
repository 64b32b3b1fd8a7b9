"""§3.5 grid (effdepth.objective): data, losses, training, evaluation, depth use and the chapter."""

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from effdepth import objective as O
from effdepth import training as T
from effdepth.data.arithmetic import format_example, format_text
from effdepth.tokenizer import BOS_ID, EOS_ID, PAD_ID, zoo_tokenizer

TINY = O.GridSpec(
    d_model=32,
    n_layers=2,
    n_heads=2,
    d_ff=64,
    moeut_heads=2,
    moeut_att_experts=2,
    moeut_att_k=1,
    moeut_expert_size=16,
    moeut_ff_k=1,
    steps=3,
    batch_size=2,
    window=96,
    warmup=1,
    modules=("add_sub_multiple", "div"),
    n_eval=3,
    pretrain_steps=2,
    finetune_steps=2,
    threads=1,
)


@pytest.fixture(scope="module")
def pool():
    return O.problems("add_sub_multiple", "train", 30, 0, 94, (1.0, 4.0), (2.0, 6.0)) + O.problems(
        "div", "train", 30, 0, 94, (1.0, 4.0), (2.0, 6.0)
    )


def decode(ids):
    return zoo_tokenizer().decode([int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)])


def segments(ids, mask):
    """(text, answer_mask) of each <bos> … <eos> example in a window."""
    ids, mask = list(map(int, ids)), list(map(bool, mask))
    out, start = [], None
    for i, t in enumerate(ids):
        if t == BOS_ID:
            start = i
        elif t == EOS_ID:
            out.append((ids[start : i + 1], mask[start : i + 1]))
            start = None
    assert start is None, "an example was cut off at the end of a window"
    return out


def test_packing_never_splits_an_example(pool):
    data = O.arithmetic_batches(pool, TINY, steps=5, seed=1)
    texts = {format_text(q, a) for q, a in pool}
    seen = 0
    for ids, mask in zip(data["input_ids"].reshape(-1, TINY.window), data["answer_mask"].reshape(-1, TINY.window)):
        assert int(ids[0]) == BOS_ID  # every window starts with an example
        segs = segments(ids, mask)
        real = int((ids != PAD_ID).sum())
        assert sum(len(s) for s, _ in segs) == real  # nothing but whole examples and padding
        assert (ids[real:] == PAD_ID).all()
        for seg, _ in segs:
            assert decode(seg) in texts
        seen += len(segs)
    assert seen >= 10
    # another seed: another order of the same problems
    other = O.arithmetic_batches(pool, TINY, steps=5, seed=2)
    assert not torch.equal(other["input_ids"], data["input_ids"])


def _digest(batches):
    return hashlib.sha256(json.dumps({k: v.tolist() for k, v in sorted(batches.items())}).encode()).hexdigest()[:16]


def test_batches_and_cache_keys_are_the_recorded_ones(pool):
    """Recorded before the grid moved onto effdepth.training and data.arithmetic's one sampler: the
    same batches in the same order, and the same cache keys (a changed key retrains the book's grid)."""
    assert _digest(O.arithmetic_batches(pool, TINY, 5, 3)) == "1b897cc13859b167"
    assert _digest(O.multihop_batches(TINY, 3, 0)) == "5b8100a8b5026257"
    assert (O.make_spec("default").key(), O.make_spec("tiny").key(), O.make_spec("default", 4, "generator").key()) == (
        "889bb01a2f9c",
        "b8c0e37073b9",
        "44e9673b400f",
    )
    assert O.grid_dir(O.GridSpec()).relative_to(O.grid_dir()).as_posix() == "889bb01a2f9c"


def test_answer_mask_is_exactly_the_answer(pool):
    data = O.arithmetic_batches(pool, TINY, steps=3, seed=0)
    answers = dict(format_example(q, a) for q, a in pool)
    for ids, mask in zip(data["input_ids"].reshape(-1, TINY.window), data["answer_mask"].reshape(-1, TINY.window)):
        for seg, m in segments(ids, mask):
            text = decode(seg)
            prompt = text[: text.rindex(" A:") + 3]
            n_answer = len(answers[prompt])  # characters of " {answer}"
            assert m == [False] * (1 + len(prompt)) + [True] * (n_answer + 1)  # + <eos>
    lm = data["loss_mask"].reshape(-1, TINY.window)
    ids = data["input_ids"].reshape(-1, TINY.window)
    assert not lm[ids == PAD_ID].any() and not lm[ids == BOS_ID].any() and lm[(ids != PAD_ID) & (ids != BOS_ID)].all()


def test_answer_only_loss_ignores_question_tokens(pool):
    data = O.arithmetic_batches(pool, TINY, steps=1, seed=0)
    ids, amask = data["input_ids"][0], data["answer_mask"][0]
    logits = torch.randn(*ids.shape, 100, requires_grad=True)
    loss, n = T.masked_lm_loss(logits, ids, amask)
    loss.backward()
    g = logits.grad.abs().sum(-1)  # [B, T]: position t predicts token t+1
    targets_answer = torch.zeros_like(amask)
    targets_answer[:, :-1] = amask[:, 1:]
    assert n == int(amask[:, 1:].sum())
    assert (g[targets_answer] > 0).all()
    assert (g[~targets_answer] == 0).all()
    # and the value is the mean cross-entropy over the answer targets only
    lp = torch.log_softmax(logits.detach(), -1)
    ce = -lp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(loss.detach(), ce[amask[:, 1:]].mean())


def test_parameter_counts_match():
    spec = O.GridSpec()
    t, m = O.build_model("transformer", spec, 0), O.build_model("moeut", spec, 0)
    assert O.count_params(t) == O.transformer_params(spec)
    assert abs(O.count_params(m) - O.count_params(t)) / O.count_params(t) < 0.02
    assert m.config.num_hidden_layers == t.config.num_hidden_layers == spec.n_layers
    assert m.config.group_size == spec.group_size < spec.n_layers


@pytest.mark.parametrize("arch", ["transformer", "moeut"])
def test_short_training_lowers_the_loss(pool, arch):
    spec = replace(TINY, d_model=48, n_layers=2, d_ff=96, moeut_expert_size=24, batch_size=4)
    data = O.arithmetic_batches(pool, spec, steps=4, seed=0)
    model = O.build_model(arch, spec, 0)
    cfg = T.TrainConfig(steps=40, lr=1e-2, warmup=4, loss_on="answer", checkpoint_every=1000, log_every=4, threads=1)
    res = T.train(model, O.DeviceBatches(data), cfg, progress=False)
    first, last = res.history[0]["loss"], res.history[-1]["loss"]
    assert last < 0.6 * first, (first, last)


def test_exact_match_is_teacher_forced_greedy():
    class Oracle(torch.nn.Module):
        """Predicts every next token of its input (except a chosen token id, which it gets wrong)."""

        def __init__(self, wrong=None):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.wrong = wrong

        def forward(self, input_ids):
            logits = torch.zeros(*input_ids.shape, 100)
            nxt = torch.cat([input_ids[:, 1:], input_ids[:, :1]], 1)
            if self.wrong is not None:
                nxt = torch.where(nxt == self.wrong, (nxt + 1) % 100, nxt)
            logits.scatter_(-1, nxt[..., None], 1.0)
            return type("Out", (), {"logits": logits})()

    from effdepth.data.examples import Example
    from effdepth.tokenizer import encode

    exs = [Example("Q: 1+1 A:", " 2"), Example("Q: 3-5 A:", " -2"), Example("Q: 7 A:", " 7")]
    assert O.exact_match(Oracle(), exs) == [True, True, True]
    # an oracle that gets '-' wrong fails exactly the example whose answer has a '-'
    assert O.exact_match(Oracle(wrong=encode("-")[0]), exs) == [True, False, True]
    # … and errors in the question do not count ('+' only occurs in a question)
    assert O.exact_match(Oracle(wrong=encode("+")[0]), exs) == [True, True, True]


def test_erasure_depth_reads_the_last_used_layer():
    class R:
        arrays = {"answer_start": np.array(5)}

    eff = np.zeros((5, 7))  # L = 4, T = 7, answer starts at 5: question tokens 1, 2, 3; 4 predicts the answer
    eff[:, 0] = np.nan
    eff[:3, 1] = 1.0  # used up to residual 2
    eff[:5, 2] = 0.2  # used to the end, but matters little
    eff[:, 4] = 5.0  # the predicting position: ignored
    R.effect = eff
    assert O.erasure_depth(R) == pytest.approx((1.0 * 2 + 0.2 * 4) / (4 * 1.2))
    eff[4, 3] = 0.6  # a token read only by the last layer raises the score
    assert O.erasure_depth(R) > (1.0 * 2 + 0.2 * 4) / (4 * 1.2)
    R.effect = np.zeros((5, 7))
    assert np.isnan(O.erasure_depth(R))


def test_generator_settings_and_scaled_settings():
    real = O.problems("mul_div_multiple_longer", "extrapolate", 3, 0, 200)
    small = O.problems("mul_div_multiple_longer", "extrapolate", 3, 0, 200, (1.0, 4.0), (2.0, 6.0))
    assert len(real) == len(small) == 3
    assert np.mean([len(q) for q, _ in small]) < np.mean([len(q) for q, _ in real])
    assert O.problems("add_sub_multiple", "train", 4, 7, 96, (1.0, 4.0), (2.0, 6.0)) == O.problems(
        "add_sub_multiple", "train", 4, 7, 96, (1.0, 4.0), (2.0, 6.0)
    )
    # extrapolation expressions are longer than training ones (the generator's construction)
    ops = lambda pairs: np.mean([sum(c in "+-*/" for c in q.replace(" -", " ")) for q, _ in pairs])
    assert ops(O.problems("add_sub_multiple_longer", "extrapolate", 20, 0, 200, (1.0, 4.0), (2.0, 6.0))) > ops(
        O.problems("add_sub_multiple", "train", 20, 0, 200, (1.0, 4.0), (2.0, 6.0))
    )


def test_grid_trains_evaluates_caches_and_measures(tmp_path):
    grid = O.train_grid(TINY, seeds=(0,), progress=False, workers=1)
    assert set(grid.folders) == {(a, o, 0) for a in O.ARCHS for o in O.OBJECTIVES}
    folder = grid.folders[("moeut", "answer", 0)]
    assert folder.parent.parent == O.grid_dir() and (folder / "model.safetensors").exists()
    rep = grid.report("moeut", "answer", 0)
    assert rep["params"] > 0 and rep["loss_on"] == "answer" and rep["steps"] == TINY.steps
    acc = grid.accuracy_frame()
    assert set(acc.split) == {"interpolate", "extrapolate"}
    assert set(acc[acc.split == "extrapolate"].module) == {"add_sub_multiple_longer", "div_big", "all"}
    assert acc.accuracy.between(0, 1).all()
    summary = grid.summary()
    assert len(summary) == 2 * 2 * 2 and (summary.n == 1).all()
    # a second call trains nothing: the folders are reused
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again = O.train_grid(TINY, seeds=(0,), progress=False, workers=1)
    assert (again.folders[("moeut", "answer", 0)] / "model.safetensors").stat().st_mtime_ns == stamp
    # the models load as effdepth models with their adapters and the depth measurements run
    m = grid.load("moeut", "all", 0)
    assert m.adapter.family == "moeut" and m.n_layers == TINY.n_layers
    assert grid.load("transformer", "all", 0).adapter.family == "llama"
    sets = O.eval_sets(TINY)
    ex, cf = sets["interpolate"][0], sets["interpolate"][1]
    er = O.erasure(m, ex, cf)
    assert er.effect.shape == (TINY.n_layers + 1, len(m.encode(ex.text)))
    use = O.depth_use(grid, n_examples=2, n_erasure=1, progress=False)
    assert len(use) == 4 and use.depth_layer.between(0, 1).all() and use.depth_output.between(0, 1).all()


def test_interrupted_training_resumes(pool):
    """A run killed after a checkpoint continues from it and ends where an uninterrupted run ends."""
    spec = replace(TINY, steps=4, checkpoint_every=2)
    data = O.arithmetic_batches(pool, spec, steps=4, seed=0)
    ref = O.train_run(
        "ref", O.build_model("transformer", spec, 0), data, spec, 4, "all", spec.lr, "cpu", False, {}, None
    )

    class Stop(Exception):
        pass

    class Dying(O.DeviceBatches):
        def __getitem__(self, i):
            if i == 3:
                raise Stop
            return super().__getitem__(i)

    name = "resumed"
    partial = O.grid_dir(spec) / f"{name}.partial"
    cfg = T.TrainConfig(
        steps=4, lr=spec.lr, warmup=1, loss_on="all", checkpoint_every=2, threads=1, weight_decay=spec.weight_decay
    )
    with pytest.raises(Stop):
        T.train(O.build_model("transformer", spec, 0), Dying(data), cfg, checkpoint_dir=partial, progress=False)
    assert (partial / T.CHECKPOINT).exists()
    out = O.train_run(
        name, O.build_model("transformer", spec, 5), data, spec, 4, "all", spec.lr, "cpu", False, {}, None
    )
    from safetensors.torch import load_file

    a, b = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert json.loads((out / "report.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    from effdepth.running import NOTEBOOKS, execute

    out = execute(
        NOTEBOOKS / "objective.md",
        tmp_path / "objective.ipynb",
        parameters={"seeds": [0, 1], "preset": "tiny", "n_depth_examples": 2, "n_erasure": 1, "workers": 1},
    )
    nb = json.loads(Path(out).read_text())
    text = json.dumps(nb)
    assert "Traceback" not in text
    assert "MoEUT" in text and "answer-only" in text
    images = sum("image/png" in json.dumps(c.get("outputs", [])) for c in nb["cells"])
    assert images >= 4
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    glued = {
        o["metadata"]["scrapbook"]["name"]: "".join(next(iter(o["data"].values())))
        for o in outputs
        if "scrapbook" in o.get("metadata", {})
    }
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    cited = set(re.findall(r"\{glue:(?:md|text)\}[` ]([A-Za-z0-9_]+)", md))
    assert (
        {"ob_setup_text", "ob_accuracy_text", "ob_erasure_text", "ob_depth_text", "ob_finetune_text", "ob_summary_text"}
        <= cited
        <= set(glued)
    )
    # two seeds can never pass a sign test and a 2-step fine-tuning changes nothing: nothing is "as in
    # the paper", and the page says why
    assert (
        glued["ob_any_paper"].strip("'\"").split(" (")[0] in ("not testable here", "inconclusive at n = 1")
        and "**0** hold as in the paper" in glued["ob_summary_text"]
    )
    assert "fewer than 5 seeds" in glued["ob_summary_text"]
    assert "random init" in glued["ob_depth_text"] and "random init" in glued["ob_erasure_text"]
    # no Markdown built in a cell, the sentences glued by glue_all: tests/test_notebook_lint.py checks every notebook


def test_parallel_training_processes_match_serial_cells():
    """Two cells trained in two worker processes land in the cache with the same reports' shape;
    a worker trains with the same data and seed as the serial path (same loss history)."""
    spec = replace(TINY, modules=("div",), n_eval=2, steps=2)
    serial = O.train_grid(spec, seeds=(0,), archs=("transformer",), objectives=("all",), progress=False, workers=1)
    f = serial.folders[("transformer", "all", 0)]
    hist = json.loads((f / "report.json").read_text())["history"]
    import shutil

    shutil.rmtree(f)
    par = O.train_grid(
        spec, seeds=(0,), archs=("transformer",), objectives=("all", "answer"), progress=False, workers=2
    )
    for key in par.folders:
        assert (par.folders[key] / "model.safetensors").exists()
    again = json.loads((par.folders[("transformer", "all", 0)] / "report.json").read_text())["history"]
    assert [h["step"] for h in again] == [h["step"] for h in hist]
    np.testing.assert_allclose([h["loss"] for h in again], [h["loss"] for h in hist], rtol=1e-4)
