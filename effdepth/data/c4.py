"""C4 text for the linear-map chapter (paper §3.4: C4 windows of 512 tokens).

`c4_texts(n, seed)` returns up to `n` documents of `allenai/c4` (config `en`, split `validation`), read
with `datasets.load_dataset(..., streaming=True)` and shuffled with a seeded buffer, so nothing
beyond the documents used is downloaded. Offline, pass `path=` or set `$EFFDEPTH_C4` to a local
file; without either the loader fails at once with a message saying so.

Local formats: `.jsonl` / `.json` (records with a "text" field; `.gz` accepted, e.g. the Hub's
`en/c4-validation.00000-of-00008.json.gz`), or `.txt` (documents separated by blank lines).
A local sample is drawn with `seed` (a random sample, not the first `n`; methods page §8).
"""

from __future__ import annotations

import os

from effdepth.access import hub as hf_hub
from effdepth.data.rows import (
    DataError,
    DatasetNotAvailable,
    Field,
    Schema,
    check_path,
    check_rows,
    read_rows,
    read_text,
    sample,
)

HUB = ("allenai/c4", "en", "validation")
ENV = "EFFDEPTH_C4"
SCHEMA = Schema("C4", (Field("text", str, "the document, a string"),))


def read_local(path: str | os.PathLike) -> list[str]:
    """All documents of a local C4 file (see the module docstring for the formats); a file that is
    not one of them, or whose rows have no "text", is a `DataError` naming the file and the row."""
    path = check_path("C4", path, ".jsonl/.json(.gz) or .txt")
    stem = path.name.removesuffix(".gz")
    if stem.endswith(".txt"):
        docs = [d.strip() for d in read_text("C4", path).split("\n\n")]
    elif stem.endswith(".jsonl") or stem.endswith(".json"):
        docs = [r["text"] for r in check_rows(read_rows("C4", path), SCHEMA).rows]
    else:
        raise DataError(f"C4 file {path}: not a .jsonl/.json(.gz) or .txt file.")
    docs = [d for d in docs if d]
    if not docs:
        raise DataError(f"C4 file {path}: holds no documents.")
    return docs


def c4_texts(
    n: int = 256, seed: int = 0, path: str | os.PathLike | None = None, buffer_size: int = 10_000
) -> list[str]:
    """Up to `n` C4 documents: a seeded sample of a local file (`path` or `$EFFDEPTH_C4`), else the Hub.

    "Up to": documents are raw text for windows, and a caller that needs more (`chapters.linear_maps.texts_for_windows`)
    asks again with a larger `n` and learns from a shorter list that the file is exhausted; the
    number that matters, windows, is reported by the chapter.

    Raises `DatasetNotAvailable` when neither a local file is given nor the Hub can be reached.
    """
    path = path or os.environ.get(ENV)
    if path:
        docs = read_local(path)
        up_to = len(docs) if isinstance(n, int) and n > len(docs) else n  # "up to n"; sample() refuses n < 1
        return [docs[i] for i in sample(len(docs), up_to, seed, f"C4 file {path}")]

    if not hf_hub.reachable():
        raise DatasetNotAvailable(
            f"C4 is not available offline: the Hugging Face Hub cannot be reached. Download a shard of "
            f"`{HUB[0]}` ({HUB[1]}, {HUB[2]}, e.g. en/c4-validation.00000-of-00008.json.gz) on a "
            f"connected machine and pass it with path=... or ${ENV}."
        )
    import datasets

    try:
        stream = datasets.load_dataset(HUB[0], HUB[1], split=HUB[2], streaming=True).shuffle(
            seed=seed, buffer_size=buffer_size
        )
        return [row["text"] for row, _ in zip(stream, range(n))]
    except Exception as err:  # network errors, changed repositories, …
        raise DatasetNotAvailable(f"C4: streaming {HUB[0]} failed ({err}). Use path=... or ${ENV}.") from err
