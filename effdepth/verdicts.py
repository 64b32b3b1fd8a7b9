"""How a number becomes a verdict: the five states every chapter and the scorecard use, and the two
decision rules behind them.

A rule (`Rule`) names the per-prompt (or per-example) statistic the figure shows, the direction the
paper's pattern takes, the *shape threshold* (the value from which the statistic shows the pattern
by an amount that would matter) and the *margin* (the smallest difference from the random-init
control that would matter). `decide` turns the statistic of the trained model and of its controls
into one of five states:

- **as in the paper**: the one-sided (1 − α) interval of the trained model's mean lies beyond the
  shape threshold, AND its difference from the controls lies beyond 0 (one-sided, at CONTROL_ALPHA)
  with a point estimate of at least the margin (where the control can be compared; see `degenerate`);
- **the untrained architecture shows it too**: the trained model shows the pattern, the controls'
  mean lies beyond the threshold as well, and the trained model is not beyond them;
- **unlike the paper**: decisively the opposite: the interval lies on the other side of the threshold,
  or the difference from the control is beyond −margin the other way;
- **inconclusive at n = …**: none of these is decided at this n; `n_needed` estimates the n at which
  the observed effect would decide (80 % power at the rule's α);
- **not testable here**: the model does not do the task above chance, the models did not learn, the
  model has too few layers, or the statistic is degenerate (said in `reason`).

`decide_equivalence` is the rule for a claim of *no* effect (a flat depth score, agreeing knees): as
in the paper when the (1 − 2α) interval lies inside ±margin (TOST); unlike when the (1 − α) interval
lies outside it; else inconclusive.

Every rule's error rates are measured by simulation in `effdepth.calibration` at the n the book runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as _st

AS_PAPER = "as in the paper"
UNLIKE = "unlike the paper"
CONTROL_TOO = "the untrained architecture shows it too"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
STATES = (AS_PAPER, UNLIKE, CONTROL_TOO, INCONCLUSIVE, NOT_TESTABLE)

ALPHA = 0.01  # one-sided, per rule: with about ten scorecard rows the whole scorecard stays near 5 % false
CONTROL_ALPHA = 0.05  # one-sided, the difference from the controls: with 2–3 control seeds the seeds' own
# spread has 1–2 degrees of freedom, and t at 0.99 (31.8 for one) would let no effect through; the
# shape threshold at ALPHA already guards the null (the simulated false rates show it)
POWER = 0.8  # the power `n_needed` aims at
MAX_N = 1000  # beyond this, "would need more than 1000"


@dataclass(frozen=True)
class Rule:
    """A stated rule. `statistic`: what is measured per prompt, in words; `direction`: +1 when the
    paper's pattern makes it larger; `threshold`: the value from which it shows the pattern by an
    amount that matters; `margin`: the smallest difference from the control that matters (same units);
    `effect`: the effect that would matter, in words (where the threshold and margin come from);
    `paper`: the paper's own finding in numbers or words."""

    name: str
    statistic: str
    direction: int
    threshold: float
    margin: float
    effect: str
    paper: str
    alpha: float = ALPHA


@dataclass
class Estimate:
    """A mean with its standard error and degrees of freedom (n: the sample it came from)."""

    mean: float
    se: float
    df: float
    n: int
    sd: float = float("nan")

    @classmethod
    def of(cls, values) -> Estimate:
        """The mean of per-prompt values (non-finite values dropped) with its standard error."""
        v = np.asarray(values, dtype=float).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            return cls(float("nan"), float("nan"), 0.0, 0)
        if v.size == 1:
            return cls(float(v[0]), float("nan"), 0.0, 1)
        sd = float(v.std(ddof=1))
        return cls(float(v.mean()), sd / np.sqrt(v.size), float(v.size - 1), int(v.size), sd)

    def bound(self, alpha: float, side: int) -> float:
        """The one-sided (1 − α) bound: lower for side = +1, upper for side = −1."""
        if not np.isfinite(self.se) or self.df <= 0:
            return float("nan")
        return float(self.mean - side * _st.t.ppf(1 - alpha, self.df) * self.se)


def difference(a: Estimate, b: Estimate) -> Estimate:
    """a − b for two independent samples (Welch–Satterthwaite degrees of freedom)."""
    va, vb = a.se**2, b.se**2
    if not (np.isfinite(va) and np.isfinite(vb)) or va + vb == 0:
        return Estimate(a.mean - b.mean, float("nan"), 0.0, min(a.n, b.n))
    df = (va + vb) ** 2 / ((va**2 / a.df if a.df > 0 else 0) + (vb**2 / b.df if b.df > 0 else 0) or 1e-300)
    n = min(a.n, b.n)
    return Estimate(a.mean - b.mean, float(np.sqrt(va + vb)), float(df), n, float(np.sqrt((va + vb) * n)))


def control_estimate(control_values: list) -> Estimate:
    """The controls' centre and the spread a trained model that were one more random-init draw would
    have around it. control_values: per control seed, its per-prompt values or its `Estimate`.

    Variance of (trained − controls' centre) under that null: a seed's own deviation σ_b² once for
    the trained model and once over k for the centre, plus the controls' prompt noise over k (the
    trained model's own prompt noise is added by `difference`). σ_b² = var(seed means) − mean(seed
    se²), floored at 0. With one seed σ_b² cannot be estimated and is taken as 0 (the page says how
    many seeds there were)."""
    seeds = [c if isinstance(c, Estimate) else Estimate.of(c) for c in control_values]
    seeds = [c for c in seeds if c.n > 0 and np.isfinite(c.mean)]
    if not seeds:
        return Estimate(float("nan"), float("nan"), 0.0, 0)
    k = len(seeds)
    means = np.array([c.mean for c in seeds])
    se2 = np.array([c.se**2 if np.isfinite(c.se) else 0.0 for c in seeds])
    df_w = float(sum(c.df for c in seeds))
    s_b2 = max(float(means.var(ddof=1)) - float(se2.mean()), 0.0) if k > 1 else 0.0
    parts = [(s_b2 * (1 + 1 / k), k - 1.0), (float(se2.mean()) / k, df_w)]
    var = sum(p for p, _ in parts)
    n = int(sum(c.n for c in seeds))
    if var == 0:
        return Estimate(float(means.mean()), 0.0, float("inf"), n)
    denom = sum(p**2 / d for p, d in parts if p > 0 and d > 0)
    return Estimate(float(means.mean()), float(np.sqrt(var)), float(var**2 / denom) if denom > 0 else 0.0, n)


@dataclass
class Verdict:
    """One rule's verdict on one model: `state` (one of STATES), the trained model's statistic with its
    (1 − 2α) interval, the controls' mean (NaN when not compared), the difference, n, the n that would
    decide (`n_needed`, inconclusive only) and why a rule could not be applied (`reason`)."""

    rule: str
    state: str
    n: int
    effect: float = float("nan")
    lo: float = float("nan")
    hi: float = float("nan")
    control: float = float("nan")
    diff: float = float("nan")
    diff_lo: float = float("nan")
    diff_hi: float = float("nan")
    n_needed: int | None = None
    reason: str = ""
    details: dict = field(default_factory=dict)

    def words(self) -> str:
        """The state as the scorecard writes it: 'inconclusive at n = 3 (would need about n = 12)'."""
        if self.state == INCONCLUSIVE:
            need = ""
            if self.n_needed is not None:
                need = (
                    f" (would need more than n = {MAX_N})"
                    if self.n_needed > MAX_N
                    else f" (would need about n = {self.n_needed})"
                )
            return f"inconclusive at n = {self.n}{need}"
        if self.state == NOT_TESTABLE and self.reason:
            return f"not testable here ({self.reason})"
        return self.state

    def as_dict(self) -> dict:
        return asdict(self)


def n_needed(effect: float, sd: float, alpha: float, power: float = POWER, offset: float = 0.0) -> int | None:
    """The n at which a one-sided test of a mean `effect` away from `offset` (per-prompt sd `sd`) would
    decide with `power`: ((z_{1−α} + z_power)·sd / |effect − offset|)²; None without an sd."""
    gap = abs(effect - offset)
    if not (np.isfinite(sd) and sd > 0 and np.isfinite(gap)):
        return None
    if gap == 0:
        return MAX_N + 1
    n = ((_st.norm.ppf(1 - alpha) + _st.norm.ppf(power)) * sd / gap) ** 2
    return int(min(np.ceil(max(n, 2)), MAX_N + 1))


def decide(
    rule: Rule, values, control_values: list | None = None, degenerate: str = "", not_testable: str = ""
) -> Verdict:
    """The five-state verdict of `rule` on per-prompt `values` of the trained model and, per control seed,
    the controls' per-prompt values. `degenerate`: a reason the control cannot be compared (its
    statistic cannot fail, e.g. an output change of 0.001): the verdict then rests on the threshold
    alone and says so. `not_testable`: a reason the rule cannot be applied at all. `values` may be an
    `Estimate` (a statistic of two samples, e.g. `difference`), and so may each control's."""
    x = values if isinstance(values, Estimate) else Estimate.of(values)
    v = Verdict(rule.name, INCONCLUSIVE, x.n, effect=x.mean)
    if not_testable:
        v.state, v.reason = NOT_TESTABLE, not_testable
        return v
    if x.n < 2 or not np.isfinite(x.se):
        v.state, v.reason = NOT_TESTABLE, "fewer than two prompts with a value"
        return v
    a, d = rule.alpha, rule.direction
    v.lo, v.hi = x.bound(a, +1), x.bound(a, -1)
    z_lo = d * (x.bound(a, d) - rule.threshold)  # the bound nearest the threshold, in the paper's direction
    z_hi = d * (x.bound(a, -d) - rule.threshold)
    shows, absent = z_lo > 0, z_hi < 0
    compare = bool(control_values) and not degenerate
    beyond = below = control_shows = False
    need = [n_needed(x.mean, x.sd, a, offset=rule.threshold)] if not (shows or absent) else []
    if compare:
        c = control_estimate(control_values)
        diff = difference(x, c)
        v.control, v.diff = c.mean, diff.mean
        ca = CONTROL_ALPHA
        v.diff_lo, v.diff_hi = diff.bound(ca, +1), diff.bound(ca, -1)
        dz, dz_lo, dz_hi = d * diff.mean, d * diff.bound(ca, d), d * diff.bound(ca, -d)
        if not np.isfinite(diff.se) or diff.se == 0:  # no spread at all: the point estimates decide
            dz_lo = dz_hi = dz
        beyond = dz_lo > 0 and dz >= rule.margin
        below = dz_hi < 0 and dz <= -rule.margin
        control_shows = d * (c.mean - rule.threshold) > 0
        if shows and not beyond and not control_shows:
            need.append(n_needed(dz, x.sd, a, offset=0.0 if dz >= rule.margin else rule.margin))
    elif control_values and degenerate:
        v.control = control_estimate(control_values).mean
        v.reason = degenerate
    if shows and (beyond or not compare):
        v.state = AS_PAPER
    elif shows and control_shows:
        v.state = CONTROL_TOO
    elif absent or below:
        v.state = UNLIKE
    else:
        v.state = INCONCLUSIVE
        ns = [n for n in need if n is not None]
        v.n_needed = max(max(ns), x.n + 1) if ns else None
    return v


def decide_equivalence(
    rule: Rule, values=None, estimate: Estimate | None = None, not_testable: str = "", unlike_alpha: float | None = None
) -> Verdict:
    """A claim of no effect (`rule.threshold` is the null value, usually 0; `rule.margin` the smallest
    effect that would matter): as in the paper when the (1 − 2α) interval lies inside
    threshold ± margin; unlike when the (1 − α) one-sided bound nearest the threshold lies outside
    it (at `unlike_alpha`, default the rule's α: pass α/m when any of m tests saying "unlike" decides a
    chapter); else inconclusive. Give per-prompt `values`, or an `estimate` (e.g. a regression slope)."""
    x = estimate if estimate is not None else Estimate.of(values)
    v = Verdict(rule.name, INCONCLUSIVE, x.n, effect=x.mean)
    if not_testable:
        v.state, v.reason = NOT_TESTABLE, not_testable
        return v
    if x.n < 2 or not np.isfinite(x.se) or x.df <= 0:
        v.state, v.reason = NOT_TESTABLE, "too few values for an interval"
        return v
    a, m, t0 = rule.alpha, rule.margin, rule.threshold
    v.lo, v.hi = x.bound(a, +1), x.bound(a, -1)
    if t0 - m < v.lo and v.hi < t0 + m:
        v.state = AS_PAPER
    elif x.bound(unlike_alpha or a, +1) > t0 + m or x.bound(unlike_alpha or a, -1) < t0 - m:
        v.state = UNLIKE
    else:
        sd = x.se * np.sqrt(max(x.n, 1))
        gap = m - abs(x.mean - t0)
        v.n_needed = (
            max(n_needed(gap, sd, a) or MAX_N + 1, x.n + 1) if gap > 0 else n_needed(abs(x.mean - t0), sd, a, offset=m)
        )
    return v


def combine(states) -> str:
    """One state for several findings of a chapter: the common state when all agree; 'not testable
    here' when none could be tested; else 'mixed' (the page lists them: `tally`)."""
    states = list(states)
    if states and all(s == states[0] for s in states):
        return states[0]
    return "mixed"


def combine_all(states) -> str:
    """The state of a claim that needs every one of several tests (a chapter of sets and scores): as
    in the paper only when every tested one is; unlike when any is; not testable when none could be
    tested; else inconclusive."""
    tested = [s for s in states if s != NOT_TESTABLE]
    if not tested:
        return NOT_TESTABLE
    if UNLIKE in tested:
        return UNLIKE
    if all(s == AS_PAPER for s in tested):
        return AS_PAPER
    if CONTROL_TOO in tested and all(s in (AS_PAPER, CONTROL_TOO) for s in tested):
        return CONTROL_TOO
    return INCONCLUSIVE


def tally(states) -> str:
    """'2 as in the paper, 1 inconclusive': how many findings got each state, in the order of STATES."""
    states = list(states)
    return ", ".join(f"{states.count(s)} {s}" for s in STATES if states.count(s)) or "none"


def holm(pvalues, alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down correction: which of `pvalues` are rejected at family-wise level `alpha`."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    reject = np.zeros(p.size, bool)
    for rank, i in enumerate(order):
        if not p[i] <= alpha / (p.size - rank):
            break
        reject[i] = True
    return reject
