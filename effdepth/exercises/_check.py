"""What every exercise check shares: run the student's function on a few cases, compare each output
with the package's reference, and, where an output matches a known wrong variant, say which mistake
it is and how to fix it.

A case holds the arguments, the reference outputs ({name: array}) and the known mistakes
({key: {name: wrong array}}); the hints are {key: sentence}. An output is "right" when it agrees
with the reference to `rtol`/`atol`; a wrong output is attributed to the first mistake whose
variant of that output agrees with it to the same tolerance.
"""

from __future__ import annotations

import copy
import html
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from effdepth.access.model import wrap_module


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
            raise TypeError(
                f"the returned dict lacks {', '.join(map(repr, missing))} (expected keys: {', '.join(names)})"
            )
        items = [value[n] for n in names]
    elif isinstance(value, (tuple, list)) and len(names) > 1:
        if len(value) != len(names):
            raise TypeError(f"returned {len(value)} values, expected {len(names)}: ({', '.join(names)})")
        items = list(value)
    elif len(names) == 1:
        items = [value]
    else:
        raise TypeError(
            f"expected a dict with keys {', '.join(names)} (or a tuple in that order), got {type(value).__name__}"
        )
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


LIMIT_S = 60.0  # the most one call of the student's function may take on a tiny model


class TimeLimit(BaseException):
    """The student's function ran past the check's time limit (a BaseException: a student's
    `except Exception` cannot swallow it)."""


def fresh(model):
    """A copy of an effdepth `Model` that shares nothing with it: its own weights, and no hook or
    other state a student's earlier attempt left on the original. Every check hands the student's
    function such a copy and builds its references from a model the student never sees."""

    module = copy.deepcopy(model.hf)
    for m in module.modules():  # hooks a failed attempt registered and never removed
        for hooks in (
            m._forward_hooks,
            m._forward_pre_hooks,
            m._backward_hooks,
            m._backward_pre_hooks,
            m._state_dict_hooks,
            m._load_state_dict_pre_hooks,
        ):
            hooks.clear()
        for kw in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs"):
            getattr(m, kw, {}).clear()
    module.requires_grad_(False)
    return wrap_module(module, model.tokenizer, spec=model.spec)


def _isolated(arg):
    """One argument of a case as the student's function receives it: a fresh copy (a model, a tensor,
    an array), so an in-place edit or a hook stays with that attempt."""
    if hasattr(arg, "hf") and hasattr(arg, "adapter"):
        return fresh(arg)
    if hasattr(arg, "clone"):
        return arg.clone()
    return arg.copy() if isinstance(arg, np.ndarray) else arg


def call_with_limit(fn: Callable, args: tuple, seconds: float | None):
    """fn(*args), stopped with TimeLimit after `seconds` (SIGALRM in the main thread, where a notebook
    runs its cells; elsewhere the call is left running in a daemon thread and TimeLimit raised)."""
    if not seconds:
        return fn(*args)
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def stop(signum, frame):
            raise TimeLimit

        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as err:  # handed to the caller
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeLimit
    if "error" in box:
        raise box["error"]
    return box["value"]


def _student_line(fn: Callable, err: BaseException) -> traceback.FrameSummary:
    """The line of the student's own code that raised `err` (the deepest frame in the file that
    defines `fn`), not a line inside torch or effdepth."""
    frames = traceback.extract_tb(err.__traceback__)
    own = getattr(getattr(fn, "__code__", None), "co_filename", None)
    mine = [f for f in frames if f.filename == own]
    return (mine or frames)[-1]


def judge(
    exercise: str,
    fn: Callable,
    cases: list[Case],
    hints: dict[str, str],
    names: tuple[str, ...],
    rtol: float = 1e-3,
    atol: float = 1e-5,
    shape_hints: Callable | None = None,
    limit: float | None = LIMIT_S,
    student: Callable | None = None,
) -> Feedback:
    """Run `fn(*case.args)` on every case; the first case with a wrong output decides the feedback.

    Each call gets fresh copies of the case's arguments (`_isolated`: a model with its own weights
    and no hooks), so nothing an attempt did (scaled weights, a hook left behind) reaches another
    attempt or a reference, and is stopped after `limit` seconds.
    shape_hints(name, got_shape, expected_shape) may return (mistake key, hint) for a shape mistake
    it recognises (e.g. a transposed matrix). `student`: the student's own function when `fn` wraps it.
    """
    student = fn if student is None else student
    if not callable(student):
        return Feedback(
            exercise,
            False,
            f"the check needs your function itself, not a value (got a {type(student).__name__}): pass its name without parentheses, e.g. check(my_function), not check(my_function(...)).",
            "not_a_function",
            ["not_a_function"],
        )
    for case in cases:
        args = tuple(_isolated(a) for a in case.args)
        try:
            got = call_with_limit(fn, args, limit)
        except TimeLimit:
            return Feedback(
                exercise,
                False,
                f"your function did not return within {limit:g} s on {case.label} (an endless loop, or a loop over far more than the prompt's tokens?); it was stopped. Fix it and run the check again.",
                "time_limit",
                ["time_limit"],
            )
        except KnownMistake as known:
            return Feedback(exercise, False, f"on {case.label}: {known.hint}", known.key, [known.key])
        except NotImplementedError:
            return Feedback(
                exercise,
                False,
                "not implemented yet: replace the `raise NotImplementedError` with your code and run the check again.",
                "not_implemented",
                ["not_implemented"],
            )
        except Exception as err:  # the student's bug, shown as the line of their code that raised it
            where = _student_line(student, err)
            return Feedback(
                exercise,
                False,
                f"your function raised {type(err).__name__}: {err} (line {where.lineno}: `{(where.line or '').strip()}`) on {case.label}.",
                "error",
                ["error"],
            )
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
            key = next(
                (
                    k
                    for k, variant in case.mistakes.items()
                    if name in variant
                    and not _close(variant[name], ref, rtol, atol)
                    and _close(val, variant[name], rtol, atol)
                ),
                None,
            )
            if key:
                if key not in found:
                    found.append(key)
                    lines.append(hints[key])
            else:
                lines.append(
                    f"{name} on {case.label}: got {_show(val)}, expected {_show(ref)}. It matches none of the common mistakes this check knows; compare your steps with the definition above."
                )
        if lines:
            return Feedback(
                exercise, False, f"on {case.label}: " + "\n".join(lines), found[0] if found else None, found
            )
    return Feedback(exercise, True, f"all {len(cases)} cases agree with the reference implementation in effdepth.")
