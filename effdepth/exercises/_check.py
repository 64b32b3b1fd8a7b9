"""What every exercise check shares: run the student's function on a few cases, compare each output
with the package's reference, and, where an output matches a known wrong variant, say which mistake
it is and how to fix it.

A case holds the arguments, the reference outputs ({name: array}) and the known mistakes
({key: {name: wrong array}}); the hints are {key: sentence}. An output is "right" when it agrees
with the reference to `rtol`/`atol`; a wrong output is attributed to the first mistake whose
variant of that output agrees with it to the same tolerance.
"""

from __future__ import annotations

import html
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Feedback:
    """The answer of a check: `passed`, the `mistake` key it recognised (None when it passed or
    when the error is not one it knows), and `message`, what to do about it."""

    exercise: str
    passed: bool
    message: str
    mistake: str | None = None
    mistakes: list[str] = field(default_factory=list)  # every mistake recognised (several outputs may be wrong)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'PASSED' if self.passed else 'NOT YET'} · {self.exercise}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, word = ("#1a7f37", "✔ Passed") if self.passed else ("#b35900", "✘ Not yet")
        body = html.escape(self.message).replace("\n", "<br>")
        return f'<div style="border-left:4px solid {colour};padding:4px 10px"><b style="color:{colour}">{word}</b> · <code>{html.escape(self.exercise)}</code><br>{body}</div>'


class KnownMistake(Exception):
    """Raised by a check's wrapper around the student's function when the returned value itself
    shows a known mistake (e.g. a transposed matrix): judge answers with its key and hint."""

    def __init__(self, key: str, hint: str):
        super().__init__(hint)
        self.key, self.hint = key, hint


@dataclass
class Case:
    label: str  # says which input, in the feedback ("layer 2 of 'The cat sat …'")
    args: tuple
    reference: dict[str, np.ndarray]
    mistakes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def as_outputs(value, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The student's return value as {name: float64 array}: a dict with these keys, a tuple/list in
    this order, or (one name) a bare number or array. Raises TypeError (one line) otherwise."""
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        if missing:
            raise TypeError(f"the returned dict lacks {', '.join(map(repr, missing))} (expected keys: {', '.join(names)})")
        items = [value[n] for n in names]
    elif isinstance(value, (tuple, list)) and len(names) > 1:
        if len(value) != len(names):
            raise TypeError(f"returned {len(value)} values, expected {len(names)}: ({', '.join(names)})")
        items = list(value)
    elif len(names) == 1:
        items = [value]
    else:
        raise TypeError(f"expected a dict with keys {', '.join(names)} (or a tuple in that order), got {type(value).__name__}")
    out = {}
    for n, v in zip(names, items):
        if hasattr(v, "detach"):
            v = v.detach().cpu().double().numpy()
        out[n] = np.asarray(v, dtype=np.float64)
    return out


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def _show(x: np.ndarray) -> str:
    return np.array2string(np.asarray(x), precision=4, threshold=8, edgeitems=3, suppress_small=True).replace("\n", " ")


_CASES: dict = {}


def cached_cases(key: str, build: Callable[[], list[Case]]) -> list[Case]:
    """The cases of one check on one model, built once per process (references cost forward passes)."""
    if key not in _CASES:
        _CASES[key] = build()
    return _CASES[key]


def judge(exercise: str, fn: Callable, cases: list[Case], hints: dict[str, str], names: tuple[str, ...], rtol: float = 1e-3, atol: float = 1e-5, shape_hints: Callable | None = None) -> Feedback:
    """Run `fn(*case.args)` on every case; the first case with a wrong output decides the feedback.

    shape_hints(name, got_shape, expected_shape) may return (mistake key, hint) for a shape mistake
    it recognises (e.g. a transposed matrix)."""
    for case in cases:
        args = tuple(a.clone() if hasattr(a, "clone") else a.copy() if isinstance(a, np.ndarray) else a for a in case.args)  # a student's in-place edit stays theirs
        try:
            got = fn(*args)
        except KnownMistake as known:
            return Feedback(exercise, False, f"on {case.label}: {known.hint}", known.key, [known.key])
        except NotImplementedError:
            return Feedback(exercise, False, "not implemented yet: replace the `raise NotImplementedError` with your code and run the check again.", "not_implemented", ["not_implemented"])
        except Exception as err:  # the student's bug, shown as the line that raised it
            where = traceback.extract_tb(err.__traceback__)[-1]
            return Feedback(exercise, False, f"your function raised {type(err).__name__}: {err} (line {where.lineno}: `{(where.line or '').strip()}`) on {case.label}.", "error", ["error"])
        try:
            out = as_outputs(got, names)
        except TypeError as err:
            return Feedback(exercise, False, f"{err}.", "format", ["format"])
        lines, found = [], []
        for name in names:
            ref, val = case.reference[name], out[name]
            if _close(val, ref, rtol, atol):
                continue
            if val.shape != ref.shape:
                known = shape_hints(name, val.shape, ref.shape) if shape_hints else None
                if known:
                    found.append(known[0])
                    lines.append(f"{name}: {known[1]}")
                else:
                    found.append("shape")
                    lines.append(f"{name} has shape {list(val.shape)}, expected {list(ref.shape)}.")
                continue
            key = next((k for k, variant in case.mistakes.items() if name in variant and not _close(variant[name], ref, rtol, atol) and _close(val, variant[name], rtol, atol)), None)
            if key:
                if key not in found:
                    found.append(key)
                    lines.append(hints[key])
            else:
                lines.append(f"{name} on {case.label}: got {_show(val)}, expected {_show(ref)}. It matches none of the common mistakes this check knows; compare your steps with the definition above.")
        if lines:
            return Feedback(exercise, False, f"on {case.label}: " + "\n".join(lines), found[0] if found else None, found)
    return Feedback(exercise, True, f"all {len(cases)} cases agree with the reference implementation in effdepth.")
