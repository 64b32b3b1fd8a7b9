"""Every scorecard rule, simulated at the n `make book` runs: false "as in the paper" at most 5 % under
the control's spread, noise, heavy tails, saturation and the opposite pattern; the power at half the
paper's size is measured (and the methods page states it). The n are the Makefile's."""

from pathlib import Path

import pytest

from effdepth import calibration as C

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "rule, sizes", [(r, C.BOOK_SIZES[r]) for r in C.SIMULATORS] + [(r, s) for r, s in C.ZOO_SIZES.items()]
)
def test_every_rule_is_calibrated_at_the_books_n(rule, sizes):
    rates = C.rates(rule, sizes, reps=60, seed=1)
    for sc in C.FALSE_SCENARIOS:
        assert rates[sc] <= C.TARGET_FALSE + 0.05, (rule, sc, rates)  # 60 draws: allow sampling error


@pytest.mark.parametrize(
    "rule",
    ["contributions.shape", "contributions.cos_turn", "skipping.current", "skipping.output", "logit_lens.settles_late"],
)
def test_rules_find_the_papers_pattern_at_half_size(rule):
    assert C.rates(rule, reps=60, seed=2, scenarios=(C.POWER_SCENARIO,))[C.POWER_SCENARIO] >= 0.7


def test_a_rule_that_says_yes_to_everything_would_fail_the_calibration():
    """The table can fail: a rule with no threshold and no control (any positive mean) is caught."""
    import numpy as np

    from effdepth import verdicts
    from effdepth.chapters import contributions as ch

    lax = verdicts.Rule("lax", "", +1, threshold=-10.0, margin=-10.0, effect="", paper="")
    rng = np.random.default_rng(0)
    sizes = C.BOOK_SIZES["contributions.shape"]
    false = np.mean(
        [
            verdicts.decide(
                lax, ch.mid_drops(C._contrib_result(C._contrib_curves(rng, "control spread", sizes.n, sizes.layers)))
            ).state
            == verdicts.AS_PAPER
            for _ in range(30)
        ]
    )
    assert false > 0.5


def test_the_book_sizes_are_the_cpu_profiles():
    """The n the table simulates are the n `make book` (profile cpu) runs."""
    from effdepth.profiles import CPU

    sizes = CPU["pretrained"]
    assert sizes["contributions.n_examples"] == C.BOOK_SIZES["contributions.shape"].n
    assert sizes["contributions.n_control_examples"] == C.BOOK_SIZES["contributions.shape"].n_control
    assert sizes["contributions.n_controls"] == C.BOOK_SIZES["contributions.shape"].seeds
    assert sizes["skipping.n_examples"] == sizes["skipping.n_examples_future"] == C.BOOK_SIZES["skipping.current"].n
    assert sizes["skipping.n_control_examples"] == C.BOOK_SIZES["skipping.current"].n_control
    assert sizes["skipping.n_controls"] == C.BOOK_SIZES["skipping.current"].seeds
    assert sizes["logit_lens.n_examples"] == C.BOOK_SIZES["logit_lens.settles_late"].n
    assert sizes["complexity.n_per_level"] == C.BOOK_SIZES["complexity.flat"].n
    assert sizes["complexity.n_control_per_level"] == C.BOOK_SIZES["complexity.flat"].n_control
    assert "--profile $(PROFILE)" in (ROOT / "Makefile").read_text()


def test_the_methods_table_names_every_rule_and_the_whole_scorecards_rate():
    df = C.table(reps=5)
    md = C.markdown(df, 5)
    for rule in C.SIMULATORS:
        assert f"`{rule}`" in md
    assert "whole scorecard" in md and md.count("\n|") == len(C.SIMULATORS) + len(C.ZOO_SIZES) + 1
    rules = C.rules_markdown()
    for name in C.rules():
        assert f"`{name}`" in rules
