"""What a run folder holds is data from outside the project: anyone can copy, edit or damage
runs/<slug>/status.json and runs/<slug>/<chapter>.curves.json. This module is the one way such data
enters the book and the command line:

- `validate(data, schema, path)`: the one schema check (JSON Schema, `jsonschema`) of the two files
  (`CURVES` and `STATUS` below); it raises `InvalidRunFile`, a ValueError whose one line names the
  file, where in it the problem is, and how to fix it. Readers catch it and leave that file out
  with a visible note, never a traceback.
- `md(value)`: the one escaping function for every string from a run folder that reaches a page
  (a model name, a title, an axis label, a chapter state, a run folder's name): one line, every
  Markdown / MyST / HTML markup character backslash-escaped, so it renders as the text it is.
- `mpl(value)`: the same string as matplotlib draws it (no mathtext, one line).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from effdepth.errors import InvalidRunFile

# -- the schemas --------------------------------------------------------------------------------

_FLOAT_MAX = 1.7e308  # larger numbers (a huge JSON int) do not fit a float
_NUMBER = {"type": ["number", "null"], "minimum": -_FLOAT_MAX, "maximum": _FLOAT_MAX}
_NUMBERS = {"type": "array", "items": _NUMBER, "maxItems": 100_000}
_TEXT = {"type": "string", "maxLength": 500}
KEY = r"^[A-Za-z0-9_-]{1,120}$"  # a curve key becomes part of a file name: no '/', no '.', no space

# The environment variable `effdepth run` sets for a chapter's kernel: where `curves.save` writes its curves
CURVES_ENV = "EFFDEPTH_CURVES"

CURVES = {
    "type": "object",
    "required": ["model", "n_layers", "curves"],
    "properties": {
        "model": _TEXT,
        "n_layers": {"type": "integer", "minimum": 1, "maximum": 100_000},
        "chapter": _TEXT,
        "curves": {
            "type": "object",
            "propertyNames": {"pattern": KEY},
            "additionalProperties": {
                "type": "object",
                "required": ["x", "y", "xlabel", "ylabel"],
                "properties": {
                    "x": _NUMBERS,
                    "y": _NUMBERS,
                    "control": _NUMBERS,
                    "xlabel": _TEXT,
                    "ylabel": _TEXT,
                    "title": _TEXT,
                    "depth": {"enum": ["layer", "residual", None]},
                },
            },
        },
    },
}

_RECORD = {
    "type": "object",
    "properties": {
        "state": _TEXT,
        "finished": {"type": "string", "maxLength": 64},
        "seconds": {"type": ["number", "null"], "minimum": 0, "maximum": _FLOAT_MAX},
        "parameters": {"type": ["object", "null"]},
        "last_ok": {
            "type": ["object", "null"],
            "properties": {
                "finished": {"type": ["string", "null"], "maxLength": 64},
                "parameters": {"type": ["object", "null"]},
            },
        },
    },
}
STATUS = {
    "type": "object",
    "properties": {
        "model": _TEXT,
        "chapters": {"type": "object", "propertyNames": {"pattern": KEY}, "additionalProperties": _TEXT},
        "runs": {"type": "object", "propertyNames": {"pattern": KEY}, "additionalProperties": _RECORD},
    },
}


def validate(data, schema: dict, path: str | Path, fix: str = "") -> None:
    """Raise InvalidRunFile (one line: the file, the first place in it that breaks `schema`, and
    `fix`) unless `data` is of `schema`; also the cross-field rule of curves (x, y, control of one
    length)."""

    error = best_match(Draft202012Validator(schema).iter_errors(data))
    problem = None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        problem = f"at {where}: {error.message}"
    elif schema is CURVES:
        for name, c in data["curves"].items():
            if len(c["x"]) != len(c["y"]) or ("control" in c and len(c["control"]) != len(c["y"])):
                problem = f"at curves/{name}: x, y (and control) have different lengths"
                break
    if problem:
        problem = " ".join(problem.split())
        problem = problem[:200] + ("…" if len(problem) > 200 else "")
        raise InvalidRunFile(
            f"{path} is not a valid {Path(path).name.split('.', 1)[-1] if schema is CURVES else 'status.json'} file ({problem}){'; ' + fix if fix else ''}."
        )


def read_json(path: str | Path, schema: dict, fix: str = ""):
    """The JSON file `path` checked against `schema`; None when absent; InvalidRunFile (naming the
    file) when it is unreadable, not JSON, or not of the schema."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidRunFile(
            f"{path} cannot be read ({type(err).__name__}: {err}){'; ' + fix if fix else ''}."
        ) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise InvalidRunFile(
            f"{path} is not JSON ({' '.join(str(err).split())[:120]}){'; ' + fix if fix else ''}."
        ) from None
    validate(data, schema, path, fix)
    return data


# -- strings on pages ---------------------------------------------------------------------------

# Markdown / MyST / HTML markup: emphasis, code, roles and directives ({name}, ``` and :::), links and
# images, raw HTML and entities, headings, quotes, tables, math ($), strike-through, backslashes.
_MARKUP = re.compile(r"([\\`*_{}\[\]<>()#!|$&~^=]|:(?=:))")


def md(value, limit: int = 300) -> str:
    """`value` as plain text inside a Markdown (MyST) page: one line (no block can start in it),
    at most `limit` characters, every markup character backslash-escaped."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return _MARKUP.sub(r"\\\1", text)


def mpl(value, limit: int = 200) -> str:
    """`value` as matplotlib text: one line, no mathtext ($ escaped)."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.replace("$", r"\$")
