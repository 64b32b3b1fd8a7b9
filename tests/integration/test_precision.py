"""bf16 (issue 27, items 1-2): `check` passes in bf16 for every hand-written family, logits are decoded in
float32, and every measurement of a bf16 model agrees with float32 on the same weights within the bf16
noise floor (the effect of a null intervention: every residual moved by one ulp)."""

import pytest
import torch

from effdepth.access.adapters import IDENTITY_RTOL, UnsupportedArchitecture, confirm, identity_error, identity_rtol
from effdepth.access.model import wrap_module
from effdepth.engine import CPU_LOGITS_BUDGET, clean_run, decode, logits_budget
from effdepth.model_check import check_model
from effdepth.precision import COMPARED, KEYS, compare_dtypes, noise_floor, one_ulp, upcast
from effdepth.testing import char_tokenizer, tiny_model
from tests.conftest import FAMILIES

PROMPTS = [
    "The cat sat on the mat. a b c d e f g h i j k l m n o p q r s t u",
    "Q: 12 + 7 = ? A: 19. The dog ran far away from home.",
]


def _bf16(family):
    tok = char_tokenizer()
    return wrap_module(tiny_model(family, vocab_size=len(tok)).to(torch.bfloat16), tok, spec=f"tiny-bf16:{family}")


def test_identity_tolerance_per_dtype():
    assert identity_rtol(torch.float32) == IDENTITY_RTOL == 1e-5
    assert identity_rtol(torch.bfloat16) == 2.0**-7 and identity_rtol(torch.float16) == 2.0**-10


def test_identity_error_uses_the_blocks_order_of_addition():
    """In bf16, (h + a) + m and h + (a + m) differ by a rounding: the check takes the block's own order,
    so a parallel-residual block (m + a + h) is exact, while a wrong read is still far off."""
    g = torch.Generator().manual_seed(0)
    h, a, m = (torch.randn(64, 64, generator=g).to(torch.bfloat16) * s for s in (8.0, 1.0, 1.0))
    parallel_out = m + a + h  # GPT-NeoX's order
    assert float(((h + a) + m - parallel_out).float().abs().max()) > 0  # the old check's order is off in bf16
    assert identity_error(h, a, m, parallel_out) == 0.0
    assert identity_error(h, a, m, (h + a) + m) == 0.0
    assert identity_error(h, a, torch.zeros_like(m), parallel_out) > identity_rtol(torch.bfloat16)


@pytest.mark.parametrize("family", FAMILIES)
def test_confirm_in_bf16(family):
    got = confirm(*(lambda m: (m.adapter, m.hf))(_bf16(family)), _bf16(family).encode("The cat sat on the mat.")[None])
    assert got["identity"] <= identity_rtol(torch.bfloat16) and got["logits"] <= identity_rtol(torch.bfloat16)


def test_confirm_in_bf16_still_refuses_a_wrong_read():
    from dataclasses import replace

    m = _bf16("llama")
    wrong = replace(m.adapter, mlp="post_attention_layernorm")
    with pytest.raises(UnsupportedArchitecture, match="block 0"):
        confirm(wrong, m.hf, m.encode("The cat sat on the mat.")[None])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_check_passes_in_bf16(family):
    """`effdepth check` in bf16: the identity, logit parity and one prompt through every measurement."""
    rows = check_model(f"tiny-bf16:{family}", model=_bf16(family))
    failed = [r for r in rows if r[1] is False]
    assert not failed, failed
    assert any(what == "identity" and ok for what, ok, _ in rows)
    assert sum(1 for what, ok, _ in rows if what.endswith("[fast]") and ok) >= 8


def test_decode_is_float32_whatever_the_model_dtype():
    """The final norm and unembedding run in float32: a bf16 model decodes a residual exactly as its
    float32 twin (same weights) does, which the model's own bf16 decode does not."""
    m16 = _bf16("gemma2")  # soft-capped logits too
    m32 = upcast(m16)
    run = clean_run(m16, m16.encode(PROMPTS[1]))
    z16, z32 = decode(m16, run.h[-1]), decode(m32, run.h[-1].float())
    assert z16.dtype == torch.float32
    torch.testing.assert_close(z16, z32, rtol=0, atol=1e-5)
    with torch.no_grad():
        own = m16.hf(input_ids=run.ids[None].to(m16.device)).logits[0].float()
    assert float((own - z32).abs().max()) > 1e-3  # bf16 logits are rounded; ours are not
    h = run.h[-1].detach().clone().requires_grad_(True)  # differentiable (integrated gradients)
    decode(m16, h).logsumexp(-1).sum().backward()
    assert h.grad is not None and torch.isfinite(h.grad.float()).all()


def test_decode_follows_a_weight_changed_in_place():
    m = _bf16("llama")
    h = clean_run(m, m.encode("Hi there")).h[-1]
    before = decode(m, h)
    with torch.no_grad():
        m.hf.lm_head.weight.mul_(2)
    torch.testing.assert_close(decode(m, h), 2 * before, rtol=1e-2, atol=1e-2)


def test_one_ulp_moves_every_entry_but_the_front():
    h = torch.randn(1, 5, 8).to(torch.bfloat16)
    moved = one_ulp(h, torch.Generator().manual_seed(0))
    assert torch.equal(moved[..., 0, :], h[..., 0, :])
    assert (moved[..., 1:, :] != h[..., 1:, :]).all()
    step = (moved.float() - h.float()).abs()[..., 1:, :] / h.float().abs()[..., 1:, :].clamp_min(1e-30)
    assert float(step.max()) <= 2.0**-7 + 1e-6  # one unit in the last place of an 8-bit mantissa


def test_noise_floor_is_bf16_sized_in_bf16_and_tiny_in_fp32():
    m16 = _bf16("llama")
    nf16, nf32 = noise_floor(m16, PROMPTS[:1], n_null=1), noise_floor(upcast(m16), PROMPTS[:1], n_null=1)
    assert nf16["dtype"] == "bfloat16" and nf32["dtype"] == "float32"
    for k in ("layer_effect", "output_effect", "relative_contribution", "kl", "probability"):
        assert nf32[k] < 1e-5, (k, nf32)
        assert nf16[k] > 100 * max(nf32[k], 1e-9), (k, nf16, nf32)
    assert 1e-3 < nf16["layer_effect"] < 0.2  # ~1 % of a layer's write: bf16's resolution of the residual


@pytest.mark.parametrize("family", FAMILIES)
def test_every_measurement_in_bf16_agrees_with_fp32_within_the_noise_floor(family):
    """bf16 vs float32 on the same weights: every compared array (`precision.COMPARED`: contributions,
    skip effects current and future, local effects, logit lens, residual erasure, integrated gradients)
    differs by no more than bf16's own noise floor in its unit."""
    rows = compare_dtypes(_bf16(family), PROMPTS, "Q: 12 + 7 = ? A:", " 19")
    assert {(r["measurement"], r["array"]) for r in rows} == {(m, a) for m, a, _ in COMPARED}
    assert all(r["unit"] in KEYS and r["floor"] > 0 for r in rows)
    over = [r for r in rows if r["max_diff"] > r["floor"]]
    assert not over, over


def test_logits_budget_on_cpu_is_the_fixed_budget():
    m = _bf16("llama")
    assert logits_budget(m) == CPU_LOGITS_BUDGET == 1 << 23


def test_logits_budget_on_a_gpu_is_sized_from_its_free_memory(monkeypatch):
    from effdepth import engine

    class FakeModel:
        remote = False
        device = torch.device("cuda", 0)

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (60 * 2**30, 80 * 2**30))
    got = engine.logits_budget(FakeModel())
    assert got == int(60 * 2**30 * engine.GPU_LOGITS_FRACTION // 4)
    assert got // (33 * 128256) > 100  # a 32-layer 128k-vocabulary lens decodes >100 positions per matmul
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 2**20, 80 * 2**30))
    assert engine.logits_budget(FakeModel()) == CPU_LOGITS_BUDGET  # never below the CPU budget
