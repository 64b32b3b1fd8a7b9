"""Tables, figures and sentences for the book's zoo page (notebooks/zoo.md): the logic lives here."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from effdepth.data import arithmetic as A
from effdepth.tokenizer import VOCAB_SIZE
from effdepth.zoo import corpus
from effdepth.zoo.build import report
from effdepth.zoo.reporting import ONE_HOP_REQUIRED, skill, skill_warning
from effdepth.zoo.specs import DEFAULT, MODELS

_LEVEL_NAMES = {"arithmetic_accuracy": "sum, {} ops", "multihop_accuracy": "{} hop"}


def spec_frame(names=None):
    """One row per zoo model: architecture, parameters, training budget."""
    rows = []
    for n in names or list(MODELS):
        s = MODELS[n]
        rows.append(
            {
                "model": n,
                "layers": s.n_layers,
                "d_model": s.d_model,
                "heads": s.n_heads,
                "d_ff": s.d_ff,
                "vocab": VOCAB_SIZE,
                "context": s.data.window,
                "steps (planned)": s.steps,
                "batch (windows)": s.data.batch_size,
                "peak lr": s.lr,
                "loss on": s.loss_on,
                "seed": s.seed,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def report_frame(names=None, percent: bool = True):
    """One row per trained zoo model: held-out loss vs unigram, accuracies per level / hops, time."""
    rows = []
    for n in names or list(MODELS):
        r = report(n)
        row = {
            "params": r["params"],
            "loss": round(r["heldout_loss"], 2),
            "unigram": round(r["unigram_loss"], 2),
            "loss (trained tokens)": round(r["heldout_loss_trained"], 2),
            "unigram (trained tokens)": round(r["unigram_loss_trained"], 2),
        }
        for key, fmt in _LEVEL_NAMES.items():
            for lv, acc in r[key].items():
                if lv != "all":
                    row[fmt.format(lv)] = round(100 * acc, 1) if percent else acc
        row["DM interp."] = round(100 * r["dm_accuracy"]["all"], 1) if percent else r["dm_accuracy"]["all"]
        row["steps trained"] = r["steps"]
        row["curriculum steps"] = r["curriculum_steps"]
        row["extra rounds"] = len((r.get("extra_rounds") or {}).get("rounds", []))
        row["1-hop skill"] = "yes" if skill(r)["ok"] else "MISSING"
        row["train min"] = round(r["train_seconds"] / 60, 1)
        rows.append({"model": n, **row})
    return pd.DataFrame(rows).set_index("model")


def skill_notice(names=None) -> str:
    """Markdown: a loud warning per model that lacks the zoo's stated one-hop skill, or one line
    saying that every model has it (with each model's one-hop accuracy)."""
    names = list(names or MODELS)
    reps = {n: report(n) for n in names}
    missing = [skill_warning(n, r) for n, r in reps.items() if not skill(r)["ok"]]
    if missing:
        return "\n\n".join(f"**{line}**" for line in missing)
    return (
        f"Every zoo model has the stated skill, one-hop lookup on fresh fact sets at ≥ {100 * ONE_HOP_REQUIRED:.0f} %: "
        + ", ".join(f"{n} {100 * skill(r)['one_hop']:.0f} %" for n, r in reps.items())
        + "."
    )


def plot_loss_curves(names=None, ax=None):
    """Training loss (all tokens, mean over each logging interval) against step, one line per model."""
    import matplotlib.pyplot as plt

    names = list(names or MODELS)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for n in names:
        r = report(n)
        for phase, style in (("curriculum", ":"), ("mixture", "-")):
            hs = [h for h in r["history"] if h.get("phase", "mixture") == phase]
            if hs:
                ax.plot(
                    [h["step"] for h in hs],
                    [h["loss"] for h in hs],
                    style,
                    color=f"C{names.index(n)}",
                    label=f"{n} ({r['n_layers']} layers)" if phase == "mixture" else None,
                )
    ax.set_xlabel("Training step (dotted: walk curriculum, answer letters only; solid: mixture)")
    ax.set_ylabel("Training loss (nats / counted token)")
    ax.set_ylim(0, None)
    ax.legend(frameon=False, fontsize=9.5)
    ax.set_title("Zoo training loss", fontsize=10)
    return ax.figure


def multihop_chance(name) -> float:
    """Chance level of a multi-hop answer: one over the number of entities in the facts."""
    d = MODELS[name].data
    return 1 / ((d.chain_len + 1) + (d.n_chains - 1) * (d.distractor_len + 1))


def sums_majority_baseline(n_eval: int = 100) -> dict[str, float]:
    """Per level: exact match of always answering the most common training answer of that level,
    on the same unseen questions the models are scored on (the bar a model must clear to have
    learned more than the answer distribution)."""
    test = corpus.eval_sets(MODELS[DEFAULT].data, n_eval)["arithmetic"]
    out = {}
    for lv in A.GRADED_LEVELS:
        common = Counter(a for _, a in A.graded_problems(lv, 5000, "train")).most_common(1)[0][0]
        answers = [e.answer.strip() for e in test if e.level == lv]
        out[str(lv)] = sum(a == common for a in answers) / len(answers)
    return out


def plot_accuracies(names=None):
    """Exact-match accuracy per arithmetic level and per hop count, one bar group per model."""
    import matplotlib.pyplot as plt

    names = names or list(MODELS)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    majority = sums_majority_baseline(MODELS[names[0]].n_eval)
    for ax, key, title, xlabel, chance in (
        (axes[0], "arithmetic_accuracy", "Graded sums (unseen questions)", "Operations", None),
        (axes[1], "multihop_accuracy", "In-context multi-hop (fresh facts)", "Hops", multihop_chance(names[0])),
    ):
        reps = [report(n) for n in names]
        levels = [lv for lv in reps[0][key] if lv != "all"]
        x = np.arange(len(levels))
        w = 0.8 / len(names)
        for i, (n, r) in enumerate(zip(names, reps)):
            ax.bar(x + (i - (len(names) - 1) / 2) * w, [100 * r[key][lv] for lv in levels], w, label=n)
        if chance:
            ax.axhline(100 * chance, color="grey", ls="--", lw=1, label="chance")
        else:
            ax.scatter(
                x,
                [100 * majority[lv] for lv in levels],
                marker="_",
                s=600,
                color="grey",
                zorder=3,
                label="most common answer",
            )
            ax.legend(frameon=False, fontsize=9.5, loc="upper right")
        ax.set_xticks(x, levels)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("Exact match (%)")
    axes[1].legend(frameon=False, fontsize=9.5)
    fig.tight_layout()
    return fig


def learned_summary(names=None) -> str:
    """Plain sentences stating what each model does and does not do, from its report."""
    lines = []
    for n in names or list(MODELS):
        r = report(n)
        a, m = r["arithmetic_accuracy"], r["multihop_accuracy"]
        hops = ", ".join(f"{h}-hop {100 * v:.0f}%" for h, v in m.items() if h != "all")
        levels = ", ".join(f"{lv} op {100 * v:.0f}%" for lv, v in a.items() if lv != "all")
        lines.append(
            f"{n}: held-out loss {r['heldout_loss_trained']:.2f} vs unigram {r['unigram_loss_trained']:.2f} nats per trained token; "
            f"multi-hop exact match {hops} (chance {100 * multihop_chance(n):.1f}%); unseen sums {levels}; "
            f"DeepMind interpolate {100 * r['dm_accuracy']['all']:.0f}%; trained {r['steps']} steps in {r['train_seconds'] / 60:.1f} min."
        )
    return "\n".join(lines)


def reading(names=None) -> str:
    """What the zoo's accuracies mean for the later chapters, as Markdown bullets computed from the reports."""
    names = list(names or MODELS)
    reps = {n: report(n) for n in names}
    chance = multihop_chance(names[0])
    majority = sums_majority_baseline(MODELS[names[0]].n_eval)
    hops = [h for h in reps[names[0]]["multihop_accuracy"] if h != "all"]
    levels = [lv for lv in reps[names[0]]["arithmetic_accuracy"] if lv != "all"]
    solved_hops = [h for h in hops if min(r["multihop_accuracy"][h] for r in reps.values()) >= 0.9]
    multi = {
        n: float(np.mean([r["multihop_accuracy"][h] for h in hops if h not in solved_hops] or [np.nan]))
        for n, r in reps.items()
    }
    sums = {n: {lv: r["arithmetic_accuracy"][lv] for lv in levels} for n, r in reps.items()}
    deep, shallow = names[-1], names[0]
    out = []
    if solved_hops:
        out.append(
            f"Every zoo model follows {' and '.join(solved_hops)}-hop pointers in context almost perfectly "
            f"(at least 90 % on fresh fact sets). With more hops the mean accuracy is "
            + ", ".join(f"{100 * multi[n]:.0f} % ({n})" for n in names)
            + f" against a chance level of {100 * chance:.1f} %: composing several lookups in one forward pass "
            "is mostly beyond these models' training budget. In the complexity chapter the hop count therefore "
            "separates questions a model answers from questions it mostly guesses, which is worth keeping in "
            "mind when reading depth against hops."
        )
    out.append(
        "Unseen sums: "
        + "; ".join(f"{n} " + ", ".join(f"{lv} op {100 * sums[n][lv]:.0f} %" for lv in levels) for n in names)
        + " (always answering the most common training answer: "
        + ", ".join(f"{lv} op {100 * majority[lv]:.0f} %" for lv in levels)
        + "). "
        + (
            "Accuracy falls with the number of operations, so the level is a real difficulty scale for these models."
            if all(sums[n][levels[0]] > sums[n][levels[-1]] for n in names)
            else "Accuracy does not fall steadily with the number of operations for every model, so read level as "
            "problem length more than as difficulty for these models."
        )
    )
    wins, losses = depth_comparison(reps[deep], reps[shallow])
    better = bool(wins) and not losses
    out.append(
        f"The deepest model ({deep}) is {'better than' if better else ('worse than' if losses and not wins else ('better and worse than' if wins else 'not clearly better than'))} the shallowest "
        f"({shallow}) at what the zoo was trained on"
        + (f" (better at {', '.join(wins)}" if wins else "")
        + ((", " if wins else " (") + f"worse at {', '.join(losses)}" if losses else "")
        + (")" if wins or losses else "")
        + ". "
        + (
            "Extra depth bought accuracy here, so the question the paper asks (does it buy new computation, "
            "or the same computation spread thinner?) applies to these models as well."
            if better
            else "Extra depth bought little accuracy here; whether the deep model spreads the same computation over "
            "more layers is exactly what the following chapters measure."
        )
    )
    return "\n".join(f"- {line}" for line in out)


def depth_comparison(deep: dict, shallow: dict, margin: float = 0.05) -> tuple[list[str], list[str]]:
    """(what the deep model's report is better at, what it is worse at) than the shallow one's, by
    more than `margin` (a fraction): every multi-hop count and every sum level, one by one."""
    wins, losses = [], []
    for key, fmt in _LEVEL_NAMES.items():
        for lv, acc in deep[key].items():
            if lv == "all" or lv not in shallow[key]:
                continue
            diff = acc - shallow[key][lv]
            name = fmt.format(lv)
            (wins if diff > margin else losses if diff < -margin else []).append(
                f"{name} ({100 * acc:.0f} % vs {100 * shallow[key][lv]:.0f} %)"
            )
    return wins, losses


def training_time_text(names=None) -> str:
    """How long this machine took to train each zoo model and how many steps each got, from the reports."""
    names = list(names or MODELS)
    reps = {n: report(n) for n in names}
    each = ", ".join(f"{n} {r['train_seconds'] / 60:.0f} min ({r['steps']} steps)" for n, r in reps.items())
    return f"On the machine that built this book, training took {each}; in parallel the whole zoo takes about as long as its slowest model."
