"""Rows of a data file, checked against the data set's schema in one place.

Every loader of a file (GSM8K, MATH, MQuAKE, C4) reads it with `read_rows` and checks it with
`check_rows` against a `Schema`: the fields a row must have, their types and any rule on their
values. Anything else — a path that is a directory, a line that is not JSON, a missing field, a
GSM8K answer without its '#### <final answer>' line, an empty file, asking for more rows than
exist — is one `DataError` whose message names the file, the row (1-based line of a .jsonl,
1-based item of a .json array, 1-based row of a Hub split) and what was expected.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from effdepth.errors import DataError, DatasetNotAvailable


@dataclass(frozen=True)
class Field:
    """One field a row must have.

    path: the field's name, dotted for nested objects ('orig.triples'); kind: the JSON type(s) it
    must have; expect: what it should hold, in words (goes into the message); rule: an extra check
    of the value that returns what is wrong with it, or None when it is fine.
    """

    path: str
    kind: type | tuple[type, ...]
    expect: str
    rule: Callable[[object], str | None] | None = None


@dataclass(frozen=True)
class Schema:
    """What a data set's rows look like: `name` (as messages call it) and its `fields`."""

    name: str
    fields: tuple[Field, ...]

    def problem(self, row) -> str | None:
        """What is wrong with one row, or None."""
        if not isinstance(row, dict):
            return f"expected a JSON object with fields {', '.join(repr(f.path) for f in self.fields)}, got {_json_type(row)}"
        for f in self.fields:
            value, at = row, []
            for part in f.path.split("."):
                if not isinstance(value, dict) or part not in value:
                    have = ", ".join(repr(k) for k in value) if isinstance(value, dict) and value else "no fields"
                    if not at:
                        return f"no field '{f.path}' ({f.expect}); the row has {have}"
                    inner = (
                        f"has no '{part}' (it has {have})"
                        if isinstance(value, dict)
                        else f"is {_json_type(value)}, not an object"
                    )
                    return f"no field '{f.path}' ({f.expect}); '{'.'.join(at)}' {inner}"
                value = value[part]
                at.append(part)
            if not isinstance(value, f.kind) or isinstance(value, bool) and bool not in _kinds(f.kind):
                return f"field '{f.path}' is {_json_type(value)}, expected {f.expect}"
            wrong = f.rule(value) if f.rule else None
            if wrong:
                return f"field '{f.path}': {wrong}"
        return None


@dataclass
class Rows:
    """The rows of one source with where each came from (`where[i]`: 'line 17', 'item 3', 'row 5')."""

    source: str  # "gsm8k file /x/test.jsonl", "GSM8K (openai/gsm8k main, test)"
    rows: list
    where: list[str]
    file: str | None = None  # the local file the rows were read from (None: the Hub)
    sha256: str | None = None  # of that file's bytes, recorded with the results

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.rows[i]

    def error(self, i: int | None, what: str) -> DataError:
        return DataError(f"{self.source}{'' if i is None else ', ' + self.where[i]}: {what}")


def _kinds(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _json_type(value) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def read_text(name: str, path: Path) -> str:
    """The text of a file (gunzipped when it ends in .gz); unreadable or non-UTF-8 content is a `DataError`."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as fh:
            return fh.read()
    except (UnicodeDecodeError, OSError, EOFError) as err:
        raise DataError(f"{name} file {path}: cannot be read as UTF-8 text ({err}).") from None


def check_path(name: str, path: str | Path, formats: str = ".jsonl or .json") -> Path:
    """`path` as a Path that is a file: a missing path is `DatasetNotAvailable`, a directory a `DataError`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetNotAvailable(f"{name}: no file at {path}.")
    if path.is_dir():
        inside = sorted(
            p.name
            for p in path.iterdir()
            if p.is_file() and p.name.split(".", 1)[-1] in ("jsonl", "json", "jsonl.gz", "json.gz", "txt")
        )
        hint = f" (it holds {', '.join(inside[:4])})" if inside else ""
        raise DataError(f"{name} file {path}: is a directory{hint}; expected the {formats} file itself.")
    return path


def read_rows(name: str, path: str | Path) -> Rows:
    """All rows of a .jsonl file (one JSON object a line, blank lines skipped) or of a .json file
    holding an array of objects; `.gz` compressed files too. Malformed JSON and a file without
    rows are a `DataError` naming the file (and the line)."""
    path = check_path(name, path)
    source = f"{name} file {path}"
    text = read_text(name, path)
    if text.lstrip()[:1] == "[":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{source}, line {err.lineno}: not valid JSON ({err.msg}, column {err.colno}); expected a JSON array of objects."
            ) from None
        out = Rows(source, rows, [f"item {i + 1}" for i in range(len(rows))])
    else:
        rows, where = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{source}, line {n}: not valid JSON ({err.msg}, column {err.colno}); expected one JSON object per line."
                ) from None
            where.append(f"line {n}")
        out = Rows(source, rows, where)
    out.file, out.sha256 = str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if not out.rows:
        raise DataError(
            f"{source}: holds no rows; expected one JSON object per line (.jsonl) or a JSON array of objects (.json)."
        )
    return out


def check_rows(rows: Rows, schema: Schema) -> Rows:
    """`rows` unchanged when every row fits `schema`; else a `DataError` for the first row that does not."""
    if not rows.rows:
        raise rows.error(None, "holds no rows.")
    for i, row in enumerate(rows.rows):
        wrong = schema.problem(row)
        if wrong:
            raise rows.error(i, wrong)
    return rows


def sample(n_rows: int, n: int | None, seed: int, what: str) -> list[int]:
    """A seeded random sample of `n` of `n_rows` row indices (methods page §8: random, not the first N),
    in sample order; `n=None` is all rows. More than `n_rows` is a `DataError` saying how many
    there are (`what` names them: "GSM8K file /x/test.jsonl has 1319 rows")."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive whole number of rows, or None for all of them; got {n!r}.")
    if n is not None and n > n_rows:
        raise DataError(
            f"{what}: asked for n={n}, but there are only {n_rows}. Pass n={n_rows} or fewer (n=None takes all {n_rows})."
        )
    idx = list(range(n_rows))
    random.Random(seed).shuffle(idx)
    return idx if n is None else idx[:n]
