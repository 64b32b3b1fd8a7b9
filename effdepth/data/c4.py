"""C4 text for the linear-map chapter (paper §3.4: C4 windows of 512 tokens).

`c4_texts(n, seed)` returns `n` documents of `allenai/c4` (config `en`, split `validation`), read
with `datasets.load_dataset(..., streaming=True)` and shuffled with a seeded buffer, so nothing
beyond the documents used is downloaded. Offline, pass `path=` or set `$EFFDEPTH_C4` to a local
file; without either the loader fails at once with a message saying so.

Local formats: `.jsonl` / `.json` (records with a "text" field; `.gz` accepted, e.g. the Hub's
`en/c4-validation.00000-of-00008.json.gz`), or `.txt` (documents separated by blank lines).
A local sample is drawn with `seed` (a random sample, not the first `n`; SPEC §8).
"""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

from .real import DatasetNotAvailable

HUB = ("allenai/c4", "en", "validation")
ENV = "EFFDEPTH_C4"


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_local(path: str | os.PathLike) -> list[str]:
    """All documents of a local C4 file (see the module docstring for the formats)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetNotAvailable(f"C4: no file at {path}.")
    stem = path.name.removesuffix(".gz")
    with _open(path) as fh:
        if stem.endswith(".txt"):
            docs = [d.strip() for d in fh.read().split("\n\n")]
        elif stem.endswith(".jsonl") or stem.endswith(".json"):
            head = fh.read(1)
            fh.seek(0)
            if head == "[":
                rows = json.load(fh)
            else:
                rows = [json.loads(line) for line in fh if line.strip()]
            docs = [r["text"] if isinstance(r, dict) else str(r) for r in rows]
        else:
            raise DatasetNotAvailable(f"C4: {path} is not a .jsonl/.json(.gz) or .txt file.")
    docs = [d for d in docs if d]
    if not docs:
        raise DatasetNotAvailable(f"C4: {path} holds no documents.")
    return docs


def c4_texts(n: int = 256, seed: int = 0, path: str | os.PathLike | None = None, buffer_size: int = 10_000) -> list[str]:
    """`n` C4 documents: a seeded sample of a local file (`path` or `$EFFDEPTH_C4`), else the Hub.

    Raises `DatasetNotAvailable` when neither a local file is given nor the Hub can be reached.
    """
    path = path or os.environ.get(ENV)
    if path:
        docs = read_local(path)
        idx = list(range(len(docs)))
        random.Random(seed).shuffle(idx)
        return [docs[i] for i in idx[:n]]
    from ..models import _hub_reachable

    if not _hub_reachable():
        raise DatasetNotAvailable(
            f"C4 is not available offline: the Hugging Face Hub cannot be reached. Download a shard of "
            f"`{HUB[0]}` ({HUB[1]}, {HUB[2]}, e.g. en/c4-validation.00000-of-00008.json.gz) on a "
            f"connected machine and pass it with path=... or ${ENV}."
        )
    import datasets

    try:
        stream = datasets.load_dataset(HUB[0], HUB[1], split=HUB[2], streaming=True).shuffle(seed=seed, buffer_size=buffer_size)
        return [row["text"] for row, _ in zip(stream, range(n))]
    except Exception as err:  # network errors, changed repositories, …
        raise DatasetNotAvailable(f"C4: streaming {HUB[0]} failed ({err}). Use path=... or ${ENV}.") from err
