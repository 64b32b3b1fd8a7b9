"""§3.5 reasoning: from the grid's accuracies and depth use (trained models and their random-init
controls) to directional verdicts, one per statement of the paper.

Every statement is a paired comparison across seeds (a seed fixes the initialisation and the data
order, so the two models of a pair differ only in the factor compared): per seed the difference
d_s = value(expected higher) − value(expected lower). Rules (book/methods/objective-rules.md states
the same):

- **Direction over seeds**: `stats.direction_verdict` on the d_s, a one-sided exact sign test at
  α = 0.05 (differences of accuracy of at most one problem count as ties and are dropped). 3 of 3
  seeds agreeing is p = 1/8: "not distinguishable from chance"; at least `MIN_SEEDS` (5) seeds, all
  agreeing, are needed for a direction to count.
- **Control**: the same comparison between the random-init controls of the two models. Two models
  that differ only in the objective have the same untrained model (same seed, same architecture), so
  their control difference is 0 by construction; for MoEUT vs Transformer the control difference is
  measured per seed. The trained mean difference must exceed `stats.control_bound(control
  differences, "greater")` (beyond every control difference and their mean by `chapters.control_k`
  sd, the 97.5 % prediction bound for one more seed). For an
  accuracy, the expected-better models must also beat guessing: their mean accuracy above the
  larger of the most-frequent-answer baseline and the untrained models' accuracy, by more than one
  problem.
- **Verdict** of a statement: "yes" (as in the paper) when the direction is "consistent" and the
  control is passed; "not distinguishable from the control" when consistent but not beyond the
  control; "opposite" when the sign test finds the other direction; else "not distinguishable from
  chance".
- **Fine-tuning** (one seed): the fine-tuned model's future-effect matrix is closer to the
  pre-trained model's than to the from-scratch model's (same objective) when the difference of the
  two distances exceeds the distance between two from-scratch seeds of that objective (the
  seed-to-seed variation); "opposite" for the mirror image; else "not distinguishable from
  seed-to-seed variation" (also when no second seed exists to measure it). Two preconditions, else
  "not distinguishable from the control": the pre-trained model's matrix differs from its untrained
  control's by more than the seed-to-seed variation (it has a pattern of its own to keep), and the
  fine-tuning changed what the model does (its interpolation accuracy rose above the pre-trained
  model's by more than one problem); "depth use unchanged" says nothing about a fine-tuning that
  changed nothing.
- **Learned**: the grid's models "learned the task" when the best cell's mean accuracy exceeds the
  baseline by `LEARNED_MARGIN` (15 points) on some split.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from effdepth import objective as O
from effdepth import stats, verdicts
from effdepth.access.controls import control_of
from effdepth.chapters import (
    AS_PAPER,
    INCONCLUSIVE,
    NOT_TESTABLE,
    PAPER,
    SAME_AS_CONTROL,
    UNLIKE,
    Findings,
    control_k,
    record,
)
from effdepth.measures.depth_score import depth_score
from effdepth.measures.skip_effects import skip_effects
from effdepth.plots import objective as figs
from effdepth.zoo import cache_dir

HOLM_SEEDS = 9  # the fewest seeds (all agreeing: p = 1/512) that pass Holm's first step over 17 statements
MIN_SEEDS = 5  # the fewest seeds for which all agreeing gives a sign-test p below 0.05 (1/32)
ALPHA = 0.05
LEARNED_MARGIN = 0.15
CHANCE = stats.CHANCE
OPPOSITE = "opposite"
SEED_NOISE = "not distinguishable from seed-to-seed variation"

CLAIM = verdicts.Rule(
    name="objective.depth_use",
    statistic="per-seed paired differences of depth use (depth score, erasure depth) between objectives and architectures, sign test over seeds, Holm-corrected over every statement",
    direction=+1,
    threshold=0.0,
    margin=0.0,
    effect="a direction shared by enough seeds to pass a Holm-corrected sign test (at least 5 seeds, all agreeing)",
    paper="244M models, 100k steps (Fig 9): the answer-only loss and MoEUT use more of their depth (residual erasure)",
)
ARCH_LABEL = {"transformer": "Transformer", "moeut": "MoEUT"}
OBJECTIVE_LABEL = {"all": "all-token loss", "answer": "answer-only loss"}
DEPTH_MEASURES = {
    "erasure_depth": "erasure depth",
    "depth_layer": "depth score (layer effect)",
    "depth_output": "depth score (logit effect)",
}


def _num(x: float) -> str:
    return f"{x:.2f}" if np.isfinite(x) else "– (no problem answered correctly)"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def paired_differences(frame: pd.DataFrame, value: str, factor: str, hi: str, lo: str, where: dict) -> np.ndarray:
    """Per-seed differences value[factor=hi] − value[factor=lo] among the rows matching ``where``
    (seeds pair the runs: same initialisation and data order), in seed order."""
    f = frame
    for k, v in where.items():
        f = f[f[k] == v]
    a = f[f[factor] == hi].set_index("seed")[value]
    b = f[f[factor] == lo].set_index("seed")[value]
    seeds = sorted(set(a.index) & set(b.index))
    return np.array([a[s] - b[s] for s in seeds], dtype=float)


def matrix_distance(a, b) -> float:
    """Mean absolute difference of two skip-effect matrices [L, L] over the entries l > s (where the
    future effect lives), each clipped to [0, 1] like the heatmaps."""
    a, b = np.clip(np.asarray(a, float), 0, 1), np.clip(np.asarray(b, float), 0, 1)
    upper = np.triu(np.ones_like(a, dtype=bool), k=1)
    return float(np.abs(a - b)[upper].mean())


def statement(what: str, diffs, control_diffs=None, tol: float = 0.0, floor: dict | None = None) -> dict:
    """The verdict on one directional statement (rules in the module docstring).

    diffs: per-seed trained differences (expected positive); control_diffs: the same differences
    between the models' random-init controls (None: 0 by construction); tol: |d| ≤ tol counts as a
    tie; floor: {"value": mean of the expected-better models, "bound": what they must exceed} for
    accuracies (beating guessing).
    """
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    ties = np.where(np.abs(d) <= tol, 0.0, d)
    dv = stats.direction_verdict(ties, expected=1, alpha=ALPHA)
    c = np.zeros(max(len(d), 1)) if control_diffs is None else np.asarray(control_diffs, dtype=float)
    c = c[np.isfinite(c)]
    mean = float(d.mean()) if len(d) else float("nan")
    beyond = bool(len(c)) and stats.differs_from_control(mean, c, "greater", k=control_k(len(c)))
    if floor is not None:
        beyond = beyond and bool(np.isfinite(floor["value"]) and floor["value"] > floor["bound"] + tol)
    if dv["verdict"] == stats.CONSISTENT:
        verdict = PAPER if beyond else SAME_AS_CONTROL
    elif dv["verdict"] == stats.OPPOSITE:
        verdict = OPPOSITE
    else:
        verdict = CHANCE
    return {
        "statement": what,
        "diffs": d.tolist(),
        "n_expected": dv["n_expected"],
        "n": dv["n"],
        "p": dv["p"],
        "p_opposite": dv["p_opposite"],
        "direction": dv["verdict"],
        "mean": mean,
        "control_bound": stats.control_bound(c, "greater", k=control_k(len(c))) if len(c) else float("nan"),
        "control": "0 by construction" if control_diffs is None else ", ".join(f"{x:+.2f}" for x in c),
        "beyond_control": beyond,
        "verdict": verdict,
    }


def _signs(s: dict, scale: float = 100.0) -> str:
    return ", ".join(f"{scale * x:+.1f}" for x in s["diffs"])


def accuracy_findings(
    acc: pd.DataFrame, base: dict, n_problems: dict, modules=("all",), control_acc: pd.DataFrame | None = None
) -> Findings:
    """Statements on extrapolation accuracy: answer-only > all-token loss per architecture and module,
    and a larger gain for MoEUT; plus whether the models learned more than the answer distribution.

    acc: `Grid.accuracy_frame()`; base: `objective.baseline_accuracy`; n_problems: {module: number of
    extrapolation problems} (one problem = the tie tolerance); control_acc: accuracy frame of the
    random-init controls (arch, seed, split, module, accuracy), optional.
    """
    ex = acc[acc.split == "extrapolate"]
    rows, lines = [], []
    for module in modules:
        f = ex[ex.module == module]
        tol = 1.0 / max(int(n_problems.get(module, 1)), 1) + 1e-9
        for arch in ("transformer", "moeut"):
            d = paired_differences(f, "accuracy", "objective", "answer", "all", {"arch": arch})
            better = float(f[(f.arch == arch) & (f.objective == "answer")].accuracy.mean())
            guess = float(base["extrapolate"].get(module, np.nan))
            if control_acc is not None and len(control_acc):
                ca = control_acc[
                    (control_acc.split == "extrapolate") & (control_acc.module == module) & (control_acc.arch == arch)
                ].accuracy
                guess = max(guess, float(ca.max())) if len(ca) else guess
            name = "all modules" if module == "all" else module
            s = statement(
                f"answer-only > all-token loss on extrapolation ({name}), {ARCH_LABEL[arch]}",
                d,
                None,
                tol,
                {"value": better, "bound": guess},
            )
            rows.append(s)
            worse = float(f[(f.arch == arch) & (f.objective == "all")].accuracy.mean())
            lines.append(
                f"- {ARCH_LABEL[arch]}, {'all extrapolation modules' if module == 'all' else module}: {pct(worse)} with the "
                f"all-token loss, {pct(better)} with the answer-only loss (per-seed differences {_signs(s, 100)} points; "
                f"{s['n_expected']} of {s['n']} untied seeds in the paper's direction, sign test p = {s['p']:.3f}): **{s['verdict']}**."
            )
    f = ex[ex.module == "all"]
    gain = {
        a: paired_differences(f, "accuracy", "objective", "answer", "all", {"arch": a})
        for a in ("transformer", "moeut")
    }
    k = min(len(gain["moeut"]), len(gain["transformer"]))
    rows.append(
        statement(
            "the answer-only gain is larger for MoEUT than for the Transformer",
            gain["moeut"][:k] - gain["transformer"][:k],
            None,
            1.0 / max(int(n_problems.get("all", 1)), 1) + 1e-9,
        )
    )
    allm = acc[acc.module == "all"]
    above = allm.groupby(["split", "arch", "objective"]).accuracy.mean()
    best_base = max(base["extrapolate"]["all"], base["interpolate"]["all"])
    learned = bool(above.max() >= best_base + LEARNED_MARGIN)
    per_split = " / ".join(
        f"{s}: {pct(above[s].max())}" for s in ("interpolate", "extrapolate") if s in above.index.get_level_values(0)
    )
    text = "\n".join(lines) + (
        f"\n\nAlways answering the most frequent training answer (`{base['answer']}`) scores {pct(base['interpolate']['all'])} on "
        f"interpolation and {pct(base['extrapolate']['all'])} on extrapolation; the best model of the grid reaches {pct(above.max())} ({per_split}). "
        + (
            "The models clearly do better than guessing."
            if learned
            else "The models are not far above that baseline: at this scale they have mostly learned the format and the distribution "
            "of answers, not the arithmetic, so differences between cells are small and the directions below should be read with that in mind."
        )
    )
    return Findings(
        numbers={
            "best_accuracy": float(above.max()),
            "baseline_accuracy": float(best_base),
            "accuracy_statements": rows,
        },
        verdicts={"learned": "yes" if learned else "no"},
        text={"accuracy_text": text},
    )


def depth_findings(use: pd.DataFrame, control_use: pd.DataFrame | None = None) -> Findings:
    """Statements on depth use: answer-only loss uses more depth (per architecture) and MoEUT uses more
    depth than the Transformer (per objective), for each depth measure.

    use: `objective.depth_use(grid)`; control_use: the same measures of the random-init controls, one
    row per (arch, seed) (`objective.control_depth_use`), optional (without it the MoEUT-vs-Transformer
    statements cannot pass the control rule).
    """
    rows, lines = [], []
    for col, name in DEPTH_MEASURES.items():
        for arch in ("transformer", "moeut"):
            d = paired_differences(use, col, "objective", "answer", "all", {"arch": arch})
            rows.append(statement(f"answer-only loss uses more depth ({name}), {ARCH_LABEL[arch]}", d, None))
        c = (
            paired_differences(control_use.assign(objective="all"), col, "arch", "moeut", "transformer", {})
            if control_use is not None and col in control_use
            else np.array([])
        )
        for obj in ("all", "answer"):
            d = paired_differences(use, col, "arch", "moeut", "transformer", {"objective": obj})
            rows.append(statement(f"MoEUT uses more depth than the Transformer ({name}), {OBJECTIVE_LABEL[obj]}", d, c))
        means = use.groupby(["arch", "objective"])[col].mean()
        ctrl = ""
        if control_use is not None and col in control_use:
            cm = control_use.groupby("arch")[col].mean()
            ctrl = "; untrained (random init): " + ", ".join(
                f"{ARCH_LABEL[a]} {_num(cm[a])}" for a in ("transformer", "moeut") if a in cm.index
            )
        lines.append(
            f"- {name}: "
            + "; ".join(
                f"{ARCH_LABEL[a]}, {OBJECTIVE_LABEL[o]} {_num(means[(a, o)])}"
                for a in ("transformer", "moeut")
                for o in ("all", "answer")
                if (a, o) in means.index
            )
            + ctrl
            + "."
        )
    return Findings(numbers={"depth_statements": rows}, text={"depth_text": "Means over seeds:\n\n" + "\n".join(lines)})


def finetune_statement(
    objective: str,
    d_pre: float,
    d_scratch: float,
    seed_distance: float = float("nan"),
    d_pre_control: float = float("nan"),
    learned: bool = True,
) -> dict:
    """Does fine-tuning with `objective` leave depth use close to the pre-trained model's? (module docstring).

    d_pre / d_scratch: distances of the fine-tuned model's matrix from the pre-trained and from the
    from-scratch model's; seed_distance: between two from-scratch seeds; d_pre_control: between the
    pre-trained model and its untrained control (NaN: not measured); learned: the fine-tuning raised
    the accuracy by more than one problem."""
    diff = d_scratch - d_pre  # > 0: closer to the pre-trained model
    known = np.isfinite(seed_distance)
    own = np.isfinite(d_pre_control) and known and d_pre_control > seed_distance
    if known and diff > seed_distance:
        verdict = PAPER if own and learned else SAME_AS_CONTROL
    elif known and diff < -seed_distance:
        verdict = OPPOSITE
    else:
        verdict = SEED_NOISE
    why = []
    if not own:
        why.append(
            "the pre-trained model's matrix is not further from an untrained model's than two seeds are from each other"
        )
    if not learned:
        why.append("fine-tuning did not raise the accuracy by more than one problem")
    return {
        "statement": f"fine-tuning ({OBJECTIVE_LABEL[objective]}) leaves depth use close to the pre-trained model's",
        "diffs": [diff],
        "n_expected": int(diff > 0),
        "n": 1,
        "p": float("nan"),
        "direction": "closer to the pre-trained model" if diff > 0 else "closer to the from-scratch model",
        "mean": diff,
        "control_bound": seed_distance,
        "control": (f"seed-to-seed distance {seed_distance:.3f}" if known else "no second seed")
        + (f"; pre-trained vs untrained {d_pre_control:.3f}" if np.isfinite(d_pre_control) else ""),
        "beyond_control": verdict == PAPER,
        "verdict": verdict,
        "why_not": "; ".join(why),
        "d_pre": d_pre,
        "d_scratch": d_scratch,
        "seed_distance": seed_distance,
    }


def finetune_findings(E: dict, seed_distances: dict | None = None, learned: dict | None = None) -> Findings:
    """Fine-tuning statements from the future-effect matrices E[name] (names as in the chapter:
    'pre-trained on multi-hop only', 'fine-tuned, <objective label>', 'from scratch, <objective
    label>', 'untrained (random init)'); seed_distances: {objective: distance between two
    from-scratch seeds}; learned: {objective: did fine-tuning raise the accuracy by more than one
    problem} (default: yes)."""
    seed_distances, learned = seed_distances or {}, learned or {}
    pre, ctrl = "pre-trained on multi-hop only", "untrained (random init)"
    d_ctrl = matrix_distance(E[ctrl], E[pre]) if ctrl in E and pre in E else float("nan")
    rows, parts = [], []
    for obj in ("all", "answer"):
        fk, sk = f"fine-tuned, {OBJECTIVE_LABEL[obj]}", f"from scratch, {OBJECTIVE_LABEL[obj]}"
        if fk not in E or sk not in E or pre not in E:
            continue
        s = finetune_statement(
            obj,
            matrix_distance(E[fk], E[pre]),
            matrix_distance(E[fk], E[sk]),
            seed_distances.get(obj, float("nan")),
            d_ctrl,
            learned.get(obj, True),
        )
        rows.append(s)
        seeds = (
            f"two from-scratch seeds differ by {s['seed_distance']:.3f}"
            if np.isfinite(s["seed_distance"])
            else "no second seed measures the seed-to-seed variation"
        )
        parts.append(
            f"With the {OBJECTIVE_LABEL[obj]}, the fine-tuned model's future-effect matrix differs from the pre-trained model's by "
            f"{s['d_pre']:.3f} on average and from the model trained from scratch with the same objective by {s['d_scratch']:.3f} "
            f"({seeds}): **{s['verdict']}**" + (f" ({s['why_not']})." if s["verdict"] == SAME_AS_CONTROL else ".")
        )
    if np.isfinite(d_ctrl):
        parts.append(f"The untrained Transformer's matrix differs from the pre-trained model's by {d_ctrl:.3f}.")
    return Findings(
        numbers={"finetune_statements": rows},
        text={"finetune_text": " ".join(parts) or "No fine-tuning comparison was run."},
    )


def findings(
    acc, base, n_problems, use, control_use=None, control_acc=None, finetune: Findings | None = None, modules=("all",)
) -> Findings:
    """All of §3.5: accuracy, depth and (optionally) fine-tuning statements, and the summary sentence."""
    out = accuracy_findings(acc, base, n_problems, modules, control_acc).merge(depth_findings(use, control_use))
    out = out.merge(
        finetune
        if finetune is not None
        else Findings(
            numbers={"finetune_statements": []},
            text={
                "finetune_text": "Fine-tuning was switched off for this run (`finetune = False`; `make book` leaves it out to fit a 2-core CPU, and `effdepth run --set objective.finetune=True` runs it)."
            },
        )
    )
    rows = out.numbers["accuracy_statements"] + out.numbers["depth_statements"] + out.numbers["finetune_statements"]
    holm_correct(rows)
    out.numbers["statements"] = rows
    n_seeds = int(acc.seed.nunique())
    counts = pd.Series([r["verdict"] for r in rows], dtype=object).value_counts()
    n_paper, n_opp = int(counts.get(PAPER, 0)), int(counts.get(OPPOSITE, 0))
    out.numbers.update(
        n_statements=len(rows), n_paper=n_paper, n_opposite=n_opp, n_seeds=n_seeds, min_p=float(0.5**n_seeds)
    )
    learned = out.verdicts.get("learned") == "yes"
    depth_rows = out.numbers["depth_statements"]
    v = verdicts.Verdict(
        CLAIM.name, INCONCLUSIVE, n_seeds, effect=float(sum(r["verdict"] == PAPER for r in depth_rows))
    )
    if not learned:
        v.state = NOT_TESTABLE
        v.reason = (
            f"the grid's best model answers {pct(out.numbers['best_accuracy'])} against {pct(out.numbers['baseline_accuracy'])} for always "
            "giving the most frequent answer: at this size the models did not learn the arithmetic, so their depth use says nothing"
        )
    elif any(r["verdict"] == PAPER for r in depth_rows):
        v.state = AS_PAPER
    elif any(r["verdict"] == OPPOSITE for r in depth_rows):
        v.state = UNLIKE
    else:
        v.n_needed = HOLM_SEEDS if n_seeds < HOLM_SEEDS else None
    record(out, "any_paper", v, CLAIM, unit="depth statements holding after Holm's correction")
    out.text["summary_text"] = (
        f"Of {len(rows)} directional statements, **{n_paper}** hold as in the paper (a sign test over seeds in the paper's "
        f"direction, Holm-corrected over all {len(rows)} statements at family-wise {ALPHA:g}, and a difference beyond the random-init "
        f"control), **{n_opp}** are reversed (Holm-corrected too), and {len(rows) - n_paper - n_opp} are not distinguishable from "
        f"chance, from the control or from seed-to-seed variation. With {n_seeds} seed{'s' if n_seeds != 1 else ''} the smallest "
        f"possible sign-test p is {0.5**n_seeds:.3f}"
        + (
            f": no direction can count with fewer than {MIN_SEEDS} seeds all agreeing (set `seeds`)."
            if n_seeds < MIN_SEEDS
            else "."
        )
        + (f" **Not testable here**: {v.reason}." if v.state == NOT_TESTABLE else "")
        + " The sizes are not comparable with the paper's 244M-parameter, 100k-step models."
    )
    return out


def holm_correct(rows: list[dict]) -> None:
    """Holm's correction over every statement of the chapter (in place): a direction found by a sign
    test counts only when Holm's step-down procedure over ALL the statements rejects it at family-wise
    ALPHA; one that does not survive becomes "not distinguishable from chance". A statement's p is the
    sign-test p of its verdict's direction (the smaller of the two for one without a direction).
    With 17 statements the first step needs p ≤ 0.05/17 ≈ 0.003: nine seeds, all agreeing."""
    tested = [r for r in rows if "p" in r]
    if not tested:
        return
    p = [
        r.get("p_opposite", 1.0)
        if r["verdict"] == OPPOSITE
        else r["p"]
        if r["verdict"] in (PAPER, SAME_AS_CONTROL)
        else min(r["p"], r.get("p_opposite", 1.0))
        for r in tested
    ]
    keep = verdicts.holm(p, ALPHA)
    for r, ok in zip(tested, keep):
        r["holm"] = bool(ok)
        if not ok and r["verdict"] in (PAPER, SAME_AS_CONTROL, OPPOSITE):
            r["verdict"] = CHANCE


def table(f: Findings) -> pd.DataFrame:
    """The statements of `findings` as a table (one row per statement)."""
    rows = [
        {
            "paper's direction": r["statement"],
            "these runs": r["verdict"],
            "seeds in the paper's direction": f"{r['n_expected']} of {r['n']}",
            "sign test p": "–" if not np.isfinite(r["p"]) else f"{r['p']:.3f}",
            "per seed (accuracy: points; depth: fraction of depth)": ", ".join(f"{x:+.3f}" for x in r["diffs"]),
            "control": r["control"],
        }
        for r in f.numbers["statements"]
    ]
    return pd.DataFrame(rows).set_index("paper's direction")


def setup_text(spec, mcfg, times: pd.DataFrame, seeds, train_device: str, build_seconds: float) -> str:
    """What this run trained: sizes, steps, data and training times."""
    L = spec.n_layers
    med = lambda a: times[times.arch == a].train_seconds.median()  # noqa: E731
    return (
        f"This run: **{len(seeds)} seeds** ({', '.join(map(str, seeds))}) × 2 architectures × 2 objectives. "
        f"Transformer: {L} layers, d = {spec.d_model}, {spec.n_heads} heads, SwiGLU width {spec.d_ff} "
        f"({times[times.arch == 'transformer'].params.iloc[0]:,} parameters). "
        f"MoEUT: a group of {mcfg.group_size} distinct layers applied {mcfg.n_repeats} time{'s' if mcfg.n_repeats > 1 else ''} in a row "
        f"({L} layer applications), d = {spec.d_model}, {mcfg.num_attention_heads} SwitchHead heads with {mcfg.att_n_experts} "
        f"value/output experts ({mcfg.att_k} active), σ-MoE with {mcfg.ff_n_experts} experts of width {mcfg.ff_expert_size} "
        f"({mcfg.ff_k} active) ({times[times.arch == 'moeut'].params.iloc[0]:,} parameters). "
        f"Training: {spec.steps} steps of {spec.batch_size} windows × {spec.window} tokens, AdamW lr {spec.lr}, modules "
        f"{', '.join(spec.modules)}, "
        + (
            f"entropy {spec.entropy} (add/sub {spec.add_sub_entropy}; the generator uses (3, 10) and (4, 16))"
            if spec.entropy
            else "the released generator's settings"
        )
        + f". Training time per model (this machine, {train_device}): median {times.train_seconds.median():.0f} s "
        f"(Transformer {med('transformer'):.0f} s, MoEUT {med('moeut'):.0f} s"
        + (f"; CPU time {times.train_cpu_seconds.median():.0f} s" if times.train_cpu_seconds.notna().any() else "")
        + f"); this cell took {build_seconds:.0f} s (models already trained are read from the cache). Evaluation: "
        f"{spec.n_eval} held-out problems per module and split. Each model's random-init control is the same "
        f"architecture untrained, built from the model's own seed."
    )


def erasure_text(depths: dict, answered: dict) -> str:
    """The erasure example: who answers it, and each model's erasure depth ({label: depth}, {label: correct?})."""
    trained = [k for k in answered if "random init" not in k]
    ok_all = all(answered[k] for k in trained)
    return (
        f"The problem is {'answered correctly by all four trained models' if ok_all else '**not** answered correctly by every trained model (no problem was)'}. "
        + " ".join(f"{k}: erasure depth {v:.2f}." for k, v in depths.items())
    )


# --- the chapter's setup: what the notebook trains, measures, draws and tabulates -----------------


def train_device(device: str, remote: bool) -> str:
    """Where the grid trains: on this machine's CPU when measurements run remotely, else on `device`."""
    return "cpu" if remote else device


def grid_spec(preset: str, scale: float, difficulty: str, steps=None):
    """The grid's spec (`objective.make_spec`), with `steps` training steps when given."""

    spec = O.make_spec(preset, scale, difficulty)
    return spec if steps is None else O.replace(spec, steps=int(steps))


def finetune_seed(finetune: bool, seed: int):
    """The seed whose Transformers the fine-tuning study compares with (trained with the grid), or
    None when fine-tuning is switched off."""
    return seed if finetune else None


def finetune_runs(spec, finetune: bool, seed: int, device: str, progress: bool, workers):
    """The fine-tuning runs' folders (`objective.finetune_runs`), or None when switched off."""

    return O.finetune_runs(spec, seed=seed, device=device, progress=progress, workers=workers) if finetune else None


def made_by(preset: str, seeds) -> str:
    """The figures' model slot: the grid this chapter trained."""
    return f"the §3.5 grid (preset {preset}, {len(seeds)} seeds)"


def accuracy_title(seeds) -> str:
    return f"Exact match of the grid's models ({len(seeds)} seeds each; bars: mean, whiskers: min–max)"


def headline_title(module: str) -> str:
    return f"The paper's headline module, {module}"


def loss_title(seeds) -> str:
    return f"Training loss per step, seed {seeds[0]}"


def depth_use_title(seeds) -> str:
    return f"Depth use of the grid's models ({len(seeds)} seeds; grey: untrained)"


def erasure_example(grid, sets: dict, seed: int):
    """(problem, counterfactual) for the erasure heatmaps: a held-out problem all four models of
    `seed` answer (`objective.choose_example`); else one the answer-only Transformer answers; else the
    first two interpolation problems."""

    pair = O.choose_example(sets, {s: O.correct_examples(grid, seed, s) for s in O.SPLITS})
    if pair is None:  # no problem answered by all four: each model's own first correct problem
        pair = O.choose_example(
            sets, {s: O.correct_examples(grid, seed, s, keys=[("transformer", "answer", seed)]) for s in O.SPLITS}
        )
    if pair is None:
        pair = (sets["interpolate"][0], sets["interpolate"][1])
    return pair


def erasure_models(grid, seed: int, device: str) -> dict:
    """The four models of `seed` and the two architectures untrained, by their label."""

    models = {figs.cell_label(a, o): grid.load(a, o, seed, device=device) for a in O.ARCHS for o in O.OBJECTIVES}
    controls = O.control_models(grid, device=device)
    models.update({f"{O.ARCH_LABEL[a]}, random init": controls[(a, seed)] for a in O.ARCHS})
    return models


def erasure_panels(erasures: dict, depths: dict, seed: int) -> dict:
    """The erasure heatmaps by panel title: the model, its seed and its erasure depth."""
    return {f"{k} (seed {seed})\nerasure depth {depths[k]:.2f}": r for k, r in erasures.items()}


def erasure_title(example, counterfactual) -> str:
    return (
        f"Residual erasure of {example.prompt + example.answer!r} ({example.meta['module']}, {example.meta['split']})\n"
        f"erasing vector: mean residual of {counterfactual.prompt + counterfactual.answer!r}; "
        f"colour scale: largest effect on a question token"
    )


def learned(ft_reports: dict, pre_report: dict, n_interpolate: int) -> dict:
    """{objective: did fine-tuning raise the interpolation accuracy above the pre-trained model's by
    more than one problem (1 / `n_interpolate`)}: a fine-tuning that learned nothing cannot show
    whether the objective changes depth use. `ft_reports` by the fine-tuned models' names
    ('fine-tuned, <objective label>'), each a training report with `accuracy`."""
    one = 1.0 / max(n_interpolate, 1)
    before = pre_report["accuracy"]["interpolate"]["all"]
    return {
        o: ft_reports[f"fine-tuned, {OBJECTIVE_LABEL[o]}"]["accuracy"]["interpolate"]["all"] > before + one
        for o in OBJECTIVE_LABEL
    }


FINETUNE_OFF = "fine-tuning was switched off for this run (`finetune = False`; make book leaves it out to fit a 2-core CPU, `--set objective.finetune=True` runs it)"


class FinetuneStudy:
    """App. D.5 on one seed: the pre-trained (multi-hop only) Transformer, its two fine-tunings, the
    from-scratch Transformers of that seed and an untrained one; their future-effect matrices (`E`),
    the distance between two from-scratch seeds per objective, their depth scores (`use`), the
    training reports, and `findings` (`finetune_findings`, with `learned`)."""

    def __init__(self, ft, grid, sets: dict, seeds, seed: int, n_examples: int, n_layers: int, device: str):

        self.seed = seed
        self.prompts = [e.text for e in O.spread(sets["interpolate"], n_examples)]
        models = {
            "pre-trained on multi-hop only": O.load_folder(
                ft["pretrained"], f"grid:pretrained-multihop-s{seed}", device
            ),
            "fine-tuned, all-token loss": O.load_folder(ft["all"], f"grid:finetuned-all-s{seed}", device),
            "fine-tuned, answer-only loss": O.load_folder(ft["answer"], f"grid:finetuned-answer-s{seed}", device),
        }
        for o in O.OBJECTIVES:
            if ("transformer", o, seed) in grid.folders:
                models[f"from scratch, {O.OBJECTIVE_LABEL[o]}"] = grid.load("transformer", o, seed, device=device)
        models["untrained (random init)"] = control_of(models["pre-trained on multi-hop only"], seed=seed)
        self.future = {k: skip_effects(m, self.prompts, mode="future", seed=0) for k, m in models.items()}
        self.E = {k: r.layer_effect for k, r in self.future.items()}
        other_seed = next((s for s in seeds if s != seed), None)
        self.seed_distances = {}
        for o in O.OBJECTIVES:
            if (
                other_seed is not None
                and ("transformer", o, other_seed) in grid.folders
                and ("transformer", o, seed) in grid.folders
            ):
                second = skip_effects(
                    grid.load("transformer", o, other_seed, device=device), self.prompts, mode="future", seed=0
                )
                self.seed_distances[o] = matrix_distance(
                    self.E[f"from scratch, {O.OBJECTIVE_LABEL[o]}"], second.layer_effect
                )
        self.reports = {
            k: json.loads((ft[k2] / "report.json").read_text())
            for k, k2 in (("fine-tuned, all-token loss", "all"), ("fine-tuned, answer-only loss", "answer"))
        }
        self.use = {}
        for k, m in models.items():
            ds = depth_score(m, {"interpolate": O.spread(sets["interpolate"], n_examples)}, split="answer", n_boot=200)
            self.use[k] = (float(ds.depth_layer[0]) / (n_layers - 1), float(ds.depth_output[0]) / (n_layers - 1))
        pre_report = json.loads((ft["pretrained"] / "report.json").read_text())
        self.learned = learned(self.reports, pre_report, len(sets["interpolate"]))
        self.findings = finetune_findings(self.E, self.seed_distances, self.learned)


def finetune_study(ft, grid, sets: dict, seeds, seed: int, n_examples: int, n_layers: int, device: str):
    """The `FinetuneStudy` of the fine-tuning runs `ft`, or None when fine-tuning was switched off."""
    return None if ft is None else FinetuneStudy(ft, grid, sets, seeds, seed, n_examples, n_layers, device)


def finetune_figure(study, made_by: str) -> tuple:
    """(figure or None, who made it, why not drawn) of the skip effects before and after fine-tuning
    (`made_by`: the grid)."""

    if study is None:
        return None, None, FINETUNE_OFF
    fig = figs.future_effects(
        {f"{k}\n(Transformer, seed {study.seed})": r for k, r in study.future.items()},
        title=f"Skipping a layer: max relative change of later layers at future tokens, {len(study.prompts)} arithmetic problems",
    )
    return fig, made_by, ""


def finetune_tables(study, grid) -> list:
    """The fine-tuning study's tables (matrix distances; depth score and accuracy), none without it."""

    if study is None:
        return []
    return [
        figs.distance_table(study.E, matrix_distance),
        figs.finetune_table(study.use, study.reports, grid, study.seed),
    ]


def finetune_of(study):
    """The fine-tuning findings for `findings(finetune=…)`, None without the study."""
    return None if study is None else study.findings


def run_info_rows(model: str, spec, preset: str, scale, difficulty: str, seeds, train_device: str) -> dict:
    """The run-info table's rows after the model's own: the chapter's `model` parameter (named only),
    the grid, its seeds, where it trained and where its models are."""

    return {
        "chapter_model_parameter": model,
        "grid": f"{spec.key()} (preset {preset}, scale {scale}, difficulty {difficulty})",
        "seeds": ", ".join(map(str, seeds)),
        "train_device": train_device,
        "models_dir": f"$EFFDEPTH_CACHE/{O.grid_dir(spec).relative_to(cache_dir()).as_posix()}",
    }
