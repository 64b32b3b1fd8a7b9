"""§3.2 rules on synthetic lens results (paper pattern, random-init-like, noise, disagreeing knees),
and the chapter's notebook executing on a tiny model with its controls."""

import nbformat
import numpy as np
import pytest

from effdepth.chapters import NOT_PAPER, NOT_TESTABLE, PAPER, SAME_AS_CONTROL
from effdepth.chapters import logit_lens as ch
from effdepth.measures.logit_lens import LogitLens
from tests.rules.test_chapter_contributions import CONTROLS as CONTRIB_CONTROLS
from tests.rules.test_chapter_contributions import fake as fake_contrib


def fake(mean_curve, n_prompts=20, noise=0.05, seed=0):
    """A lens result whose per-prompt KL rows are `mean_curve` (residuals 0 … L-1, then 0 for h_L) plus noise."""
    rng = np.random.default_rng(seed)
    m = np.append(np.asarray(mean_curve, float), 0.0)
    rows = np.clip(m * (1 + noise * rng.standard_normal((n_prompts, m.size))), 0, None)
    rows[:, -1] = 0.0
    ov = np.clip(1 - rows / (rows.max() + 1e-9), 0, 1)
    ov[:, -1] = 1.0
    arrays = dict(
        kl=rows[:, :-1].mean(0),
        topk_overlap=ov[:, :-1].mean(0),
        final_kl=np.array(0.0),
        final_topk_overlap=np.array(1.0),
        example_kl=rows,
        example_topk_overlap=ov,
        k=np.array(5),
    )
    return LogitLens(arrays=arrays, meta={"model": {"model": "synthetic"}})


def flat_then_falling(L=8, knee=4, high=6.0):
    b = np.arange(L, dtype=float)
    return np.where(b < knee, high, high * (L - b) / (L - knee))


def early_decay(L=8, seed=0):
    """An untrained model's lens: KL falls from the start (the residual is mostly the embedding)."""
    return 3.0 * np.exp(-np.arange(L) / (1.5 + 0.05 * seed))


CONTROLS = [fake(early_decay(seed=s), seed=10 + s) for s in range(3)]
PAPER_CONTRIB = fake_contrib([4.0, 0.6, 0.6, 0.6, 0.12, 0.12, 0.12, 0.15])  # knee at mid-depth


def test_paper_pattern_gives_the_paper_verdicts():
    f = ch.findings(
        fake(flat_then_falling()), CONTROLS, contributions=PAPER_CONTRIB, contribution_controls=CONTRIB_CONTROLS
    )
    assert f.verdicts["settles_late"] == PAPER and f.verdicts["knees_agree"] == PAPER
    assert f.numbers["settles_late_lo"] > ch.SETTLES.threshold
    assert abs(f.numbers["kl_knee_depth"] - 0.5) <= 0.125 and f.numbers["knee_gap"] <= 0.125
    assert "As in the paper" in f.text["agree_text"] and f.numbers["contribution_knee_drawn"] == 4


def test_the_untrained_lens_that_decodes_its_own_output_is_not_compared():
    """A random-init model's lens reads its own near-uniform output: KL ≈ 0 at every depth. The verdict
    then rests on the threshold, and says why."""
    flat_controls = [fake(np.full(8, 1e-4), seed=40 + s) for s in range(2)]
    f = ch.findings(fake(flat_then_falling()), flat_controls)
    assert f.verdicts["settles_late"] == PAPER and "cannot fail" in f.text["settle_text"]
    assert ch.findings(fake(early_decay()), flat_controls).verdicts["settles_late"] == NOT_PAPER


def test_a_measured_30_layer_lens_settles_late():
    """SmolLM2-135M's measured KL curve (below) stays near 7 nats to mid-depth and falls after."""
    assert ch.late_settling(fake(SMOLLM2_KL, noise=0.0)).mean() > ch.SETTLES.threshold


def test_random_init_like_result_gets_no_paper_verdict():
    f = ch.findings(
        fake(early_decay(seed=7), seed=3), CONTROLS, contributions=fake_contrib(1 / np.sqrt(np.arange(8) + 1.0))
    )
    assert PAPER not in f.verdicts.values()


def test_same_as_control_when_the_control_settles_late_too():
    late_controls = [fake(flat_then_falling(high=6.0 + 0.1 * s), seed=20 + s) for s in range(3)]
    f = ch.findings(
        fake(flat_then_falling()), late_controls, contributions=PAPER_CONTRIB, contribution_controls=CONTRIB_CONTROLS
    )
    assert f.verdicts["settles_late"] == SAME_AS_CONTROL
    assert f.verdicts["knees_agree"].startswith(NOT_TESTABLE)  # no learned settling for a knee to mark


def test_noise_never_gives_the_paper_verdict():
    rng = np.random.default_rng(0)
    for i in range(30):
        flat_noise = fake(np.full(8, 2.0), noise=0.6, seed=i)  # prompts' curves independent noise, no common shape
        assert ch.findings(flat_noise, CONTROLS).verdicts["settles_late"] != PAPER
        curve = fake(rng.uniform(0.5, 3.0, 8), noise=0.5, seed=i)  # an arbitrary curve and noisy contributions
        contrib = fake_contrib(np.full(8, 0.5), noise=0.6, seed=i)
        f = ch.findings(curve, CONTROLS, contributions=contrib, contribution_controls=CONTRIB_CONTROLS)
        assert f.verdicts["knees_agree"] != PAPER


def test_knees_far_apart_do_not_agree():
    late_lens = fake(flat_then_falling(knee=6))  # settles late, but from 3/4 of the depth
    f = ch.findings(late_lens, CONTROLS, contributions=PAPER_CONTRIB, contribution_controls=CONTRIB_CONTROLS)
    assert f.verdicts["settles_late"] == PAPER
    assert f.verdicts["knees_agree"] == NOT_PAPER and "apart" in f.text["agree_text"]


def test_knees_are_not_testable_without_a_contribution_drop():
    """SmolLM2-135M's case: no steady-then-drop contribution curve, so its knee marks nothing."""
    flat_contrib = fake_contrib([4.0, 0.6, 0.6, 0.6, 0.58, 0.57, 0.56, 0.56])
    f = ch.findings(
        fake(flat_then_falling()), CONTROLS, contributions=flat_contrib, contribution_controls=CONTRIB_CONTROLS
    )
    assert f.verdicts["knees_agree"].startswith(NOT_TESTABLE) and np.isnan(f.numbers["contribution_knee_drawn"])


def test_knee_of_a_30_layer_lens_is_at_two_thirds_with_a_dominant_embedding():
    curve = flat_then_falling(L=30, knee=20, high=5.0)
    curve[0] = 60.0  # the embedding decodes far from everything
    k = ch.kl_knee(fake(curve, noise=0.02))
    assert k["excluded_first"] and abs(k["x"] - 2 / 3) <= 0.05


def test_findings_need_a_control():
    with pytest.raises(ValueError, match="control"):
        ch.findings(fake(flat_then_falling()), [])


@pytest.mark.slow
def test_notebook_runs_with_controls_and_glues_its_findings(tmp_path):
    from effdepth import running
    from effdepth.testing import save_tiny

    model = save_tiny(tmp_path / "tiny-llama", "llama", n_layers=4)
    out = running.execute(
        running.NOTEBOOKS / "logit_lens.md",
        tmp_path / "runs" / "logit_lens.ipynb",
        {"model": str(model), "n_examples": 3, "n_controls": 2},
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    glued = {o["metadata"]["scrapbook"]["name"] for o in outputs if "scrapbook" in o.get("metadata", {})}
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    cited = set(__import__("re").findall(r"\{glue:(?:md|text)\}`([A-Za-z0-9_]+)", md))
    assert cited and cited <= glued  # every sentence the page cites was glued
    assert sum(any(k.endswith("image/png") for k in o.get("data", {})) for o in outputs) >= 2
    # no sentence built in the notebook: tests/test_notebook_lint.py checks every notebook's code cells


# KL(p_b ‖ p_final), b = 0 … 29, of SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised) on 10 GSM8K prompts
SMOLLM2_KL = [
    12.06,
    9.23,
    7.15,
    7.08,
    7.23,
    7.36,
    7.39,
    7.46,
    7.15,
    7.08,
    7.24,
    7.13,
    6.95,
    6.84,
    6.81,
    6.5,
    6.25,
    6.26,
    6.17,
    5.66,
    5.1,
    4.59,
    4.36,
    3.82,
    3.1,
    2.55,
    2.21,
    1.95,
    1.65,
    1.41,
]


def test_knee_of_a_measured_30_layer_lens_is_at_two_thirds_not_at_1():
    lens = fake(SMOLLM2_KL, noise=0.0)
    k = ch.kl_knee(lens)
    assert abs(k["x"] - 2 / 3) <= 0.07, k
    kl = np.asarray(SMOLLM2_KL)
    old = int(np.argmax([kl[:j].mean() - kl[j:].mean() for j in range(1, 30)])) + 1  # the previous rule
    assert old == 1


def test_mid_share_of_the_measured_30_layer_lens_ignores_the_bare_embedding():
    """SmolLM2's KL is 12 at the embedding, 9 at residual 1 and ≈ 7 from 2 to 18: the first half has
    hardly moved the prediction (share 0.70), which a share against residual 0 called settled (0.54 here,
    0.49 measured)."""
    lens = fake(SMOLLM2_KL, noise=0.0)
    share = float(np.nanmean(ch.mid_shares(lens)))
    assert 0.65 < share < 0.75, share
    kl = np.asarray(SMOLLM2_KL)
    assert kl[15] / kl[:16].max() < share - 0.1  # the old reference (residuals 0 … L/2)
    assert float(np.nanmean(ch.late_fall_shares(lens))) > 0.25
