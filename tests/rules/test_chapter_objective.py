"""§3.5 verdict rules (effdepth.chapters.objective) on synthetic grids: every rule on both sides."""

import numpy as np
import pandas as pd
import pytest

from effdepth.chapters import PAPER, SAME_AS_CONTROL
from effdepth.chapters import objective as F

HEADLINE = "mul_div_multiple_longer"
BASE = {"interpolate": {"all": 0.02}, "extrapolate": {"all": 0.02, HEADLINE: 0.0}, "answer": "1"}
N_PROBLEMS = {"all": 300, HEADLINE: 50}


def acc_frame(cell, seeds):
    """cell(arch, objective, seed, split) -> accuracy, the same for every module."""
    rows = []
    for a in ("transformer", "moeut"):
        for o in ("all", "answer"):
            for s in seeds:
                for split in ("interpolate", "extrapolate"):
                    for m in ("all", HEADLINE) if split == "extrapolate" else ("all",):
                        rows.append(
                            {
                                "arch": a,
                                "objective": o,
                                "seed": s,
                                "split": split,
                                "module": m,
                                "accuracy": cell(a, o, s, split),
                            }
                        )
    return pd.DataFrame(rows)


def paper_acc(a, o, s, split):
    """The paper's §3.5 pattern: answer-only loss helps, MoEUT more (36 → 63 % vs 41 → 48 %)."""
    return {
        ("moeut", "all"): 0.36,
        ("moeut", "answer"): 0.63,
        ("transformer", "all"): 0.41,
        ("transformer", "answer"): 0.48,
    }[(a, o)] + 0.01 * s


def use_frame(value, seeds):
    rows = [
        {"arch": a, "objective": o, "seed": s, **{c: value(a, o, s) for c in F.DEPTH_MEASURES}}
        for a in ("transformer", "moeut")
        for o in ("all", "answer")
        for s in seeds
    ]
    return pd.DataFrame(rows)


def control_frame(value, seeds):
    return pd.DataFrame(
        [
            {"arch": a, "seed": s, **{c: value(a, s) for c in F.DEPTH_MEASURES}}
            for a in ("transformer", "moeut")
            for s in seeds
        ]
    )


def paper_use(a, o, s):
    return 0.3 + 0.2 * (o == "answer") + 0.2 * (a == "moeut") + 0.01 * s


def verdicts(f, prefix):
    return [r["verdict"] for r in f.numbers["statements"] if r["statement"].startswith(prefix)]


SEEDS6 = range(6)


SEEDS10 = range(10)


def test_the_papers_pattern_over_ten_seeds_is_the_papers_verdict():
    f = F.findings(
        acc_frame(paper_acc, SEEDS10),
        BASE,
        N_PROBLEMS,
        use_frame(paper_use, SEEDS10),
        control_frame(lambda a, s: 0.4, SEEDS10),
        modules=("all", HEADLINE),
    )
    assert set(verdicts(f, "answer-only > all-token")) == {PAPER}
    assert verdicts(f, "the answer-only gain is larger for MoEUT") == [PAPER]
    assert set(verdicts(f, "answer-only loss uses more depth")) == {PAPER}
    assert set(verdicts(f, "MoEUT uses more depth")) == {PAPER}
    assert f.verdicts["any_paper"] == PAPER and f.verdicts["learned"] == "yes"
    assert "p = 0.001" in f.text["accuracy_text"]  # 10 of 10 seeds: 1/1024, passes Holm over every statement


def test_six_agreeing_seeds_do_not_survive_holms_correction():
    """6 of 6 seeds is p = 1/64 per statement; over 13 statements Holm's first step needs p ≤ 0.05/13."""
    f = F.findings(
        acc_frame(paper_acc, SEEDS6),
        BASE,
        N_PROBLEMS,
        use_frame(paper_use, SEEDS6),
        control_frame(lambda a, s: 0.4, SEEDS6),
        modules=("all", HEADLINE),
    )
    assert {r["verdict"] for r in f.numbers["statements"]} == {F.CHANCE}
    assert f.verdicts["any_paper"].startswith("inconclusive at n = 6") and "n = 9" in f.verdicts["any_paper"]


def test_any_of_seventeen_under_noise_is_rarely_the_paper():
    """Pure noise over 17 statements and 5 seeds: 'yes if any one holds' without correction said yes
    about 22 % of the time; with Holm it stays within 5 %."""
    from effdepth import calibration

    rates = calibration.rates(
        "objective.depth_use", calibration.Sizes(n=10, seeds=10, n_control=10, layers=4), reps=100
    )
    assert rates["noise"] <= 0.05 and rates["control spread"] <= 0.05
    assert rates["paper, half size"] > 0.5  # and the paper's pattern, with enough seeds, is found


def test_three_of_three_seeds_is_not_distinguishable_from_chance():
    seeds = range(3)
    f = F.findings(
        acc_frame(paper_acc, seeds),
        BASE,
        N_PROBLEMS,
        use_frame(paper_use, seeds),
        control_frame(lambda a, s: 0.4, seeds),
    )
    assert {r["verdict"] for r in f.numbers["statements"]} == {F.CHANCE}
    assert all(r["p"] == pytest.approx(1 / 8) for r in f.numbers["statements"])
    assert f.verdicts["any_paper"].startswith("inconclusive at n = 3")
    assert "fewer than 5 seeds" in f.text["summary_text"] and "0.125" in f.text["summary_text"]


def test_models_at_guessing_level_cannot_show_the_accuracy_direction():
    # every seed has answer-only ahead, but no model beats the most frequent answer (control-like)
    at_guess = lambda a, o, s, split: 0.02 + 0.03 * (o == "answer")
    base = {"interpolate": {"all": 0.05}, "extrapolate": {"all": 0.05, HEADLINE: 0.05}, "answer": "1"}
    f = F.accuracy_findings(acc_frame(at_guess, SEEDS6), base, N_PROBLEMS, ("all", HEADLINE))
    assert {r["verdict"] for r in f.numbers["accuracy_statements"][:4]} == {SAME_AS_CONTROL}
    assert f.verdicts["learned"] == "no" and "not far above that baseline" in f.text["accuracy_text"]


def test_untrained_models_scoring_as_well_block_the_accuracy_verdict():
    control = acc_frame(lambda a, o, s, split: 0.7, SEEDS6).drop(columns="objective").drop_duplicates()
    f = F.accuracy_findings(acc_frame(paper_acc, SEEDS6), BASE, N_PROBLEMS, ("all",), control)
    assert {r["verdict"] for r in f.numbers["accuracy_statements"][:2]} == {SAME_AS_CONTROL}


def test_differences_within_one_problem_are_ties():
    tiny = lambda a, o, s, split: 0.5 + 0.5 / 300 * (o == "answer")
    f = F.accuracy_findings(acc_frame(tiny, SEEDS6), BASE, N_PROBLEMS, ("all",))
    s = f.numbers["accuracy_statements"][0]
    assert s["n"] == 0 and s["verdict"] == F.CHANCE


def test_a_reversed_direction_is_opposite_never_the_paper():
    reversed_use = lambda a, o, s: 0.5 - 0.2 * (o == "answer") - 0.1 * (a == "moeut")
    f = F.depth_findings(use_frame(reversed_use, SEEDS6), control_frame(lambda a, s: 0.4, SEEDS6))
    assert {r["verdict"] for r in f.numbers["depth_statements"]} == {F.OPPOSITE}


def test_an_architecture_gap_the_untrained_models_already_have_is_not_the_paper():
    ctrl = control_frame(lambda a, s: 0.3 + 0.25 * (a == "moeut") + 0.01 * s, SEEDS6)  # untrained MoEUT already deeper
    f = F.depth_findings(use_frame(paper_use, SEEDS6), ctrl)
    arch = [r for r in f.numbers["depth_statements"] if r["statement"].startswith("MoEUT")]
    assert {r["verdict"] for r in arch} == {SAME_AS_CONTROL}
    # the objective statements have a zero control difference by construction and still pass
    assert {r["verdict"] for r in f.numbers["depth_statements"] if r["statement"].startswith("answer-only")} == {PAPER}
    assert "untrained (random init)" in f.text["depth_text"]


def test_without_a_measured_control_the_architecture_statement_cannot_pass():
    f = F.depth_findings(use_frame(paper_use, SEEDS6), None)
    assert {r["verdict"] for r in f.numbers["depth_statements"] if r["statement"].startswith("MoEUT")} == {
        SAME_AS_CONTROL
    }


def test_noise_is_not_the_paper_beyond_the_tests_level():
    passes = total = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        noise_acc = lambda a, o, s, split: float(rng.uniform(0.3, 0.7))
        noise_use = lambda a, o, s: float(rng.uniform(0.2, 0.8))
        f = F.findings(
            acc_frame(noise_acc, SEEDS6),
            BASE,
            N_PROBLEMS,
            use_frame(noise_use, SEEDS6),
            control_frame(lambda a, s: float(rng.uniform(0.2, 0.8)), SEEDS6),
        )
        passes += sum(r["verdict"] == PAPER for r in f.numbers["statements"])
        total += len(f.numbers["statements"])
    # each statement passes noise with probability ≤ 1/64 (6 of 6 seeds); a systematic bias would show
    assert passes / total < 0.05


def test_noise_over_many_grids_passes_at_most_at_the_test_level():
    rng = np.random.default_rng(0)
    passes = sum(F.statement("x", rng.normal(size=6))["verdict"] == PAPER for _ in range(500))
    assert passes / 500 <= 0.03  # one-sided sign test: P(6 of 6) = 1/64


def test_fine_tuning_needs_more_than_seed_to_seed_variation():
    pre, ft, scratch = np.zeros((4, 4)), np.full((4, 4), 0.05), np.full((4, 4), 0.5)
    E = {
        "pre-trained on multi-hop only": pre,
        "fine-tuned, all-token loss": ft,
        "from scratch, all-token loss": scratch,
        "untrained (random init)": np.full((4, 4), 0.4),
    }
    verdict = lambda E, *a: F.finetune_findings(E, *a).numbers["finetune_statements"][0]["verdict"]
    assert verdict(E, {"all": 0.1}) == PAPER
    assert verdict(E, {"all": 0.6}) == F.SEED_NOISE
    assert verdict(E, {}) == F.SEED_NOISE  # one seed: no reference
    E["fine-tuned, all-token loss"] = np.full((4, 4), 0.45)
    assert verdict(E, {"all": 0.1}) == F.OPPOSITE


def test_fine_tuning_that_changed_nothing_or_an_untrained_pretraining_is_not_the_paper():
    E = {
        "pre-trained on multi-hop only": np.zeros((4, 4)),
        "fine-tuned, all-token loss": np.full((4, 4), 0.05),
        "from scratch, all-token loss": np.full((4, 4), 0.5),
        "untrained (random init)": np.full((4, 4), 0.4),
    }
    f = F.finetune_findings(E, {"all": 0.1}, {"all": False})
    assert (
        f.numbers["finetune_statements"][0]["verdict"] == SAME_AS_CONTROL
        and "did not raise the accuracy" in f.text["finetune_text"]
    )
    E["untrained (random init)"] = np.full((4, 4), 0.02)  # the "pre-trained" model is as good as untrained
    f = F.finetune_findings(E, {"all": 0.1})
    assert f.numbers["finetune_statements"][0]["verdict"] == SAME_AS_CONTROL and "untrained" in f.text["finetune_text"]


def test_table_has_one_row_per_statement():
    f = F.findings(
        acc_frame(paper_acc, SEEDS10),
        BASE,
        N_PROBLEMS,
        use_frame(paper_use, SEEDS10),
        control_frame(lambda a, s: 0.4, SEEDS10),
    )
    t = F.table(f)
    assert len(t) == f.numbers["n_statements"] == len(f.numbers["statements"])
    assert set(t["these runs"]) == {PAPER}


def test_a_grid_at_the_majority_baseline_is_not_testable():
    """Every model at the most-frequent-answer baseline: the grid did not learn, so its depth use says
    nothing, whatever the signs say."""
    at_guess = lambda a, o, s, split: 0.02
    f = F.findings(
        acc_frame(at_guess, SEEDS10),
        BASE,
        N_PROBLEMS,
        use_frame(paper_use, SEEDS10),
        control_frame(lambda a, s: 0.4, SEEDS10),
    )
    assert f.verdicts["learned"] == "no"
    assert f.verdicts["any_paper"].startswith("not testable here") and "did not learn" in f.verdicts["any_paper"]


# --- the chapter's setup (effdepth.chapters.objective): both sides of each decision the notebook used to make


def _report(acc):
    return {"accuracy": {"interpolate": {"all": acc}}}


def test_fine_tuning_learned_only_what_raised_accuracy_by_more_than_one_problem():
    pre = _report(0.10)
    reports = {
        "fine-tuned, all-token loss": _report(0.30),
        "fine-tuned, answer-only loss": _report(0.10 + 1 / 20),
    }  # one problem of 20: a tie
    assert F.learned(reports, pre, n_interpolate=20) == {"all": True, "answer": False}
    reports = {"fine-tuned, all-token loss": _report(0.05), "fine-tuned, answer-only loss": _report(0.10 + 2 / 20)}
    assert F.learned(reports, pre, n_interpolate=20) == {"all": False, "answer": True}
    assert F.learned({k: _report(0.5) for k in reports}, _report(0.1), n_interpolate=0) == {
        "all": False,
        "answer": False,
    }  # no problems: the margin is the whole scale


def test_training_device_steps_and_the_fine_tuning_switch():
    assert F.train_device("cuda", remote=True) == "cpu" and F.train_device("cuda", remote=False) == "cuda"
    assert F.grid_spec("tiny", 1, "small").steps != 7 and F.grid_spec("tiny", 1, "small", steps=7).steps == 7
    assert F.finetune_seed(True, 3) == 3 and F.finetune_seed(False, 3) is None
    assert F.finetune_runs(None, False, 0, "cpu", False, 1) is None  # switched off: nothing trained


def test_without_fine_tuning_the_page_says_why_and_shows_no_tables():
    study = F.finetune_study(None, grid=None, sets={}, seeds=[0], seed=0, n_examples=2, n_layers=4, device="cpu")
    assert study is None
    assert F.finetune_figure(study, "the grid") == (None, None, F.FINETUNE_OFF)
    assert F.finetune_tables(study, grid=None) == [] and F.finetune_of(study) is None


def test_a_studys_findings_are_handed_on():
    from types import SimpleNamespace

    study = SimpleNamespace(findings="F", seed=0, prompts=["a"], future={})
    assert F.finetune_of(study) == "F"


def test_labels_and_titles():
    from types import SimpleNamespace

    assert F.made_by("default", [0, 1, 2]) == "the §3.5 grid (preset default, 3 seeds)"
    assert F.accuracy_title([0, 1]) == "Exact match of the grid's models (2 seeds each; bars: mean, whiskers: min–max)"
    assert F.loss_title([4, 5]) == "Training loss per step, seed 4"
    assert F.depth_use_title([0]) == "Depth use of the grid's models (1 seeds; grey: untrained)"
    assert (
        F.headline_title("arithmetic__mul_div_multiple") == "The paper's headline module, arithmetic__mul_div_multiple"
    )
    assert F.erasure_panels({"MoEUT, answer-only loss": "r"}, {"MoEUT, answer-only loss": 0.456}, 2) == {
        "MoEUT, answer-only loss (seed 2)\nerasure depth 0.46": "r"
    }
    ex = SimpleNamespace(prompt="Q: 2*3 A:", answer=" 6", meta={"module": "mul", "split": "interpolate"})
    cf = SimpleNamespace(prompt="Q: 4*1 A:", answer=" 4", meta={})
    assert (
        F.erasure_title(ex, cf)
        == "Residual erasure of 'Q: 2*3 A: 6' (mul, interpolate)\nerasing vector: mean residual of 'Q: 4*1 A: 4'; colour scale: largest effect on a question token"
    )


def test_the_erasure_example_falls_back_to_one_model_then_to_the_first_problems(monkeypatch):
    from effdepth import objective as O

    sets = {"interpolate": ["p0", "p1", "p2"], "extrapolate": ["q0"]}
    asked = []
    monkeypatch.setattr(O, "correct_examples", lambda grid, seed, split, keys=None: asked.append(keys) or [0])
    monkeypatch.setattr(O, "choose_example", lambda sets, correct: ("all four", "cf"))
    assert F.erasure_example(None, sets, 0) == ("all four", "cf") and asked == [None, None]  # all four models answer it
    answers = iter([None, ("transformer's", "cf")])
    monkeypatch.setattr(O, "choose_example", lambda sets, correct: next(answers))
    assert F.erasure_example(None, sets, 0) == ("transformer's", "cf")  # else the answer-only Transformer's
    monkeypatch.setattr(O, "choose_example", lambda sets, correct: None)
    assert F.erasure_example(None, sets, 0) == ("p0", "p1")  # else the first two interpolation problems


def test_run_info_names_the_grid_and_where_its_models_are():
    spec = F.grid_spec("tiny", 1, "small")
    rows = F.run_info_rows("zoo:default", spec, "tiny", 1, "small", [0, 1], "cpu")
    assert list(rows) == ["chapter_model_parameter", "grid", "seeds", "train_device", "models_dir"]
    assert rows["grid"] == f"{spec.key()} (preset tiny, scale 1, difficulty small)" and rows["seeds"] == "0, 1"
    assert rows["models_dir"].startswith("$EFFDEPTH_CACHE/grid/")
