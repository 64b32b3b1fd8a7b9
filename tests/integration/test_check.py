"""`effdepth check --model X` really checks: the identity on a prompt, every measurement on one prompt,
the offline data sets; a wrong adapter fails it with a non-zero exit."""

import json

import pytest

from effdepth.cli import main
from effdepth.testing import save_tiny

_NORM_AS_MLP = dict(
    family="custom",
    model_types=("custom",),
    layers="model.layers",
    attn="self_attn",
    mlp="post_attention_layernorm",
    final_norm="model.norm",
    unembed="lm_head",
    embed="model.embed_tokens",
    attn_is_tuple=True,
)


def _with_adapter(folder, adapter):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["effdepth_adapter"] = adapter
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.slow
def test_check_passes_a_good_model(tmp_path, capsys):
    folder = save_tiny(tmp_path / "m", "llama", n_layers=2)
    assert main(["check", "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    for name in (
        "identity",
        "contributions [fast]",
        "skip_effects [fast]",
        "local_effects [fast]",
        "logit_lens [fast]",
        "residual_erasure [fast]",
        "integrated_gradients [fast]",
        "depth_score [fast]",
        "linear_maps [fast]",
        "data zoo",
    ):
        assert any(line.startswith("ok") and name in line for line in out.splitlines()), (name, out)
    assert "FAIL" not in out


def test_check_fails_an_adapter_that_reads_a_norm_as_the_mlp(tmp_path, capsys):
    """The issue's case: phi3 (a family with no hand-written entry) with a config-level adapter whose MLP
    read is the pre-MLP norm. The identity fails, so check exits 1 and no measurement is reported as ok."""
    folder = _with_adapter(save_tiny(tmp_path / "m", "phi3", n_layers=2), {**_NORM_AS_MLP, "model_types": ("phi3",)})
    assert main(["check", "--model", str(folder)]) == 1
    out = capsys.readouterr().out
    identity = next(line for line in out.splitlines() if "identity" in line)
    assert identity.startswith("FAIL") and "block 0" in identity
    assert not any(line.startswith("ok") and "[fast]" in line for line in out.splitlines())


def test_check_fails_an_unloadable_model(tmp_path, capsys):
    assert main(["check", "--model", str(tmp_path / "nowhere")]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "edit",
    [
        {"num_hidden_layers": 0},
        {"num_attention_heads": 0},
        {"hidden_size": None},
        {"vocab_size": 0},
        {"model_type": None},
        {"effdepth_adapter": {"family": "x"}},
    ],
    ids=["no-layers", "no-heads", "no-width", "no-vocab", "no-type", "half-adapter"],
)
def test_check_on_a_degenerate_config_reports_a_failure_not_a_traceback(tmp_path, capsys, edit):
    """issue 25 (partial): degenerate configs raised raw KeyError / IndexError out of `effdepth check`."""
    folder = save_tiny(tmp_path / "m", "llama", n_layers=2)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update({k: v for k, v in edit.items() if v is not None})
    for k in [k for k, v in edit.items() if v is None]:
        cfg.pop(k, None)
    (folder / "config.json").write_text(json.dumps(cfg))
    code = main(["check", "--model", str(folder)])  # must not raise
    out = capsys.readouterr().out
    assert code in (0, 1) and "Traceback" not in out
    if code == 1:
        fail = next(line for line in out.splitlines() if line.startswith("FAIL"))
        assert len(fail) > 10, out
