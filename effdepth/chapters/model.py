"""The model page's reasoning: how far the model is from the paper's, and what it can do.

`scale_table` sets the model's size beside the paper's main model (Llama 3.1 70B); `accuracy_findings`
turns an `effdepth.accuracy.accuracy_table` into sentences: per prompt set, the levels it answers
above chance and those where it is at chance (a one-sided binomial test cannot tell its accuracy from
guessing). A level at chance cannot show whether harder problems use more depth (§3.3): the model
does not solve them, so its depth there is the depth of a failed attempt.
"""

from __future__ import annotations

import pandas as pd

from effdepth.chapters import Findings

# The paper's main model (Llama 3.1 70B: Meta's published config.json, 70.6 B parameters).
PAPER_MODEL = {
    "model": "Llama 3.1 70B (the paper's main model)",
    "layers": 80,
    "d_model": 8192,
    "parameters": 70.6e9,
    "vocabulary": 128256,
}


def scale_table(name: str, n_layers: int, d_model: int, n_params: int, vocab: int) -> pd.DataFrame:
    """This model's size beside the paper's main model, with the ratio (paper / this)."""
    mine = {"model": name, "layers": n_layers, "d_model": d_model, "parameters": float(n_params), "vocabulary": vocab}
    rows = [mine, PAPER_MODEL]
    ratio = {"model": "paper / this"} | {
        k: PAPER_MODEL[k] / mine[k] for k in ("layers", "d_model", "parameters", "vocabulary")
    }
    df = pd.DataFrame(rows + [ratio]).set_index("model")
    return df


def _levels(levels: list) -> str:
    """'1', '1–3' for a run of consecutive levels, '1, 3' otherwise."""
    levels = sorted(levels)
    if len(levels) > 2 and levels == list(range(levels[0], levels[-1] + 1)):
        return f"{levels[0]}–{levels[-1]}"
    return ", ".join(str(v) for v in levels)


def set_list(sets: dict) -> str:
    """The prompt sets of the run, for the run-info table."""
    return ", ".join(sets)


def accuracy_findings(table: pd.DataFrame, units: dict[str, str] | None = None) -> Findings:
    """Per set (rows of `accuracy_table`: set, level, n, accuracy, chance, p, label): which levels are
    above chance and which at chance; `units` names each set's level ('steps', 'hops', …).

    numbers: n_levels, n_at_chance, and per set `<set> above` (levels above chance); verdicts:
    'any_at_chance' ('yes'/'no'), 'all_at_chance' ('yes'/'no'); text: 'accuracy_text' (one line per set) and
    'chance_text' (what a level at chance means for §3.3).
    """
    units = units or {}
    f = Findings(numbers={"n_levels": int(len(table)), "n_at_chance": int((table["label"] == "at chance").sum())})
    lines = []
    for name, rows in table.groupby("set", sort=False):
        above = rows[rows["label"] != "at chance"]
        chance = rows[rows["label"] == "at chance"]
        unit = units.get(name, "level")
        f.numbers[f"{name} above"] = int(len(above))
        acc = ", ".join(f"{100 * a:.0f} %" for a in above["accuracy"])
        parts = []
        if len(above):
            parts.append(f"above chance at {unit} {_levels(list(above['level']))} ({acc})")
        if len(chance):
            parts.append(f"**at chance** at {unit} {_levels(list(chance['level']))}")
        lines.append(f"- **{name}**: " + "; ".join(parts) + ".")
    f.verdicts["any_at_chance"] = "yes" if f.numbers["n_at_chance"] else "no"
    f.verdicts["all_at_chance"] = "yes" if f.numbers["n_at_chance"] == f.numbers["n_levels"] else "no"
    f.text["accuracy_text"] = "\n".join(lines)
    if f.numbers["n_at_chance"] == 0:
        f.text["chance_text"] = (
            "The model answers every level of every set above chance, so each difficulty axis of §3.3 is one it can climb."
        )
    elif f.verdicts["all_at_chance"] == "yes":
        f.text["chance_text"] = (
            "The model is at chance on every level of every set: no difficulty axis here can say whether harder problems use more depth; §3.3's depth scores on it describe failed attempts."
        )
    else:
        f.text["chance_text"] = (
            f"{f.numbers['n_at_chance']} of {f.numbers['n_levels']} levels are at chance. On those the model does not solve the problem, "
            "so a depth score there is the depth of a failed attempt; §3.3 labels such levels, and an axis whose levels are all at chance cannot test the paper's claim."
        )
    return f
