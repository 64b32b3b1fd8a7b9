"""Hostile data files and prompts (issue 11, items 8 and 9): one clear error each, before any work.

Data files: every loader checks its rows against its data set's schema (`effdepth.data.rows`); a bad
file is one `DataError` naming the file, the row and what was expected. Prompts: `Model.encode`
refuses an empty prompt or one past the model's context (`PromptError`, naming the prompt's index),
and every measurement encodes all its prompts before its first forward pass.
"""

import gzip
import json

import pytest

from effdepth import PromptError
from effdepth.access.model import wrap_module
from effdepth.data import DataError, DatasetNotAvailable
from effdepth.data.c4 import c4_texts
from effdepth.data.real import gsm8k, math_problems, mquake
from effdepth.prompts import context_limit
from effdepth.testing import char_tokenizer, tiny_model
from tests.conftest import SHARED_DATA


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _gsm8k_row(i=0, answer=None):
    return {"question": f"What is {i} + 1?", "answer": answer or f"{i} + 1 = {i + 1}\n#### {i + 1}"}


def _math_row(i=0, level=1):
    return {
        "problem": f"Solve x = {i}.",
        "level": f"Level {level}",
        "solution": f"x = {i}",
        "type": "Intermediate Algebra",
    }


def _mquake_row(i=0, hops=2):
    return {"questions": [f"Who is {i}?"], "answer": f"A{i}", "orig": {"triples": [["s", "r", "o"]] * hops}}


# --- data files (item 8) ------------------------------------------------------------------------


def test_a_good_file_loads_with_rows_numbered_as_in_the_file(tmp_path):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(0), "", _gsm8k_row(1), _gsm8k_row(2)])  # a blank line is skipped
    ex = gsm8k(n=None, seed=0, path=f)
    assert sorted(e.meta["index"] for e in ex) == [0, 1, 2]
    assert {e.answer for e in ex} == {f"{i} + 1 = {i + 1}\nThe final answer is {i + 1}" for i in range(3)}
    # the line number of a bad row counts the blank line too (line 5 is the fourth row)
    _jsonl(f, [_gsm8k_row(0), "", _gsm8k_row(1), _gsm8k_row(2), {"question": "q"}])
    with pytest.raises(DataError, match=r"line 5: no field 'answer'"):
        gsm8k(n=None, path=f)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(0), '{"question": "q", "answer": "1 #### 1"', _gsm8k_row(2)])
    with pytest.raises(DataError) as err:
        gsm8k(n=1, path=f)
    assert str(err.value).startswith(f"GSM8K file {f}, line 2: not valid JSON")
    assert "one JSON object per line" in str(err.value)


def test_malformed_json_array_names_file_and_line(tmp_path):
    f = tmp_path / "mquake.json"
    f.write_text('[\n  {"questions": ["q"],\n  "answer": }\n]')
    with pytest.raises(DataError, match=rf"MQuAKE-Remastered file {f}, line 3: not valid JSON"):
        mquake(2, n=1, path=f)


def test_a_directory_instead_of_a_file(tmp_path):
    _jsonl(tmp_path / "test.jsonl", [_gsm8k_row()])
    with pytest.raises(DataError) as err:
        gsm8k(n=1, path=tmp_path)
    assert f"GSM8K file {tmp_path}: is a directory (it holds test.jsonl)" in str(err.value)


def test_a_missing_field_names_the_row_and_the_fields_it_has(tmp_path):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(0), {"question": "q", "solution": "1 #### 1"}])
    with pytest.raises(DataError) as err:
        gsm8k(n=1, path=f)
    msg = str(err.value)
    assert msg.startswith(f"GSM8K file {f}, line 2: no field 'answer'")
    assert msg.endswith("(the worked solution ending in '#### <final answer>'); the row has 'question', 'solution'")


def test_a_field_of_the_wrong_type(tmp_path):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(0), {"question": ["q"], "answer": "1 #### 1"}])
    with pytest.raises(DataError, match=r"line 2: field 'question' is a list, expected the problem, a string"):
        gsm8k(n=1, path=f)


def test_a_row_that_is_not_an_object(tmp_path):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(0), "[1, 2]"])
    with pytest.raises(DataError, match=r"line 2: expected a JSON object with fields 'question', 'answer', got a list"):
        gsm8k(n=1, path=f)


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("It is 2.\nThe answer: 2", r"line 2: field 'answer': the answer has no '#### <final answer>' line"),
        ("#### 1\nthen 2\n#### 2", r"line 2: field 'answer': the answer has 2 '####' markers; expected exactly one"),
        ("It is 2.\n####  ", r"line 2: field 'answer': nothing follows '####'"),
    ],
)
def test_gsm8k_answer_needs_exactly_one_final_answer(tmp_path, answer, expected):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(0), _gsm8k_row(1, answer=answer)])
    with pytest.raises(DataError, match=expected):
        gsm8k(n=1, path=f)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "[]"])
def test_an_empty_file(tmp_path, content):
    f = tmp_path / "test.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=rf"GSM8K file {f}: holds no rows"):
        gsm8k(n=1, path=f)


def test_math_without_level(tmp_path):
    row = _math_row(1)
    del row["level"]
    f = _jsonl(tmp_path / "math.jsonl", [_math_row(0), row])
    with pytest.raises(
        DataError, match=rf"MATH file {f}, line 2: no field 'level' \(the difficulty, a string like 'Level 3'\)"
    ):
        math_problems(1, n=1, path=f)


def test_math_level_absent_lists_the_levels_present(tmp_path):
    f = _jsonl(tmp_path / "math.jsonl", [_math_row(i, level=1 + i % 2) for i in range(6)])
    assert len(math_problems(2, n=3, path=f)) == 3  # the levels that exist load
    with pytest.raises(DataError) as err:
        math_problems(5, n=1, path=f)
    assert (
        str(err.value)
        == f"MATH file {f}: no rows of level 'Level 5' (intermediate_algebra); levels present: Level 1, Level 2."
    )


def test_math_of_another_subject_is_refused_not_mixed_in(tmp_path):
    rows = [dict(_math_row(i), type="Geometry") for i in range(3)]
    f = _jsonl(tmp_path / "math.jsonl", rows)
    with pytest.raises(
        DataError, match=r"no rows of subject 'intermediate_algebra' \(types present: Geometry\); pass subject="
    ):
        math_problems(1, n=1, path=f)
    assert len(math_problems(1, n=3, subject="geometry", path=f)) == 3


def test_mquake_without_orig(tmp_path):
    bad = _mquake_row(1)
    del bad["orig"]
    f = _jsonl(tmp_path / "mquake.jsonl", [_mquake_row(0), bad])
    with pytest.raises(
        DataError,
        match=rf"MQuAKE-Remastered file {f}, line 2: no field 'orig.triples' \(the original fact triples, one per hop\); the row has 'questions', 'answer'$",
    ):
        mquake(2, n=1, path=f)
    bad = dict(_mquake_row(1), orig={"edits": []})
    _jsonl(f, [_mquake_row(0), bad])
    with pytest.raises(
        DataError, match=r"line 2: no field 'orig.triples' .*; 'orig' has no 'triples' \(it has 'edits'\)"
    ):
        mquake(2, n=1, path=f)
    _jsonl(f, [_mquake_row(0), dict(_mquake_row(1), orig=[["s", "r", "o"]])])
    with pytest.raises(DataError, match=r"line 2: no field 'orig.triples' .*; 'orig' is a list, not an object"):
        mquake(2, n=1, path=f)


def test_mquake_json_array_rows_are_items(tmp_path):
    f = tmp_path / "mquake.json"
    f.write_text(json.dumps([_mquake_row(0), _mquake_row(1, hops=3), dict(_mquake_row(2), questions=[])], indent=1))
    with pytest.raises(DataError, match=rf"file {f}, item 3: field 'questions': expected a non-empty list"):
        mquake(2, n=1, path=f)
    f.write_text(json.dumps([_mquake_row(0), _mquake_row(1, hops=3), _mquake_row(2)]))
    assert [e.meta["index"] for e in mquake(2, n=None, path=f)] in ([0, 2], [2, 0])
    with pytest.raises(DataError, match=r"no rows with 4 hops .*hops present: 2, 3"):
        mquake(4, n=1, path=f)


def test_more_rows_than_exist_says_how_many_and_what_to_pass(tmp_path):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(i) for i in range(3)])
    assert len(gsm8k(n=3, path=f)) == 3
    with pytest.raises(DataError) as err:
        gsm8k(n=4, path=f)
    assert (
        str(err.value)
        == f"GSM8K file {f} has 3 rows: asked for n=4, but there are only 3. Pass n=3 or fewer (n=None takes all 3)."
    )
    f = _jsonl(tmp_path / "math.jsonl", [_math_row(i, level=1 + i % 2) for i in range(5)])
    with pytest.raises(
        DataError, match=r"has 2 rows of Level 2 \(intermediate_algebra\): asked for n=3, but there are only 2"
    ):
        math_problems(2, n=3, path=f)


@pytest.mark.parametrize("n", [0, -3, 2.5, "5"])
def test_a_row_count_that_is_not_a_positive_number(tmp_path, n):
    f = _jsonl(tmp_path / "test.jsonl", [_gsm8k_row(i) for i in range(3)])
    with pytest.raises(ValueError, match="n must be a positive whole number of rows, or None"):
        gsm8k(n=n, path=f)


def test_hub_rows_are_checked_by_the_same_schema(monkeypatch):
    import datasets

    class Split:
        def to_list(self):
            return [_gsm8k_row(0), {"question": "q", "answer": "no marker"}]

    monkeypatch.delenv("EFFDEPTH_GSM8K", raising=False)
    monkeypatch.setattr("effdepth.access.hub.reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: Split())
    with pytest.raises(
        DataError, match=r"^GSM8K \(openai/gsm8k main, test\), row 2: field 'answer': the answer has no"
    ):
        gsm8k(n=1)


def test_c4_files(tmp_path):
    f = _jsonl(tmp_path / "c4.jsonl", [{"text": "one"}, {"url": "x"}])
    with pytest.raises(DataError, match=rf"C4 file {f}, line 2: no field 'text' \(the document, a string\)"):
        c4_texts(1, path=f)
    _jsonl(f, [{"text": "one"}, "{text: two}"])
    with pytest.raises(DataError, match=rf"C4 file {f}, line 2: not valid JSON"):
        c4_texts(1, path=f)
    with pytest.raises(DataError, match=r"is a directory \(it holds c4.jsonl\)"):
        c4_texts(1, path=tmp_path)
    (tmp_path / "c4.csv").write_text("text\none\n")
    with pytest.raises(DataError, match=r"not a .jsonl/.json\(.gz\) or .txt file"):
        c4_texts(1, path=tmp_path / "c4.csv")
    (tmp_path / "c4.txt").write_text("\n\n\n")
    with pytest.raises(DataError, match=r"holds no documents"):
        c4_texts(1, path=tmp_path / "c4.txt")
    # C4 is "up to n" documents (windows are what the chapter counts): a short file gives all it has
    _jsonl(f, [{"text": "one"}, {"text": "two"}])
    assert sorted(c4_texts(5, path=f)) == ["one", "two"]
    with pytest.raises(ValueError, match="n must be a positive whole number"):
        c4_texts(-1, path=f)
    with pytest.raises(DatasetNotAvailable, match="no file at"):
        c4_texts(1, path=tmp_path / "absent.jsonl")
    gz = tmp_path / "c4-validation.json.gz"
    gz.write_bytes(gzip.compress(b'{"text": "zipped"}\n'))
    assert c4_texts(1, path=gz) == ["zipped"]
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=rf"C4 file {gz}: cannot be read as UTF-8 text"):
        c4_texts(1, path=gz)
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl: cannot be read as UTF-8 text"):
        c4_texts(1, path=tmp_path / "latin1.jsonl")


def test_the_real_gsm8k_file_still_loads():
    real = SHARED_DATA / "gsm8k" / "test.jsonl"
    if not real.exists():
        pytest.skip("../shared/data/gsm8k absent (a user's clone)")
    assert len(gsm8k(n=None, path=real)) == 1319
    with pytest.raises(DataError, match="has 1319 rows: asked for n=1320"):
        gsm8k(n=1320, path=real)


# --- prompts (item 9) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_models():
    """GPT-2 (n_positions) and Llama (max_position_embeddings) with a 16-position context, and a
    Llama whose tokenizer adds no BOS."""
    tok = char_tokenizer()
    gpt2 = wrap_module(
        tiny_model("gpt2", vocab_size=len(tok), n_layers=2, n_positions=16), char_tokenizer(), spec="tiny:gpt2-16"
    )
    llama = wrap_module(
        tiny_model("llama", vocab_size=len(tok), n_layers=2, max_position_embeddings=16),
        char_tokenizer(),
        spec="tiny:llama-16",
    )
    nobos = wrap_module(
        tiny_model("llama", vocab_size=len(tok), n_layers=2), char_tokenizer(add_bos=False), spec="tiny:llama-nobos"
    )
    return {"gpt2": gpt2, "llama": llama, "nobos": nobos}


def _measurements():
    from effdepth import contributions, depth_score, integrated_gradients, logit_lens, residual_erasure, skip_effects
    from effdepth.data import Example

    return {
        "contributions": lambda m, ps: contributions(m, ps),
        "skip_effects": lambda m, ps: skip_effects(m, ps),
        "logit_lens": lambda m, ps: logit_lens(m, ps),
        "residual_erasure": lambda m, ps: residual_erasure(m, ps[1], " x", reference_prompts=["abc"]),
        "integrated_gradients": lambda m, ps: integrated_gradients(m, ps[1], " x", steps=2),
        "depth_score": lambda m, ps: depth_score(m, {1: [Example(p, " x", 1) for p in ps]}, n_boot=10),
    }


def _forward_count(model):
    """A list that grows on every call of the token embedding (every path of every measurement embeds)."""
    calls = []
    model.adapter.module(model.hf, model.adapter.embed).register_forward_pre_hook(lambda *a: calls.append(1))
    return calls


LONG = "abcdefghijklmnopqrstuvwxyz"  # 27 tokens with BOS: past a 16-position context


@pytest.mark.parametrize("measurement", list(_measurements()))
@pytest.mark.parametrize("family, field", [("gpt2", "n_positions"), ("llama", "max_position_embeddings")])
def test_a_prompt_past_the_context_is_refused_before_any_work(short_models, measurement, family, field):
    model = short_models[family]
    calls = _forward_count(model)
    with pytest.raises(PromptError) as err:
        _measurements()[measurement](model, ["ab", LONG])
    msg = str(err.value)
    who = {
        "residual_erasure": "The prompt",
        "integrated_gradients": "The prompt",
        "depth_score": "Example 1 of level 1",
    }.get(measurement, "prompts[1]")
    assert msg.startswith(
        f"{who} has 27 tokens, more than {model.spec}'s context of 16 positions ({field} in its config)"
    )
    assert "shorter prompts" in msg
    assert not calls  # refused before the first forward pass


@pytest.mark.parametrize("measurement", list(_measurements()))
def test_an_empty_prompt_is_refused_naming_its_index(short_models, measurement):
    model = short_models["nobos"]
    calls = _forward_count(model)
    with pytest.raises(PromptError) as err:
        _measurements()[measurement](model, ["ab", ""])
    who = {
        "residual_erasure": "The prompt",
        "integrated_gradients": "The prompt",
        "depth_score": "Example 1 of level 1",
    }.get(measurement, "prompts[1]")
    assert (
        str(err.value)
        == f"{who} is empty (''): a measurement needs at least one token of text; remove it or give it text."
    )
    assert not calls


def test_a_prompt_at_the_context_runs(short_models):
    from effdepth import logit_lens

    model = short_models["gpt2"]
    calls = _forward_count(model)
    at_limit = LONG[:15]  # BOS + 15 characters = 16 tokens
    assert len(model.encode(at_limit)) == 16
    assert logit_lens(model, [at_limit]).example_kl.shape == (1, model.n_layers + 1)
    assert calls  # the counter the refusal tests rely on does count forward passes
    with pytest.raises(PromptError, match="has 17 tokens"):
        model.encode(LONG[:16])


def test_prompt_plus_answer_past_the_context(short_models):
    from effdepth.measures.residual_erasure import encode_example

    model = short_models["llama"]
    ids, start = encode_example(model, "abcdefgh", " xyz")
    assert (len(ids), start) == (13, 9)
    with pytest.raises(
        PromptError, match=r"^The prompt \(prompt \+ answer\) has 21 tokens, more than tiny:llama-16's context of 16"
    ):
        encode_example(model, "abcdefgh", " the answer!")


def test_a_prompt_that_tokenizes_to_nothing(short_models):
    """A non-empty text a BOS-less tokenizer drops entirely (here: whitespace) is refused too."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "a": 2}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>")
    model = wrap_module(tiny_model("llama", vocab_size=8, n_layers=1), tok, spec="tiny:ws")
    assert len(model.encode("a")) == 1
    with pytest.raises(PromptError, match=r"^prompts\[4\] has no tokens \(this tokenizer adds no BOS\)"):
        model.encode("   ", index=4)


def test_a_prompt_that_is_not_text(short_models):
    with pytest.raises(PromptError, match=r"^prompts\[0\] is NoneType, not a string"):
        short_models["gpt2"].encode(None, index=0)


def test_context_limit_reads_the_config():
    from transformers import Gemma3Config, GPT2Config, LlamaConfig

    assert context_limit(GPT2Config(n_positions=64)) == (64, "n_positions")
    assert context_limit(LlamaConfig(max_position_embeddings=99)) == (99, "max_position_embeddings")
    assert context_limit(Gemma3Config(text_config={"max_position_embeddings": 77}))[0] == 77
    assert context_limit(object()) == (None, None)


def test_maps_window_past_the_gpt2_context(short_models):
    from effdepth import linear_maps

    model = short_models["gpt2"]
    with pytest.raises(ValueError, match=r"window=32 is longer than tiny:gpt2-16's context \(16 positions\)"):
        linear_maps(model, model, ["abc def"], window=32)
