"""How often each verdict rule says "as in the paper" when it should not, and how often it does when the
paper's pattern is there: simulation at the n the book runs.

For every rule of the scorecard a generator draws synthetic raw results (per-prompt contribution
curves, per-prompt skip matrices, per-prompt output changes, per-prompt KL curves, per-example depth
scores, per-seed differences) in the format the chapters read, passes them through the chapter's own
statistic and `effdepth.verdicts.decide`, and counts the verdicts. Scenarios:

- **control spread** (null): the "trained" model is one more draw of the random-init control's
  template (its prompt-to-prompt and seed-to-seed spread);
- **noise**: every entry independent noise, no structure;
- **heavy tails**: the control template with rare huge entries (a tiny ‖Δ_l‖ gives relative changes of
  hundreds before clipping);
- **saturated**: entries at the top of their scale (the max matrix all ≥ 1, the output change at its
  largest), so the statistic the figure shows cannot rank anything;
- **opposite**: the paper's pattern reversed;
- **paper, half size**: the paper's pattern with half its published size (in the statistic's own
  units: half the log-drop, half the gap between halves) — the power.

A rule is calibrated when each false scenario gives "as in the paper" at most `TARGET_FALSE` (5 %) of
the time; its power is the rate under "paper, half size", and a row whose power is below 80 % says
"inconclusive at this n" rather than "not as in the paper" when it does not decide. `table()` is the
table on the methods page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from effdepth import verdicts
from effdepth.chapters import benchmarks, complexity, contributions, logit_lens, objective, skipping

TARGET_FALSE = 0.05
TARGET_POWER = 0.8
FALSE_SCENARIOS = ("control spread", "noise", "heavy tails", "saturated", "opposite")
POWER_SCENARIO = "paper, half size"
SCENARIOS = FALSE_SCENARIOS + (POWER_SCENARIO,)


@dataclass(frozen=True)
class Sizes:
    """The n a rule is run at: prompts (or examples) of the trained model, control seeds, prompts per
    control seed, and the model's depth."""

    n: int
    seeds: int
    n_control: int
    layers: int
    levels: int = 4


# The sizes `make book` runs each rule at on SmolLM2-135M (30 layers) and on the zoo's 8-layer model;
# they must match the Makefile's SMOLLM_SIZES / ZOO_SIZES (tests/rules/test_calibration.py checks them).
BOOK_SIZES = {
    "contributions.shape": Sizes(n=20, seeds=2, n_control=5, layers=30),
    "contributions.cos_turn": Sizes(n=20, seeds=2, n_control=5, layers=30),
    "skipping.current": Sizes(n=8, seeds=2, n_control=3, layers=30),
    "skipping.future": Sizes(n=8, seeds=2, n_control=3, layers=30),
    "skipping.output": Sizes(n=8, seeds=2, n_control=3, layers=30),
    "logit_lens.settles_late": Sizes(n=20, seeds=2, n_control=5, layers=30),
    "logit_lens.knees_agree": Sizes(n=20, seeds=2, n_control=5, layers=30),
    "complexity.flat": Sizes(n=10, seeds=2, n_control=3, layers=30, levels=4),
    "objective.depth_use": Sizes(n=5, seeds=5, n_control=5, layers=4),
}


# The zoo's 8-layer model runs the same rules at the notebooks' default sizes (make book sets none).
ZOO_SIZES = {
    "contributions.shape": Sizes(n=20, seeds=3, n_control=5, layers=8),
    "contributions.cos_turn": Sizes(n=20, seeds=3, n_control=5, layers=8),
    "skipping.current": Sizes(n=10, seeds=3, n_control=5, layers=8),
    "skipping.future": Sizes(n=10, seeds=3, n_control=5, layers=8),
    "skipping.output": Sizes(n=10, seeds=3, n_control=5, layers=8),
    "logit_lens.settles_late": Sizes(n=20, seeds=3, n_control=5, layers=8),
    "logit_lens.knees_agree": Sizes(n=20, seeds=3, n_control=5, layers=8),
    "complexity.flat": Sizes(n=20, seeds=2, n_control=5, layers=8, levels=4),
}


def _lognoise(rng, shape, sigma):
    return np.exp(rng.normal(0.0, sigma, shape))


# -- §3.1 contributions ----------------------------------------------------------------------------


def _contrib_curves(rng, scenario: str, P: int, L: int, seed_shift: float = 0.0) -> np.ndarray:
    """Per-prompt relative contributions [P, L]."""
    l = np.arange(L, dtype=float)
    control = 0.3 * (l + 1) ** -(0.5 + seed_shift)
    half = L / 2

    def step(hi, lo):
        s = 1 / (1 + np.exp(-(l - half) / max(L / 30, 0.5)))
        return hi * (lo / hi) ** s

    base = {
        "control spread": control,
        "heavy tails": control,
        "saturated": np.full(L, 1.0),
        "noise": np.full(L, 0.1),
        "opposite": step(0.04, 0.17),
        POWER_SCENARIO: step(0.17, 0.17 * (0.04 / 0.17) ** 0.5),
        "paper": step(0.17, 0.04),
    }[scenario]
    sigma = 0.5 if scenario == "noise" else 0.15
    X = base[None, :] * _lognoise(rng, (P, 1), 0.2) * _lognoise(rng, (P, L), sigma)
    if scenario == "heavy tails":
        X = X * np.where(rng.random((P, L)) < 0.05, 10 * (1 + rng.pareto(1.5, (P, L))), 1.0)
    if scenario == "saturated":
        X = np.minimum(X * 50, 1.0)
    return X


def _contrib_result(X: np.ndarray, cos: np.ndarray | None = None) -> SimpleNamespace:
    arrays = {"prompt_rel_layer": X, "mean_rel_layer": X.mean(0)}
    if cos is not None:
        arrays["prompt_cos_layer"] = cos
    return SimpleNamespace(arrays=arrays)


def _cos_curves(rng, scenario: str, P: int, L: int, seed_shift: float = 0.0) -> np.ndarray:
    first = np.arange(L) < L / 2
    base = {
        "control spread": np.full(L, -0.02 + seed_shift),
        "heavy tails": np.full(L, -0.02 + seed_shift),
        "saturated": np.full(L, 1.0),
        "noise": np.zeros(L),
        "opposite": np.where(first, 0.15, -0.15),
        POWER_SCENARIO: np.where(first, -0.075, 0.075),
        "paper": np.where(first, -0.15, 0.15),
    }[scenario]
    sd = 0.3 if scenario == "noise" else 0.05
    C = base[None, :] + rng.normal(0, sd, (P, L))
    if scenario == "heavy tails":
        C = C + 0.05 * rng.standard_t(1, (P, L))
    return np.clip(C, -1, 1)


def _sim_contributions(rule_name: str):
    ch = contributions

    def one(rng, scenario: str, s: Sizes) -> str:
        shift = lambda: rng.normal(0, 0.03)  # noqa: E731  (a seed's own deviation)
        if rule_name == "contributions.shape":
            res = _contrib_result(_contrib_curves(rng, scenario, s.n, s.layers, shift()))
            ctl = [
                _contrib_result(_contrib_curves(rng, "control spread", s.n_control, s.layers, shift()))
                for _ in range(s.seeds)
            ]
            return verdicts.decide(ch.SHAPE, ch.mid_drops(res), [ch.mid_drops(c) for c in ctl]).state
        res = _contrib_result(np.ones((s.n, s.layers)), _cos_curves(rng, scenario, s.n, s.layers, shift() / 3))
        ctl = [
            _contrib_result(
                np.ones((s.n_control, s.layers)), _cos_curves(rng, "control spread", s.n_control, s.layers, shift() / 3)
            )
            for _ in range(s.seeds)
        ]
        return verdicts.decide(ch.COS_TURN, ch.cos_rises(res), [ch.cos_rises(c) for c in ctl]).state

    return one


# -- §3.2 skipping ---------------------------------------------------------------------------------


def _skip_matrices(rng, scenario: str, P: int, L: int, seed_shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(per-prompt max matrices, per-prompt mean matrices) [P, L, L], clipped to [0, 1] as measured."""
    s = np.arange(L, dtype=float)
    first = s < L / 2
    b = {
        "control spread": 0.6 - (0.3 + seed_shift) * s / L,
        "heavy tails": 0.6 - 0.3 * s / L,
        "saturated": 0.6 - 0.3 * s / L,
        "noise": np.full(L, 0.5),
        "opposite": np.where(first, 0.15, 0.8),
        POWER_SCENARIO: np.where(first, 0.8, 0.475),
        "paper": np.where(first, 0.8, 0.15),
    }[scenario]
    dist = s[None, :] - s[:, None]
    shape = np.where(dist > 0, np.exp(-(dist - 1) / 3.0), 0.0)
    M = b[:, None] * shape
    M = M[None] * _lognoise(rng, (P, L, L), 0.25)
    if scenario == "noise":
        M = rng.random((P, L, L)) * (dist > 0)
    if scenario == "heavy tails":
        M = M * np.where(rng.random((P, L, L)) < 0.05, np.exp(rng.normal(3, 2, (P, L, L))), 1.0)
    mean = np.clip(M * 0.3, 0, 1)
    if scenario == "saturated":
        mean = np.clip(M * 0.3, 0, 1)
        M = M * 50
    idx = np.arange(L)
    M[:, idx, idx] = 1.0
    return np.clip(M, 0, 1), mean


def _skip_result(M, mean, o=None):
    return SimpleNamespace(
        layer_effect=M.max(0),
        mean_layer_effect=mean.mean(0),
        example_layer_effect=M,
        example_mean_layer_effect=mean,
        example_output_effect=o,
    )


def _outputs(rng, scenario: str, P: int, L: int, future: bool, tiny: bool = False) -> np.ndarray:
    s = np.arange(L, dtype=float)
    first = s < L / 2
    cur = 0.3 * (1 - 0.3 * s / L)
    fut = {
        "control spread": 0.2 * (1 - 0.3 * s / L),
        "heavy tails": 0.2 * (1 - 0.3 * s / L),
        "saturated": np.full(L, np.sqrt(2)),
        "noise": np.full(L, 0.2),
        "opposite": np.where(first, 0.02, 0.2),
        POWER_SCENARIO: np.where(first, 0.2, 0.2 * 10**-0.5),
        "paper": np.where(first, 0.2, 0.02),
    }[scenario]
    base = (np.full(L, np.sqrt(2)) if scenario == "saturated" else cur) if not future else fut
    sigma = 1.0 if scenario == "noise" else 0.2
    o = base[None] * _lognoise(rng, (P, 1), 0.2) * _lognoise(rng, (P, L), sigma)
    if scenario == "heavy tails":
        o = o * np.where(rng.random((P, L)) < 0.05, 10 * (1 + rng.pareto(1.5, (P, L))), 1.0)
    if future:
        o[:, -1] = 0.0
    o = np.minimum(o, np.sqrt(2))
    return o * 1e-3 if tiny else o


def _sim_skipping(rule_name: str):
    ch = skipping

    def one(rng, scenario: str, s: Sizes) -> str:
        L = s.layers
        if rule_name == "skipping.output":

            def pair(sc, P, tiny=False):
                return (
                    SimpleNamespace(
                        example_output_effect=_outputs(rng, sc, P, L, False, tiny), layer_effect=np.zeros((L, L))
                    ),
                    SimpleNamespace(
                        example_output_effect=_outputs(rng, sc, P, L, True, tiny), layer_effect=np.zeros((L, L))
                    ),
                )

            cur, fut = pair(scenario, s.n)
            ctl = [
                pair("control spread", s.n_control, tiny=True) for _ in range(s.seeds)
            ]  # the book's controls: output ≈ 0.001
            return ch.output_verdict(cur, fut, [c for c, _ in ctl], [g for _, g in ctl]).state
        name = rule_name.split(".")[1]
        res = _skip_result(*_skip_matrices(rng, scenario, s.n, L, rng.normal(0, 0.03)))
        ctl = [
            _skip_result(*_skip_matrices(rng, "control spread", s.n_control, L, rng.normal(0, 0.03)))
            for _ in range(s.seeds)
        ]
        return ch.halves_verdict(name, res, ctl)[0].state

    return one


# -- §3.2 logit lens -------------------------------------------------------------------------------


def _kl_curves(rng, scenario: str, P: int, L: int) -> np.ndarray:
    """Per-prompt KL curves [P, L + 1] (the last, the final residual, is 0)."""
    x = np.arange(L + 1) / L
    linear = 7.0 * (1 - x)
    paper = np.where(x <= 0.5, 7.0, 7.0 * (1 - x) / 0.5)
    base = {
        "control spread": linear,
        "heavy tails": linear,
        "saturated": np.where(x < 1, 7.0, 0.0),
        "noise": np.full(L + 1, 3.0),
        "opposite": np.where(x <= 0.25, 7.0 * (1 - x / 0.25) + 0.5, 0.5),
        POWER_SCENARIO: 0.5 * paper + 0.5 * linear,
        "paper": paper,
    }[scenario]
    sigma = 1.0 if scenario == "noise" else 0.1
    K = base[None] * _lognoise(rng, (P, 1), 0.2) * _lognoise(rng, (P, L + 1), sigma)
    if scenario == "heavy tails":
        K = K * np.where(rng.random((P, L + 1)) < 0.05, 10 * (1 + rng.pareto(1.5, (P, L + 1))), 1.0)
    K[:, -1] = 0.0
    return K


def _sim_lens(rule_name: str):
    ch = logit_lens

    def one(rng, scenario: str, s: Sizes) -> str:
        L = s.layers
        if rule_name == "logit_lens.knees_agree":
            # per-prompt knee estimates (relative depth) with the estimation noise of a 30-layer curve
            centre = {
                "control spread": None,
                "noise": None,
                "heavy tails": None,
                "saturated": None,
                "opposite": 0.3,
                POWER_SCENARIO: ch.TOLERANCE / 2,
                "paper": 0.0,
            }[scenario]
            if centre is None:  # knees that have nothing to do with each other
                d = rng.uniform(0.1, 0.9, s.n) - rng.uniform(0.1, 0.9, s.n)
                if scenario == "heavy tails":
                    d = d + 0.05 * rng.standard_t(1, s.n)
            else:
                d = centre + rng.normal(0, 0.08, s.n)
            if scenario == "saturated":
                d = np.zeros(s.n) + rng.normal(0, 0.5, s.n)
            return verdicts.decide_equivalence(ch.KNEES, d).state
        mk = lambda sc, P: SimpleNamespace(kl=np.zeros(L), example_kl=_kl_curves(rng, sc, P, L))  # noqa: E731
        tiny = lambda P: SimpleNamespace(kl=np.zeros(L), example_kl=_kl_curves(rng, "control spread", P, L) * 1e-4)  # noqa: E731
        return ch.settles_verdict(mk(scenario, s.n), [tiny(s.n_control) for _ in range(s.seeds)]).state

    return one


# -- §3.3 depth score ------------------------------------------------------------------------------


def _sim_complexity(rule_name: str):
    ch = complexity

    def one(rng, scenario: str, s: Sizes) -> str:
        L, K = s.layers, s.levels
        levels = np.repeat(np.arange(1, K + 1), s.n)
        margin = ch.DEPTH_SHIFT * (L - 1) / (K - 1)
        slope = {
            "paper": 0.0,
            POWER_SCENARIO: 0.0,
            "control spread": margin,
            "noise": margin,
            "heavy tails": margin,
            "opposite": 2 * margin,
            "saturated": margin,
        }[scenario]
        sd = 0.08 * L
        y = 0.45 * L + slope * (levels - levels.mean()) + rng.normal(0, sd, levels.size)
        if scenario == "heavy tails":
            y = y + 0.02 * L * rng.standard_t(1, levels.size)
        if scenario == "noise":
            y = rng.uniform(0, L - 1, levels.size) + slope * (levels - levels.mean())
        E = np.zeros((levels.size, L, L))
        if scenario == "saturated":
            E[:] = np.triu(np.ones((L, L)), 1)
        res = SimpleNamespace(
            example_level=levels,
            levels=np.arange(1, K + 1),
            example_correct=np.ones(levels.size, bool),
            example_depth_layer=y,
            max_E=np.zeros((K, L, L)),
            example_E=E,
        )
        return ch.flat_verdict(res, "layer", None, ch.DEPTH_SHIFT, n_tests=2).state

    return one


# -- §3.5 objective --------------------------------------------------------------------------------


def _sim_objective(rule_name: str):
    ch = objective

    def one(rng, scenario: str, s: Sizes) -> str:
        n_statements, n_depth = 17, 6
        effect = {"paper": 2.0, POWER_SCENARIO: 1.0, "opposite": -1.0}.get(scenario, 0.0)
        rows = []
        for j in range(n_statements):
            mu = effect if j < n_depth else 0.0
            d = mu + (rng.standard_t(1, s.n) if scenario == "heavy tails" else rng.normal(0, 1, s.n))
            if scenario == "saturated":
                d = np.zeros(s.n)
            rows.append(ch.statement(f"s{j}", d, None))
        ch.holm_correct(rows)
        depth = rows[:n_depth]
        return (
            verdicts.AS_PAPER
            if any(r["verdict"] == ch.PAPER for r in depth)
            else (verdicts.UNLIKE if any(r["verdict"] == ch.OPPOSITE for r in depth) else verdicts.INCONCLUSIVE)
        )

    return one


SIMULATORS = {
    "contributions.shape": _sim_contributions("contributions.shape"),
    "contributions.cos_turn": _sim_contributions("contributions.cos_turn"),
    "skipping.current": _sim_skipping("skipping.current"),
    "skipping.future": _sim_skipping("skipping.future"),
    "skipping.output": _sim_skipping("skipping.output"),
    "logit_lens.settles_late": _sim_lens("logit_lens.settles_late"),
    "logit_lens.knees_agree": _sim_lens("logit_lens.knees_agree"),
    "complexity.flat": _sim_complexity("complexity.flat"),
    "objective.depth_use": _sim_objective("objective.depth_use"),
}


def rates(rule: str, sizes: Sizes | None = None, reps: int = 200, seed: int = 0, scenarios=SCENARIOS) -> dict:
    """{scenario: share of `reps` simulated results that the rule calls "as in the paper"}."""
    sizes = sizes or BOOK_SIZES[rule]
    one = SIMULATORS[rule]
    out = {}
    for k, sc in enumerate(scenarios):
        rng = np.random.default_rng([seed, k, sum(map(ord, rule))])
        out[sc] = float(np.mean([one(rng, sc, sizes) == verdicts.AS_PAPER for _ in range(reps)]))
    return out


def table(reps: int = 200, seed: int = 0, sizes: dict | None = None) -> pd.DataFrame:
    """The methods page's table: per rule and model size (SmolLM2-135M's 30 layers at make book's n;
    the zoo's 8 layers at the notebooks' defaults), n, the false "as in the paper" rate of each false
    scenario and their maximum, and the power at half the paper's size."""
    runs = [("SmolLM2-135M", sizes or BOOK_SIZES)] + ([] if sizes else [("zoo, 8 layers", ZOO_SIZES)])
    rows = []
    for label, table_sizes in runs:
        for rule in SIMULATORS:
            if rule not in table_sizes:
                continue
            s = table_sizes[rule]
            r = rates(rule, s, reps, seed)
            false = max(r[sc] for sc in FALSE_SCENARIOS)
            who = f"§3.5 grid, {s.layers} layers" if rule.startswith("objective.") else label
            rows.append(
                {
                    "rule": rule,
                    "model": who,
                    "layers": s.layers,
                    "n": s.n,
                    "seeds": s.seeds,
                    **{sc: r[sc] for sc in SCENARIOS},
                    "false rate": false,
                    "power": r[POWER_SCENARIO],
                }
            )
    return pd.DataFrame(rows)


def scorecard_false_rate(df: pd.DataFrame) -> float:
    """The chance that at least one scorecard row says "as in the paper" falsely, rows independent,
    each at its worst false scenario: 1 − Π(1 − false rate) over every row of the table (both models)."""
    return float(1 - np.prod(1 - df["false rate"].to_numpy()))


def markdown(df: pd.DataFrame, reps: int) -> str:
    """The table as Markdown for the methods page."""
    head = (
        "| rule | model | n (seeds) | "
        + " | ".join(f"false: {sc}" for sc in FALSE_SCENARIOS)
        + " | false rate (max) | power (paper at half size) |"
    )
    lines = [head, "|" + " --- |" * (5 + len(FALSE_SCENARIOS))]
    for _, r in df.iterrows():
        cells = " | ".join(f"{100 * r[sc]:.1f} %" for sc in FALSE_SCENARIOS)
        power = f"{100 * r['power']:.0f} %" + (
            "" if r["power"] >= TARGET_POWER else " (below 80 %: the row says inconclusive when it does not decide)"
        )
        lines.append(
            f"| `{r['rule']}` | {r['model']} | {int(r['n'])} ({int(r['seeds'])}) | {cells} | {100 * r['false rate']:.1f} % | {power} |"
        )
    total = scorecard_false_rate(df)
    lines.append("")
    lines.append(
        f"Simulated with {reps} synthetic results per cell at the n `make book` runs (`effdepth.calibration`). The whole "
        f'scorecard says "as in the paper" falsely at least once with probability {100 * total:.1f} % (rows independent, each at '
        f"its worst false scenario; goal ≤ {100 * TARGET_FALSE:.0f} %)."
    )
    return "\n".join(lines)


def rules() -> dict:
    """Every stated rule of the scorecard, by name (from the chapter modules that apply them)."""

    found = [
        benchmarks.RULE,
        contributions.SHAPE,
        contributions.COS_TURN,
        *skipping.HALVES.values(),
        skipping.OUTPUT,
        logit_lens.SETTLES,
        logit_lens.KNEES,
        complexity.FLAT,
        objective.CLAIM,
    ]
    return {r.name: r for r in found}


def rules_markdown() -> str:
    """The methods page's table of rules: statistic, direction, threshold, margin, the effect that
    would matter, the paper's finding; generated from the Rule objects the chapters apply."""
    lines = [
        "| rule | statistic (per prompt unless said) | the paper's pattern | threshold | margin over the control | the effect that would matter |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rules().items():
        th = "—" if not np.isfinite(r.threshold) else f"{r.threshold:.3g}"
        mg = "per set (see the rule)" if not np.isfinite(r.margin) else f"{r.margin:.3g}"
        lines.append(
            f"| `{name}` | {r.statistic} | {'larger' if r.direction > 0 else 'smaller'}; {r.paper} | {th} | {mg} | {r.effect} |"
        )
    return "\n".join(lines)


def source_hash() -> str:
    """A hash of the code the table depends on (this module, the verdict rules and the chapters)."""

    here = Path(__file__).parent
    files = [here / "calibration.py", here / "verdicts.py", *sorted((here / "chapters").glob("*.py"))]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
