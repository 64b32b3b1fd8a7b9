"""Tables, figures and sentences for the book's zoo page (notebooks/zoo.md): the logic lives here."""

from __future__ import annotations

from . import MODELS, report

_LEVEL_NAMES = {"arithmetic_accuracy": "sum, {} ops", "multihop_accuracy": "{} hop"}


def spec_frame(names=None):
    """One row per zoo model: architecture, parameters, training budget."""
    import pandas as pd

    from .tokenizer import VOCAB_SIZE

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
                "steps": s.steps,
                "batch (windows)": s.data.batch_size,
                "peak lr": s.lr,
                "loss on": s.loss_on,
                "seed": s.seed,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def report_frame(names=None, percent: bool = True):
    """One row per trained zoo model: held-out loss vs unigram, accuracies per level / hops, time."""
    import pandas as pd

    rows = []
    for n in names or list(MODELS):
        r = report(n)
        row = {
            "params": r["params"],
            "held-out loss": round(r["heldout_loss"], 3),
            "unigram loss": round(r["unigram_loss"], 3),
            "answer loss": round(r["heldout_answer_loss"], 3),
            "answer unigram": round(r["unigram_answer_loss"], 3),
        }
        for key, fmt in _LEVEL_NAMES.items():
            for lv, acc in r[key].items():
                if lv != "all":
                    row[fmt.format(lv)] = round(100 * acc, 1) if percent else acc
        row["DM interp."] = round(100 * r["dm_accuracy"]["all"], 1) if percent else r["dm_accuracy"]["all"]
        row["train s"] = r["train_seconds"]
        rows.append({"model": n, **row})
    return pd.DataFrame(rows).set_index("model")


def plot_loss_curves(names=None, ax=None):
    """Training loss (all tokens, mean over each logging interval) against step, one line per model."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for n in names or list(MODELS):
        r = report(n)
        steps = [h["step"] for h in r["history"]]
        ax.plot(steps, [h["loss"] for h in r["history"]], label=f"{n} ({r['n_layers']} layers)")
        ax.axhline(r["heldout_loss"], ls=":", lw=0.8, color=ax.lines[-1].get_color())
    r0 = report((names or list(MODELS))[0])
    ax.axhline(r0["unigram_loss"], color="grey", ls="--", lw=1, label="unigram baseline (held-out)")
    ax.set_xlabel("Training step")
    ax.set_ylabel("Loss (nats / token)")
    ax.set_ylim(0, max(r0["unigram_loss"] * 1.15, 1))
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Zoo training loss (dotted: held-out loss after training)", fontsize=10)
    return ax.figure


def plot_accuracies(names=None):
    """Exact-match accuracy per arithmetic level and per hop count, one bar group per model."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = names or list(MODELS)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, key, title, xlabel, chance in (
        (axes[0], "arithmetic_accuracy", "Graded sums (unseen questions)", "Operations", None),
        (axes[1], "multihop_accuracy", "In-context multi-hop", "Hops", 0.1),
    ):
        reps = [report(n) for n in names]
        levels = [lv for lv in reps[0][key] if lv != "all"]
        x = np.arange(len(levels))
        w = 0.8 / len(names)
        for i, (n, r) in enumerate(zip(names, reps)):
            ax.bar(x + (i - (len(names) - 1) / 2) * w, [100 * r[key][lv] for lv in levels], w, label=n)
        if chance:
            ax.axhline(100 * chance, color="grey", ls="--", lw=1, label="chance")
        ax.set_xticks(x, levels)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("Exact match (%)")
    axes[1].legend(frameon=False, fontsize=8)
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
            f"{n}: held-out loss {r['heldout_loss']:.2f} vs unigram {r['unigram_loss']:.2f} nats/token; "
            f"multi-hop exact match {hops} (chance 10%); unseen sums {levels}; "
            f"DeepMind interpolate {100 * r['dm_accuracy']['all']:.0f}%; trained {r['steps']} steps in {r['train_seconds'] / 60:.1f} min."
        )
    return "\n".join(lines)
