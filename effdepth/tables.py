"""Every table the book shows, in one format: headers in words with units, numbers at a consistent and
honest precision, no `NaN`, no scientific notation.

    from effdepth.tables import show_table
    show_table(frame, percent=["accuracy"], missing="not measured for the control")

- **Headers**: a column or index name is looked up in `HEADERS` (e.g. `rel_attn` → "attention
  ‖a‖/‖h‖"); any other snake_case name has its underscores turned into spaces and its abbreviations
  spelt out (`src_layer` → "source layer").
- **Numbers** (`number`): whole numbers grouped by thin spaces (8 192), from a million on with a unit
  word (135 M, 70.6 B); other numbers with the decimals their column needs (`decimals`: three
  significant digits at the column's typical magnitude, at most 4 decimals) and never more than 4
  significant digits (17.11, not 17.1102); a non-zero value that would round to 0 reads "< 0.0001".
  `percent` columns hold fractions and read "30 %" (one decimal only below 10 %).
- **Missing values** read "—", and the table's caption says why (`missing`).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

MISSING = "—"
THIN = "\u2009"

HEADERS = {
    "rel_attn": "attention ‖a‖/‖h‖",
    "rel_mlp": "MLP ‖m‖/‖h+a‖",
    "rel_layer": "layer ‖a+m‖/‖h‖",
    "max_rel_attn": "max attention ‖a‖/‖h‖",
    "max_rel_mlp": "max MLP ‖m‖/‖h+a‖",
    "max_rel_layer": "max layer ‖a+m‖/‖h‖",
    "cos_attn": "cos(a, h)",
    "cos_mlp": "cos(m, h+a)",
    "cos_layer": "cos(a+m, h)",
    "cos_io": "cos(h, next h)",
    "norm_h": "‖h‖",
    "norm_attn": "‖a‖",
    "norm_mlp": "‖m‖",
    "kl": "KL to the output (nats)",
    "topk_overlap": "top-k overlap",
    "src_layer": "source layer",
    "tgt_layer": "target layer",
    "src_depth": "source relative depth",
    "tgt_depth": "target relative depth",
    "best_tgt": "best target layer",
    "best_tgt_depth": "best target relative depth",
    "relative_error": "relative error",
    "d_model": "width",
    "d_ff": "MLP width",
    "d_ff_eff": "effective MLP width",
    "params_b": "parameters (B)",
    "n_params": "parameters",
    "score_source": "source of the score",
    "std err": "std. error",
}

WORDS = {
    "rel": "relative",
    "attn": "attention",
    "mlp": "MLP",
    "src": "source",
    "tgt": "target",
    "kl": "KL",
    "ci": "CI",
    "lo": "low",
    "hi": "high",
    "io": "in/out",
    "n": "n",
    "max": "max",
    "std": "std.",
    "sd": "sd",
    "pct": "%",
    "acc": "accuracy",
    "num": "number",
}


def header(name) -> str:
    """A column or index name as the table shows it: human words, no underscores."""
    if isinstance(name, tuple):
        return " / ".join(header(n) for n in name if str(n))
    if name is None:
        return ""
    text = str(name)
    if text in HEADERS:
        return HEADERS[text]
    if "_" not in text:
        return text
    return " ".join(WORDS.get(w, w) for w in text.split("_") if w)


def decimals(values) -> int:
    """Decimals for a column of numbers: three significant digits at its typical (median) magnitude,
    between 0 and 4."""
    v = np.abs(np.asarray([x for x in values if _is_number(x)], dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return 0
    return int(np.clip(2 - math.floor(math.log10(float(np.median(v)))), 0, 4))


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _grouped(n: int) -> str:
    return f"{n:,}".replace(",", THIN)


def number(x, places: int | None = None) -> str:
    """One number as a table cell (see the module docstring); `places`: the column's decimals."""
    if x is None or (isinstance(x, (float, np.floating)) and not np.isfinite(x)):
        return MISSING
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    x = float(x)
    if abs(x) >= 1e6:
        for size, word in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
            if abs(x) >= size:
                return f"{x / size:.3g}{THIN}{word}"
    if x == int(x) and (places is None or places == 0 or abs(x) >= 10):  # a count or a layer: no decimals
        return _grouped(int(x))
    places = decimals([x]) if places is None else places
    places = min(places, max(0, 3 - math.floor(math.log10(abs(x))))) if x else places  # at most 4 significant digits
    if abs(x) >= 1000:
        return _grouped(int(round(x)))
    text = f"{x:.{places}f}"
    if x != 0 and float(text) == 0:
        smallest = f"{10**-places:.{places}f}" if places else "1"
        return f"< {smallest}" if x > 0 else f"> −{smallest}"
    return text.replace("-", "−")


def percent(x) -> str:
    """A fraction as a percentage: '30 %', '4.2 %' (one decimal only below 10 %)."""
    if x is None or not np.isfinite(float(x)):
        return MISSING
    p = 100 * float(x)
    return f"{p:.1f}{THIN}%" if 0 < abs(p) < 10 else f"{p:.0f}{THIN}%"


def _cell_text(x) -> str | None:
    """Text cells pass through, except the spellings of a missing value."""
    if isinstance(x, str):
        return MISSING if x.strip().lower() in ("nan", "none", "<na>", "", "-", "–", "—", "n/a") else x
    return None


def format_frame(frame: pd.DataFrame, percent_columns=(), places: dict | None = None) -> tuple[pd.DataFrame, bool]:
    """The frame as strings, headers in words; returns (strings, whether any value was missing)."""
    frame = frame.copy()
    out = {}
    missing = False
    for col in frame.columns:
        values = list(frame[col])
        if col in percent_columns:
            cells = [_cell_text(v) or percent(v) for v in values]
        else:
            numbers = [float(v) for v in values if _is_number(v) and np.isfinite(float(v))]
            whole = bool(numbers) and all(v == int(v) for v in numbers)  # counts stored as floats: no decimals
            col_places = (places or {}).get(col, 0 if whole else decimals(values))
            cells = [_cell_text(v) or (number(v, col_places) if _is_number(v) or v is None else str(v)) for v in values]
        missing |= MISSING in cells
        out[col] = cells
    shown = pd.DataFrame(out, index=frame.index)
    shown.columns = _renamed(frame.columns)
    shown.index = _renamed(frame.index, values=False)
    return shown, missing


def _renamed(index: pd.Index, values: bool = True) -> pd.Index:
    names = [header(n) if n is not None else None for n in index.names]
    if not values:
        if isinstance(index, pd.MultiIndex):
            return index.set_names(names)
        if index.dtype.kind == "f":  # a float index (levels, depths): formatted like a column
            places = decimals(index)
            return pd.Index([number(v, places) for v in index], name=names[0])
        return index.set_names(names)
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(header(v) for v in t) for t in index], names=names)
    if index.dtype.kind in "iuf":  # numeric column labels (a pivot's layers): numbers, not words
        return pd.Index([number(v) for v in index], name=names[0])
    return pd.Index([header(v) for v in index], name=names[0])


def show_table(
    frame,
    percent=(),
    places: dict | None = None,
    missing: str = "not defined for this row",
    caption: str | None = None,
    index: bool = True,
    row_names: bool = False,
):
    """A DataFrame (or Series) for display in the book, formatted as the module docstring says, as a
    pandas Styler. `missing`: why a cell can be empty, said in the caption when one is; `row_names`:
    the row labels are names too (e.g. a regression's terms) and get words like the headers."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if row_names:
        frame = frame.rename(index=lambda v: header(v) if isinstance(v, str) else v)
    shown, any_missing = format_frame(frame, percent, places)
    notes = [caption] if caption else []
    if any_missing:
        notes.append(f"{MISSING}: {missing}.")
    style = shown.style
    if not index:
        style = style.hide(axis="index")
    if notes:
        style = style.set_caption(" ".join(notes))
    return style


SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")
