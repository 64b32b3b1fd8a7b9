"""Bad input gets a clear, actionable error, fast, and loses nothing."""

import pytest

from effdepth import ModelNotAvailable, UnsupportedArchitecture, load_model, running
from effdepth.cli import main
from effdepth.data import DatasetNotAvailable, load_examples
from effdepth.data.real import gsm8k, math_problems, mquake
from effdepth.testing import save_tiny


def test_hub_id_offline_fails_fast_with_guidance(monkeypatch):
    """Fast means: no download is attempted (every config read is local-only), not a wall-clock bound."""
    import transformers

    monkeypatch.setattr("effdepth.access.hub.reachable", lambda timeout=3.0: False)
    calls = []
    real = transformers.AutoConfig.from_pretrained

    def recording(*args, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", recording)
    with pytest.raises(ModelNotAvailable) as err:
        load_model("meta-llama/Llama-3.1-8B")
    assert calls and all(calls)  # tried the local cache only, never the network
    msg = str(err.value)
    assert "locally" in msg and "NDIF" in msg and "--remote" in msg


def test_missing_folder(tmp_path):
    with pytest.raises(ModelNotAvailable, match="No model folder"):
        load_model(str(tmp_path / "nope") + "/")


def test_unknown_zoo_name_lists_the_zoo():
    from effdepth import zoo

    with pytest.raises(ValueError) as err:
        load_model("zoo:does-not-exist")
    assert zoo.DEFAULT in str(err.value)


def test_post_ln_folder_refused_before_weights_load(tmp_path):
    from effdepth.testing import tiny_config

    folder = tmp_path / "bert"
    folder.mkdir()
    tiny_config("bert").save_pretrained(folder)  # a config alone: refusal must not need weights
    with pytest.raises(UnsupportedArchitecture, match="post-LN"):
        load_model(str(folder))


def test_remote_needs_an_api_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(ModelNotAvailable, match="NDIF_API_KEY"):
        load_model("meta-llama/Llama-3.1-70B", remote=True)


def test_bad_dtype(tmp_path):
    save_tiny(tmp_path / "m")
    with pytest.raises(ValueError, match="Unknown dtype"):
        load_model(str(tmp_path / "m"), dtype="float8")


def test_real_datasets_offline_name_their_override(monkeypatch):
    monkeypatch.setattr("effdepth.access.hub.reachable", lambda timeout=3.0: False)
    for var in ("EFFDEPTH_GSM8K", "EFFDEPTH_MATH", "EFFDEPTH_MQUAKE"):
        monkeypatch.delenv(var, raising=False)
    for loader, var in (
        (lambda: gsm8k(5), "EFFDEPTH_GSM8K"),
        (lambda: math_problems(1, 5), "EFFDEPTH_MATH"),
        (lambda: mquake(2, 5), "EFFDEPTH_MQUAKE"),
    ):
        with pytest.raises(DatasetNotAvailable) as err:
            loader()
        assert var in str(err.value) and "path=" in str(err.value)


def test_override_pointing_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFDEPTH_GSM8K", str(tmp_path / "missing.jsonl"))
    with pytest.raises(DatasetNotAvailable, match="no file"):
        gsm8k(3)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_examples("c5", 3)


def test_cli_unknown_model_is_a_message_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr("effdepth.access.hub.reachable", lambda timeout=3.0: False)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--model", "someone/unknown-model"])
    assert "effdepth:" in str(exit_.value) and "NDIF" in str(exit_.value)


def test_cli_book_without_runs(tmp_path, monkeypatch, capsys):

    monkeypatch.setattr(running, "RUNS", tmp_path)
    assert main(["book", "--model", "zoo:nothing-run"]) == 1
    assert "effdepth run --model" in capsys.readouterr().err


def test_measurement_method_choice():
    from types import SimpleNamespace

    from effdepth.access.model import choose_method

    local, remote = SimpleNamespace(remote=False), SimpleNamespace(remote="local")
    assert choose_method(local, "auto") == "fast" and choose_method(remote, "auto") == "trace"
    assert choose_method(local, "trace") == "trace"
    with pytest.raises(ValueError, match="'auto', 'fast' or 'trace', not 'hooks'"):
        choose_method(local, "hooks")
    with pytest.raises(ValueError, match="needs a local model"):
        choose_method(remote, "fast")
