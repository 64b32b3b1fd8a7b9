"""Real-data loaders against the real GSM8K file (../shared/data), and the offline mix."""

import json

import pytest

from effdepth.data import is_offline_model, load_examples, load_prompts
from effdepth.data.real import final_answer, gsm8k
from tests.conftest import SHARED_DATA

GSM8K = SHARED_DATA / "gsm8k" / "test.jsonl"
needs_gsm8k = pytest.mark.skipif(not GSM8K.exists(), reason="../shared/data/gsm8k absent (a user's clone)")


@needs_gsm8k
def test_gsm8k_prompt_format_and_seeded_sample(monkeypatch):
    monkeypatch.setenv("EFFDEPTH_GSM8K", str(GSM8K))
    rows = [json.loads(l) for l in GSM8K.read_text().splitlines()]
    ex = gsm8k(n=5, seed=3)
    assert len(ex) == 5 and len({e.meta["index"] for e in ex}) == 5
    assert [e.meta["index"] for e in ex] == [e.meta["index"] for e in gsm8k(n=5, seed=3)]
    assert [e.meta["index"] for e in ex] != [e.meta["index"] for e in gsm8k(n=5, seed=4)]
    assert [e.meta["index"] for e in ex] != list(range(5))  # random, not the first N
    for e in ex:
        row = rows[e.meta["index"]]
        solution, final = row["answer"].split("####")
        assert e.prompt.startswith(
            "Given the following problem, reason and give a final answer to the problem.\nProblem: "
        )
        assert row["question"] in e.prompt
        assert e.prompt.endswith("where [answer] is the response to the problem.\n\n")
        assert e.answer == solution.strip() + "\nThe final answer is " + final.strip()
        assert "####" not in e.text
        assert final_answer(e.text) == final.strip()


@needs_gsm8k
def test_gsm8k_through_path_argument():
    assert gsm8k(n=2, seed=0, path=GSM8K)[0].meta["dataset"] == "gsm8k"


def test_offline_model_detection(tmp_path):
    from effdepth.testing import save_tiny

    assert is_offline_model("zoo:anything")
    assert not is_offline_model("Qwen/Qwen2.5-1.5B")
    assert is_offline_model(str(save_tiny(tmp_path / "m")))


def test_zoo_mix_is_seeded_and_labelled():
    a = load_examples("auto", 8, seed=1, model_spec="zoo:x")
    assert [e.text for e in a] == load_prompts("zoo", 8, seed=1)
    assert a != load_examples("zoo", 8, seed=2)
    assert all(e.level is not None and e.answer.strip() for e in a)
