"""Cross-depth rules (effdepth.chapters.comparison) on synthetic results of models of 6 and 12 layers."""

import numpy as np
import pytest

from effdepth.chapters import NOT_PAPER, PAPER, SAME_AS_CONTROL
from effdepth.chapters import comparison as F
from effdepth.verdicts import NOT_TESTABLE
from tests.rules.test_chapter_contributions import fake as fake_contrib
from tests.rules.test_chapter_logit_lens import fake as fake_lens
from tests.rules.test_chapter_logit_lens import flat_then_falling

LAYERS = [6, 12]


def steady_then_drop(L, knee):
    """A contribution curve: layer 0 large, steady until `knee`, low after it."""
    return np.array([4.0] + [0.6 if l < knee else 0.12 for l in range(1, L)])


def lenses(knee_of, seed=0, noise=0.05):
    return [fake_lens(flat_then_falling(L, knee=knee_of(L)), seed=seed + L, noise=noise) for L in LAYERS]


def contribs(knee_of, seed=0):
    return [fake_contrib(steady_then_drop(L, knee_of(L)), seed=seed + L) for L in LAYERS]


def at_half(L):
    return L // 2


def at_layer_one(L):
    return 1


def at_layer_two(L):
    return 2


def controls_of(results_of, n=3):
    """controls[i][s]: model i's control of seed s."""
    per_seed = [results_of(seed=100 + 10 * s) for s in range(n)]
    return [[per_seed[s][i] for s in range(n)] for i in range(len(LAYERS))]


def run(trained_knee, control_knee, names=("a", "b")):
    return F.findings(
        list(names),
        LAYERS,
        contribs(trained_knee),
        controls_of(lambda seed: contribs(control_knee, seed)),
        lenses(trained_knee),
        controls_of(lambda seed: lenses(control_knee, seed)),
    )


def test_stretch_is_plus_one_at_a_fixed_relative_depth_and_minus_one_at_a_fixed_layer():
    assert F.stretch([2, 4], [4, 8]) == pytest.approx(1.0)
    assert F.stretch([2, 2], [4, 8]) == pytest.approx(-1.0)
    assert F.stretch([3, 4], [4, 8]) == pytest.approx(0.0, abs=0.7)  # between the two
    assert np.isnan(F.stretch([2], [4]))


def test_the_papers_stretching_beyond_the_controls_is_the_papers_verdict():
    f = run(at_half, at_layer_one)
    assert f.numbers["kl_stretch"] > 0.9
    assert f.verdicts["kl_stretching"] == PAPER
    assert f.verdicts["contribution_stretching"] == PAPER
    assert "**as in the paper**, the knee moves with the number of layers" in f.text["stretch_text"]


def test_controls_that_stretch_as_much_make_it_not_distinguishable():
    f = run(at_half, at_half)
    assert f.verdicts["kl_stretching"] == SAME_AS_CONTROL
    assert "untrained models of these depths do the same" in f.text["stretch_text"]


def test_knees_at_a_fixed_layer_are_not_the_paper():
    f = run(at_layer_two, at_half)
    assert f.numbers["kl_stretch"] < 0 and f.numbers["contribution_stretch"] < 0
    assert f.verdicts["kl_stretching"] == NOT_PAPER and f.verdicts["contribution_stretching"] == NOT_PAPER


def test_noise_curves_rarely_pass_and_never_systematically():
    rng = np.random.default_rng(0)

    def noise_lenses(seed=0):
        r = np.random.default_rng(seed)
        return [fake_lens(r.uniform(0.5, 6.0, L), seed=seed + L) for L in LAYERS]

    passes = 0
    for _t in range(40):
        base = int(rng.integers(1_000_000))
        trained = noise_lenses(base)
        ctl = controls_of(lambda seed: noise_lenses(base + seed))
        passes += F.stretching("kl", trained, ctl, LAYERS)["verdict"] == PAPER
    assert (
        passes / 40 <= 0.2
    )  # exchangeable with 3 controls: at most 1 in 4 beats them all, and the 2-sd bound is stricter


def test_models_too_shallow_for_a_knee_are_left_out():
    two = [2, 4]
    r = F.stretching(
        "kl",
        [fake_lens(flat_then_falling(2, knee=1)), fake_lens(flat_then_falling(4, knee=2))],
        [[fake_lens(flat_then_falling(2, knee=1))], [fake_lens(flat_then_falling(4, knee=1))]],
        two,
    )
    assert r["verdict"] == NOT_TESTABLE and r["models"] == [4]
    four = [fake_contrib(steady_then_drop(4, 2)), fake_contrib(steady_then_drop(8, 4))]
    r = F.stretching("contribution", four, [[c] for c in four], [4, 8])
    assert r["verdict"] == NOT_TESTABLE and r["models"] == [8]  # 4 layers less layer 0: a forced knee
    row = F.per_model("tiny", 2, None, [], None, [])
    assert row["paper_shape"].startswith(NOT_TESTABLE)


def test_the_per_model_verdicts_are_the_chapters_own():
    from effdepth.chapters import contributions, logit_lens

    f = run(at_half, at_layer_one)
    trained_c, ctl_c = contribs(at_half), controls_of(lambda seed: contribs(at_layer_one, seed))
    row = f.numbers["table"][1]
    assert row["paper_shape"] == contributions.findings(trained_c[1], ctl_c[1]).verdicts["paper_shape"]
    trained_l, ctl_l = lenses(at_half), controls_of(lambda seed: lenses(at_layer_one, seed))
    g = logit_lens.findings(trained_l[1], ctl_l[1], contributions=trained_c[1], contribution_controls=ctl_c[1])
    assert row["settles_late"] == g.verdicts["settles_late"] and row["knees_agree"] == g.verdicts["knees_agree"]
    assert len(F.table(f)) == 2


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="one entry per model"):
        F.findings(["a"], LAYERS, [], [], [], [])
    with pytest.raises(ValueError, match="at least one random-init control"):
        F.findings(["a", "b"], LAYERS, contribs(at_half), [[], []], lenses(at_half), [[], []])


def _glued_and_cited(out):
    import json
    import re

    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    glued = {
        o["metadata"]["scrapbook"]["name"]: "".join(next(iter(o["data"].values())))
        for o in outputs
        if "scrapbook" in o.get("metadata", {})
    }
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    cited = set(re.findall(r"\{glue:(?:md|text)\}[` ]([A-Za-z0-9_]+)", md))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return nb, outputs, glued, cited, code


@pytest.mark.slow
def test_notebook_compares_tiny_models_with_their_controls(tmp_path):
    from effdepth import running
    from effdepth.testing import save_tiny

    a = save_tiny(tmp_path / "a", "llama", n_layers=4)
    b = save_tiny(tmp_path / "b", "llama", n_layers=6, seed=1)
    out = running.execute(
        running.NOTEBOOKS / "comparison.md",
        tmp_path / "comparison.ipynb",
        {"model": str(a), "models": [str(a), str(b)], "n_examples": 3, "n_controls": 2},
    )
    nb, outputs, glued, cited, code = _glued_and_cited(out)
    assert cited and cited <= set(glued)  # every sentence the page cites was glued
    assert sum(any(k.endswith("image/png") for k in o.get("data", {})) for o in outputs) >= 2
    assert "random-init control seeds per model" in glued["cmp_run_text"]
    assert "untrained controls" in glued["cmp_stretch_text"]
    # no verdict logic in the notebook: tests/test_notebook_lint.py checks every notebook's code cells


def test_figure_labels_name_each_model_with_its_depth():
    from types import SimpleNamespace

    models = [SimpleNamespace(spec="zoo:shallow", n_layers=4), SimpleNamespace(spec="/home/me/deep", n_layers=8)]
    assert F.labels(models) == {
        "zoo:shallow": "zoo:shallow (4 layers)",
        "/home/me/deep": "deep (local folder) (8 layers)",
    }  # a folder by its name
    assert F.made_by(models) == "zoo:shallow (4 layers), deep (local folder) (8 layers)"
    assert F.spec_list(models) == "zoo:shallow, /home/me/deep"
