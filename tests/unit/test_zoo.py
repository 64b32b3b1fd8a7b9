"""The zoo: shared tokenizer, packing, the training loop (loss goes down, exact resume), ensure/load."""

from __future__ import annotations

import json
import string
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from effdepth import training as T
from effdepth import zoo
from effdepth.data.examples import Example
from effdepth.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, encode, zoo_tokenizer
from effdepth.zoo import corpus
from effdepth.zoo import evaluate as E

TINY_DATA = corpus.DataSpec(
    window=64, batch_size=8, lookahead=4, curriculum_steps=5, curriculum_batch=8, curriculum_stop=0.0, w_dm=0.0
)  # DM problems: sympy is slow for a unit test


def tiny_spec(name="tiny", steps=30, **kw):
    kw.setdefault("skill_rounds", 0)  # a tiny model never has the one-hop skill: no extra rounds unless a test asks
    return zoo.ZooSpec(
        name,
        n_layers=2,
        d_model=32,
        n_heads=2,
        d_ff=64,
        steps=steps,
        lr=1e-2,
        warmup=5,
        checkpoint_every=10,
        threads=1,
        data=TINY_DATA,
        n_eval=4,
        **kw,
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDEPTH_CACHE", str(tmp_path))
    return tmp_path


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_and_conventions(tmp_path):
    tok = zoo_tokenizer()
    text = string.printable.replace("\t", "").replace("\r", "").replace("\x0b", "").replace("\x0c", "")
    ids = tok(text).input_ids
    assert ids[0] == BOS_ID and len(ids) == len(text) + 1  # <bos>, then one token per character
    assert ids[1:] == encode(text)
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok(text, add_special_tokens=False).input_ids == encode(text)
    assert len(tok) == VOCAB_SIZE and (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    # prompt + answer tokenizes as prompt then answer (the answer keeps its separator space)
    assert encode("Q: 5+7 A:" + " 12") == encode("Q: 5+7 A:") + encode(" 12")

    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text).input_ids == ids and again.decode(ids, skip_special_tokens=True) == text


def test_all_zoo_models_share_one_tokenizer(tmp_path):
    files = []
    for i, spec in enumerate(zoo.MODELS.values()):
        assert spec.config().vocab_size == VOCAB_SIZE
        d = tmp_path / str(i)
        zoo_tokenizer().save_pretrained(d)
        files.append((d / "tokenizer.json").read_bytes())
    assert len(set(files)) == 1
    assert {zoo.DEFAULT, zoo.SHALLOW, zoo.DEEP} <= set(zoo.MODELS)
    assert zoo.MODELS[zoo.SHALLOW].n_layers < zoo.MODELS[zoo.DEEP].n_layers
    assert len({s.n_layers for s in zoo.MODELS.values()}) >= 3


def test_zoo_batches_and_data_key_are_the_recorded_ones():
    """Recorded before the zoo moved onto effdepth.training: the same batches in the same order, and the
    same data key (the cache file names of the shared batches)."""
    import hashlib

    digest = lambda b: hashlib.sha256(json.dumps({k: v.tolist() for k, v in sorted(b.items())}).encode()).hexdigest()[
        :16
    ]
    assert digest(corpus.build_batches(TINY_DATA, 3, "train")) == "1447a99e74f4ae9c"
    assert digest(corpus.curriculum_batches(TINY_DATA, 2)) == "6efc1e1b9cd2af27"
    assert corpus.DataSpec().key() == "20378af77673"


# ---------------------------------------------------------------- packing and loss


def _examples(n, seed=0):
    import random

    rng = random.Random(seed)
    return [("Q: " + "x" * rng.randint(1, 25) + " A:", " " + "y" * rng.randint(1, 3)) for _ in range(n)]


@pytest.mark.parametrize("lookahead", [0, 5])
def test_pack_never_splits_an_example(lookahead):
    exs = _examples(200)
    encoded = [T.encode_pair(p, a) for p, a in exs]
    wins = list(T.pack(iter(encoded), 40, lookahead=lookahead))
    assert all(len(w[0]) == len(w[1]) == 40 for w in wins)
    recovered = []
    for ids, mask in wins:
        assert ids[0] == BOS_ID  # every window starts at an example
        cur = None
        for i, m in zip(ids, mask):
            if i == BOS_ID:
                cur = ([i], [m])
            elif cur is not None:
                cur[0].append(i)
                cur[1].append(m)
                if i == EOS_ID:
                    recovered.append(cur)
                    cur = None
            else:
                assert i == PAD_ID
        assert cur is None  # no example left open at the window's end
    assert sorted(recovered) == sorted((list(i), list(m)) for i, m in encoded)
    if lookahead == 0:
        assert recovered == [(list(i), list(m)) for i, m in encoded]
    with pytest.raises(ValueError, match="does not fit"):
        list(T.pack(iter(encoded), 10))
    assert len(list(T.pack(iter(encoded), 10, too_long="skip"))) < len(wins)


def test_answer_mask_and_masked_loss():
    ids, mask = T.encode_pair("Q: 1+1 A:", " 2")
    assert [i for i, m in zip(ids, mask) if m] == encode(" 2") + [EOS_ID]
    ids2, mask2 = T.encode_turns([("F: a>b Q: a 1 hops? A:", " b"), (" Q: a 1 hops? A:", " b")])
    assert sum(mask2) == 5 and ids2[-1] == EOS_ID
    b = T.make_batch([T._pad(ids, mask, 16)])
    assert not b["loss_mask"][0, 0] and not b["loss_mask"][0, -1] and b["loss_mask"].sum() == len(ids) - 1
    # a model that puts all mass on the right next token has zero loss on exactly the masked targets
    logits = torch.full((1, 16, VOCAB_SIZE), -30.0)
    logits[0, torch.arange(15), b["input_ids"][0, 1:]] = 30.0
    assert T.masked_lm_loss(logits, b["input_ids"], b["answer_mask"])[0] < 1e-6
    logits[0, 3] = 0.0  # position 3 predicts a prompt token: answer-only loss unaffected
    assert T.masked_lm_loss(logits, b["input_ids"], b["answer_mask"])[0] < 1e-6
    assert T.masked_lm_loss(logits, b["input_ids"], b["loss_mask"])[0] > 0.1


class _Oracle(torch.nn.Module):
    """Predicts the true next token of the sequences it was told about, except at chosen spots."""

    def __init__(self, wrong_at=None):
        super().__init__()
        self.wrong_at = wrong_at or set()

    def forward(self, input_ids):
        B, Tn = input_ids.shape
        logits = torch.zeros(B, Tn, VOCAB_SIZE)
        nxt = torch.cat([input_ids[:, 1:], torch.zeros(B, 1, dtype=torch.long)], 1)
        logits.scatter_(2, nxt[..., None], 1.0)
        for b, t in self.wrong_at:
            logits[b, t] = 0
            logits[b, t, 7] = 1.0
        return type("Out", (), {"logits": logits})()


def test_exact_match_is_teacher_forced_argmax_on_answer_tokens_only():
    exs = [Example("Q: 1+2 A:", " 3", 1), Example("Q: 9-9 A:", " 0", 1)]
    assert E.exact_match(_Oracle(), exs) == [True, True]
    n_prompt = 1 + len(encode(exs[0].prompt))  # <bos> + prompt
    # wrong on the last answer token of example 0 -> only that example fails
    assert E.exact_match(_Oracle({(0, n_prompt)}), exs) == [False, True]
    # wrong inside the prompt -> still correct (prompt tokens are not scored)
    assert E.exact_match(_Oracle({(0, 2)}), exs) == [True, True]


def _texts(ids):
    from effdepth.tokenizer import CHARS, SPECIALS

    itos = list(SPECIALS) + list(CHARS)
    return ["".join(itos[i] for i in row if i > 3 or i == EOS_ID) for row in ids.tolist()]


def test_zoo_windows_hold_one_fact_set_first_with_answer_only_weights():
    from effdepth.data import multihop as M

    data = corpus.build_batches(TINY_DATA, 10)
    T_ = TINY_DATA.window
    ids, w = data["input_ids"].reshape(-1, T_), data["loss_weight"].reshape(-1, T_)
    answer = data["answer_mask"].reshape(-1, T_)
    texts = _texts(ids)
    n_fact = 0
    for k, t in enumerate(texts):
        assert t.count("F: ") <= 1
        if "F: " in t:
            n_fact += 1
            assert t.startswith("F: ")  # the fact set comes first, right after <bos>
            n_tok = len(t[: t.index("<eos>")]) + 2
            assert torch.equal(w[k, :n_tok].bool(), answer[k, :n_tok])  # only answers/walk letters count
            assert (w[k, n_tok:] == 1).all()
        else:
            assert (w[k] == 1).all()
    assert n_fact > 0
    # every multi-hop question in the mixture is answered as the solver says
    qs = [t.split("<eos>")[0] for t in texts if t.startswith("F: ") and " Q" in t.split("<eos>")[0]]
    assert qs and all(M.solve(q[:-1])[0] == q[-1] for q in qs)
    assert corpus.build_batches(TINY_DATA, 3)["input_ids"].equal(data["input_ids"][:3])  # seeded


def test_curriculum_batches_are_walks_with_loss_on_the_walk():
    cur = corpus.curriculum_batches(TINY_DATA, 2)
    assert cur["input_ids"].shape == (2, TINY_DATA.curriculum_batch, TINY_DATA.curriculum_window)
    for t, w, a in zip(
        _texts(cur["input_ids"].reshape(-1, 40)), cur["loss_weight"].reshape(-1, 40), cur["answer_mask"].reshape(-1, 40)
    ):
        assert t.startswith("F: ") and " W1: " in t and t.count("<eos>") == 1
        assert torch.equal(w.bool(), a) and int(a.sum()) == 4 + 2 + 1  # one per lookup, and <eos>


# ---------------------------------------------------------------- training and the zoo


def test_training_lowers_the_loss_and_writes_a_complete_folder(cache):
    spec = tiny_spec()
    path = zoo.ensure(spec, progress=False)
    assert path == cache / "zoo" / "tiny" and path.is_dir()
    assert not (cache / "zoo" / "tiny.partial").exists()
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "report.json"} <= names
    assert T.CHECKPOINT not in names
    rep = zoo.report(spec)
    hist = [h["loss"] for h in rep["history"] if h["phase"] == "mixture"]
    assert rep["curriculum_steps"] == 5 and rep["steps"] == 35 and len(hist) == 3 and hist[-1] < hist[0] - 0.5
    # the trained model beats the unigram baseline on the held-out tokens it is trained to predict
    # (fact letters are random: no model predicts them, so the all-token loss is no measure of learning)
    assert rep["heldout_loss_trained"] < rep["unigram_loss_trained"]
    assert set(rep["multihop_accuracy"]) == {"1", "2", "3", "4", "all"}
    assert set(rep["arithmetic_accuracy"]) == {"1", "2", "3", "4", "5", "all"}
    assert rep["params"] == sum(p.numel() for p in zoo.build_model(spec).parameters())
    assert (path / "tokenizer.json").read_bytes() == _fresh_tokenizer_json(cache)
    # a second call finds the folder and does not retrain
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert zoo.ensure(spec, progress=False) == path and (path / "model.safetensors").stat().st_mtime_ns == mtime


def _fresh_tokenizer_json(tmp: Path) -> bytes:
    zoo_tokenizer().save_pretrained(tmp / "fresh-tok")
    return (tmp / "fresh-tok" / "tokenizer.json").read_bytes()


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_interrupted_training_resumes_to_identical_weights(cache, monkeypatch, tmp_path_factory):
    spec = tiny_spec(steps=20)
    # interrupt the run at step 15 (after the checkpoint of step 10)
    real = T.StackedBatches.__getitem__

    def flaky(self, i):
        if i == 15:
            raise KeyboardInterrupt("simulated interruption")
        return real(self, i)

    monkeypatch.setattr(T.StackedBatches, "__getitem__", flaky)
    with pytest.raises(KeyboardInterrupt):
        zoo.ensure(spec, progress=False)
    partial = cache / "zoo" / "tiny.partial"
    assert not (cache / "zoo" / "tiny").exists()  # nothing half-done is visible under the final name
    assert torch.load(partial / T.CHECKPOINT, weights_only=True)["step"] == 10
    monkeypatch.setattr(T.StackedBatches, "__getitem__", real)
    resumed = zoo.ensure(spec, progress=False)
    assert zoo.report(spec)["history"][-1]["step"] == 5 + 20

    other = tmp_path_factory.mktemp("uninterrupted")
    monkeypatch.setenv("EFFDEPTH_CACHE", str(other))
    straight = zoo.ensure(spec, progress=False)
    a, b = _weights(resumed), _weights(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and a different seed gives different weights (the comparison above can fail)
    c = zoo.build_model(tiny_spec(steps=20, seed=1)).state_dict()
    assert not torch.equal(
        c["model.embed_tokens.weight"], zoo.build_model(spec).state_dict()["model.embed_tokens.weight"]
    )


def test_training_the_zoo_in_parallel_processes_gives_the_same_models(cache, monkeypatch, tmp_path_factory):
    specs = [tiny_spec("tiny-a", steps=10), replace(tiny_spec("tiny-b", steps=10), n_layers=3)]
    folders = zoo.train_all(specs, progress=False, workers=2)
    assert list(folders) == ["tiny-a", "tiny-b"] and all(zoo.report(s)["steps"] == 15 for s in specs)
    monkeypatch.setenv("EFFDEPTH_CACHE", str(tmp_path_factory.mktemp("one-process")))
    for s in specs:
        a, b = _weights(folders[s.name]), _weights(zoo.ensure(s, progress=False))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_loop_resumes_from_an_iterator_factory(tmp_path):
    data = corpus.build_batches(TINY_DATA, 12)
    batches = T.StackedBatches(data)
    cfg = T.TrainConfig(steps=12, lr=1e-2, warmup=2, checkpoint_every=4, log_every=4, threads=1, loss_on="answer")

    def model():
        return zoo.build_model(tiny_spec())

    m1 = model()
    T.train(m1, lambda: iter(batches), cfg, tmp_path / "a", progress=False)

    def failing():
        for i, b in enumerate(batches):
            if i == 9:
                raise RuntimeError("boom")
            yield b

    m2 = model()
    with pytest.raises(RuntimeError):
        T.train(m2, failing, cfg, tmp_path / "b", progress=False)
    m3 = model()
    res = T.train(m3, lambda: iter(batches), cfg, tmp_path / "b", progress=False)
    assert res.resumed_from == 8
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m3.state_dict().values()))
    with pytest.raises(ValueError, match="loss_on"):
        T.train(model(), batches, T.TrainConfig(steps=1, loss_on="prompt"))


def test_unknown_zoo_name_is_a_clear_error(cache):
    with pytest.raises(ValueError, match="llama-8l"):
        zoo.ensure("llama-99l")
    with pytest.raises(ValueError, match="Unknown zoo model"):
        zoo.train_all(["llama-4l", "nope"])
    from effdepth import load_model

    with pytest.raises(ValueError, match="Unknown zoo model 'nope'"):
        load_model("zoo:nope")
    assert not (cache / "zoo").exists() or not any((cache / "zoo").iterdir())


def test_load_model_zoo_end_to_end_with_nnsight(cache, monkeypatch):
    spec = tiny_spec()
    monkeypatch.setitem(zoo.MODELS, "tiny", spec)
    from effdepth import load_model

    m = load_model("zoo:tiny")
    assert m.n_layers == 2 and m.d_model == 32 and m.adapter.family == "llama"
    ids = m.encode("Q: 5+7 A:")
    assert ids[0] == BOS_ID and ids.shape == (len("Q: 5+7 A:") + 1,)
    with torch.no_grad():
        with m.trace(ids[None]):
            out = m.nn.lm_head.output.save()
        direct = m.hf(input_ids=ids[None]).logits
    assert out.shape == (1, len(ids), VOCAB_SIZE)
    torch.testing.assert_close(out, direct)
    assert json.loads((cache / "zoo" / "tiny" / "report.json").read_text())["name"] == "tiny"


# ---------------------------------------------------------------- hostile and damaged checkpoints, concurrency


class _Planted:
    """A pickle that, when unpickled with weights_only=False, writes a marker file (stands for any code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _interrupt_at(monkeypatch, step):
    real = T.StackedBatches.__getitem__

    def flaky(self, i):
        if i == step and len(self) > 5:  # the mixture phase (the tiny curriculum has 5 batches)
            raise KeyboardInterrupt("simulated interruption")
        return real(self, i)

    monkeypatch.setattr(T.StackedBatches, "__getitem__", flaky)
    return real


def test_a_planted_pickle_checkpoint_is_not_executed_but_set_aside(cache, capsys, tmp_path_factory):
    spec = tiny_spec(steps=20)
    marker = cache / "marker"
    ckdir = cache / "zoo" / "tiny.partial" / "curriculum"
    ckdir.mkdir(parents=True)
    (ckdir.parent / "spec.json").write_text(
        json.dumps(spec.to_dict(), sort_keys=True)
    )  # the attacker matches the spec too
    torch.save({"model": _Planted(marker), "step": 3}, ckdir / T.CHECKPOINT)
    assert T.load_checkpoint(ckdir) is None  # read safely, rejected, set aside
    line = capsys.readouterr().out.strip()
    assert not marker.exists()
    assert (
        "unreadable" in line
        and str(ckdir / T.CHECKPOINT) in line
        and "restarting" in line
        and len(line.splitlines()) == 1
    )
    assert (ckdir / "checkpoint.pt.damaged").exists() and not (ckdir / T.CHECKPOINT).exists()
    # end to end: planted again, the next training run neither executes it nor fails, and trains normally
    torch.save({"model": _Planted(marker)}, ckdir / T.CHECKPOINT)
    path = zoo.ensure(spec, progress=False)
    assert not marker.exists() and "set aside" in capsys.readouterr().out
    assert zoo.report(spec)["steps"] == 25 and not list(path.glob("*.damaged"))
    # the same pickle loaded the unsafe way does run code: the test's attack is real
    torch.save(_Planted(marker), cache / "evil.pt")
    torch.load(cache / "evil.pt", weights_only=False)
    assert marker.read_text() == "pwned"


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_with_identical_weights(
    cache, monkeypatch, capsys, tmp_path_factory
):
    spec = tiny_spec(steps=30)
    real = _interrupt_at(monkeypatch, 25)  # after the checkpoints of steps 10 and 20
    with pytest.raises(KeyboardInterrupt):
        zoo.ensure(spec, progress=False)
    partial = cache / "zoo" / "tiny.partial"
    ck = partial / T.CHECKPOINT
    assert torch.load(partial / T.PREVIOUS, weights_only=True)["step"] == 10
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])  # a disk-full / killed-writer truncation
    monkeypatch.setattr(T.StackedBatches, "__getitem__", real)
    resumed = zoo.ensure(spec, progress=False)
    out = capsys.readouterr().out
    assert f"training checkpoint {ck} is unreadable" in out and "resuming from checkpoint.prev.pt" in out
    monkeypatch.setenv("EFFDEPTH_CACHE", str(tmp_path_factory.mktemp("straight")))
    a, b = _weights(resumed), _weights(zoo.ensure(spec, progress=False))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a short file with no previous checkpoint: set aside, and the phase restarts
    d = cache / "lone"
    d.mkdir()
    (d / T.CHECKPOINT).write_bytes(b"PK\x03\x04 truncated")
    assert T.load_checkpoint(d) is None and (d / "checkpoint.pt.damaged").exists()
    assert "restarting this phase from step 0" in capsys.readouterr().out


_ENSURE_IN_A_PROCESS = """
import os, sys
sys.path.insert(0, {tests!r})
from test_zoo import tiny_spec
from effdepth import zoo
path = zoo.ensure(tiny_spec(steps=20), progress=False)
print("inode", os.stat(path / "model.safetensors").st_ino, flush=True)
"""


def test_two_processes_training_the_same_model_train_it_once(cache):
    import os
    import subprocess
    import sys

    spec = tiny_spec(steps=20)
    env = {
        **os.environ,
        "EFFDEPTH_CACHE": str(cache),
        "PYTHONPATH": os.pathsep.join([str(Path(zoo.__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    code = _ENSURE_IN_A_PROCESS.format(tests=str(Path(__file__).parent))
    with zoo.cache.model_lock(spec):  # hold the lock so that both processes find the model being trained
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        lines = [p.stdout.readline() for p in procs]  # each one's first line: it waits for the lock
        assert all("is being trained by another process" in ln and "waiting" in ln for ln in lines), lines
        assert not (cache / "zoo" / "tiny").exists()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    inodes = {ln.split()[1] for o in outs for ln in o.splitlines() if ln.startswith("inode")}
    assert len(inodes) == 1  # the second process reused the first one's model instead of training again
    assert zoo.report(spec)["steps"] == 25


# ---------------------------------------------------------------- the stated skill, checked after training


def _rep(one_hop):
    return {"multihop_accuracy": {"1": one_hop, "2": 0.2, "3": 0.2, "4": 0.2, "all": 0.4}}


def test_the_one_hop_skill_rule_on_both_sides(monkeypatch):
    from effdepth.zoo import book as zb

    assert zoo.skill(_rep(0.95))["ok"] and zoo.skill_warning("m", _rep(0.95)) is None
    assert not zoo.skill(_rep(0.94))["ok"]
    line = zoo.skill_warning("llama-8l", _rep(0.6))
    assert line.startswith("WARNING") and "'llama-8l'" in line and "60 %" in line and "95 %" in line
    reps = {"a": _rep(1.0), "b": _rep(0.97)}
    monkeypatch.setattr(zb, "report", lambda n: reps[n])
    ok = zb.skill_notice(["a", "b"])
    assert "Every zoo model has the stated skill" in ok and "a 100 %" in ok and "b 97 %" in ok and "WARNING" not in ok
    reps["b"] = _rep(0.6)
    bad = zb.skill_notice(["a", "b"])
    assert bad.startswith("**WARNING") and "'b'" in bad and "'a'" not in bad and "Every" not in bad


def test_a_model_without_the_skill_is_reported_loudly(cache, capsys, monkeypatch):
    from effdepth.zoo import book as zb

    spec = tiny_spec(steps=10)  # far too short to learn the lookup: the warning must come
    zoo.ensure(spec, progress=False)
    rep = zoo.report(spec)
    assert rep["skill"] == {"one_hop": rep["multihop_accuracy"]["1"], "required": 0.95, "ok": False}
    err = capsys.readouterr().err
    assert "WARNING: zoo model 'tiny'" in err and "stated skill" in err
    monkeypatch.setitem(zoo.MODELS, "tiny", spec)
    assert zb.report_frame(["tiny"]).loc["tiny", "1-hop skill"] == "MISSING"
    assert zb.skill_notice(["tiny"]).startswith("**WARNING: zoo model 'tiny'")


def test_extra_rounds_run_only_while_the_skill_is_missing(cache, monkeypatch, capsys, tmp_path_factory):
    spec = tiny_spec(steps=10, skill_rounds=2, skill_steps=4)
    zoo.ensure(spec, progress=False)
    rep = zoo.report(spec)
    err = capsys.readouterr().err
    assert [x["round"] for x in rep["extra_rounds"]["rounds"]] == [1, 2] and rep["steps"] == 5 + 10 + 2 * 4
    assert [h["step"] for h in rep["history"] if "round" in h] == [5 + 10 + 4, 5 + 10 + 8]
    assert err.count("extra round") == 2 and "WARNING: zoo model 'tiny'" in err  # still missing after both: said loudly
    assert not list((cache / "zoo" / "tiny").glob("round-*"))
    # where the check passes, nothing runs and the weights are those of training without the rounds
    monkeypatch.setattr("effdepth.zoo.train.one_hop_check", lambda model, spec: 1.0)
    monkeypatch.setenv("EFFDEPTH_CACHE", str(tmp_path_factory.mktemp("passes")))
    a = _weights(zoo.ensure(replace(spec, name="passes"), progress=False))
    assert zoo.report(replace(spec, name="passes"))["extra_rounds"] is None
    b = _weights(zoo.ensure(replace(spec, name="plain", skill_rounds=0), progress=False))
    assert all(torch.equal(a[k], b[k]) for k in a) and "extra round" not in capsys.readouterr().err


def test_zoo_check_trains_each_seed_and_thread_count_and_fails_without_the_skill(cache, capsys, monkeypatch):
    from effdepth import cli

    monkeypatch.setitem(zoo.MODELS, "tiny", tiny_spec(steps=10))
    monkeypatch.setattr("os.cpu_count", lambda: 1)  # in this process (a worker pool costs seconds to start)
    assert cli.main(["zoo", "check", "tiny", "--seeds", "0,1", "--threads", "1"]) == 1
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("model=tiny")]
    assert (
        len(rows) == 2
        and "seed=0" in rows[0]
        and "seed=1" in rows[1]
        and all("ok=False" in r and "1-hop=" in r for r in rows)
    )
    assert "0 of 2 variants have the one-hop skill" in out
    assert (cache / "zoo" / "tiny.check-s1-t1" / "report.json").exists()
    monkeypatch.setattr("effdepth.zoo.build.skill", lambda rep: {"ok": True})
    assert cli.main(["zoo", "check", "tiny", "--seeds", "0,1", "--threads", "1"]) == 0  # reused, now passing
