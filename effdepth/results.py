"""What every measurement returns, and the one driver that caches and resumes them.

A measurement is written as two pure pieces:
- `per_item(item) -> dict[str, ndarray]`: sufficient statistics of one prompt (or one batch);
- `aggregate(list_of_dicts) -> dict[str, ndarray]`: the combined arrays.
`measure()` keys the final result and every item in the `Store`, so a rerun reads the cache and an
interrupted run recomputes only the unfinished items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from effdepth.runinfo import versions
from effdepth.store import Store, default_store


@dataclass
class Result:
    """Arrays of one measurement plus what made them (`meta`: model identity, params, data, versions)."""

    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)
    measurement: ClassVar[str] = "result"

    def __getattr__(self, name):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(f"{type(self).__name__} has no '{name}' (arrays: {', '.join(arrays)})")

    @property
    def model(self) -> str:
        return self.meta.get("model", {}).get("model", "?")

    def to_frame(self) -> pd.DataFrame:  # overridden by measurements with a natural table
        return pd.DataFrame({k: v for k, v in self.arrays.items() if np.ndim(v) == 1})


def measure(
    cls: type[Result],
    model,
    items: Sequence,
    params: dict,
    per_item: Callable[[object], dict],
    aggregate: Callable[[list[dict]], dict],
    store: Store | None = None,
    item_id: Callable[[object], object] = lambda x: x,
    data_meta: dict | None = None,
    progress: bool = True,
) -> Result:
    """Run (or read from cache) `cls.measurement` on `items` and return a `cls` result."""

    store = store or default_store()
    identity = model.identity()
    ids = [item_id(it) for it in items]
    key = store.key(cls.measurement, identity, params, ids)
    meta = {"model": identity, "params": params, "n_items": len(items), "versions": versions(), **(data_meta or {})}

    def compute():
        parts = store.map(
            key + "/items", items, per_item, item_id=item_id, progress=cls.measurement if progress else None
        )
        return aggregate(parts), meta

    arrays, stored_meta = store.get_or_compute(key, compute)
    return cls(arrays=arrays, meta=stored_meta or meta)
