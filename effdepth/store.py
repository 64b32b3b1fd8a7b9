"""Results on disk, keyed by what made them, written atomically, verified when read.

A key hashes (model id and revision, measurement name, parameters, data sample, package version).
Each entry is one `.npz` (arrays) with a `.json` manifest beside it that records the key's
ingredients and the SHA-256 of the `.npz`. A file whose hash does not match, that cannot be
parsed, or whose manifest records another key (an entry copied over this one), is reported, moved
aside to `*.damaged`, and recomputed: never silently read. A cache folder that cannot be written is
one `CacheNotWritable` error saying how to point the cache elsewhere or run without it.

Per-example caching (`Store.map`) is what makes a long run resumable: each example's partial result
is its own entry, so a run that dies recomputes only the examples it had not finished.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir
from tqdm.auto import tqdm

from effdepth.errors import CacheNotWritable, DamagedEntry
from effdepth.version import __version__

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """`$EFFDEPTH_CACHE`, else the user cache dir (e.g. ~/.cache/effdepth)."""
    env = os.environ.get("EFFDEPTH_CACHE")
    if env:
        return Path(env).expanduser()

    return Path(user_cache_dir("effdepth"))


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def digest(obj) -> str:
    """A stable short hash of any JSON-able description (a data sample, a parameter dict)."""
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()[:20]


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Store:
    """A content-addressed result cache under `root` (default `cache_root()/results`)."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else cache_root() / "results"
        self.enabled = enabled

    # -- keys ----------------------------------------------------------------
    def key(self, measurement: str, model_identity: dict, params: dict, data) -> str:

        ingredients = {
            "measurement": measurement,
            "model": model_identity.get("model"),
            "revision": model_identity.get("revision"),
            "dtype": model_identity.get("dtype"),
            "params": params,
            "data": digest(data),
            "version": __version__,
        }
        return f"{measurement}/{digest(ingredients)}"

    def _paths(self, key: str) -> tuple[Path, Path]:
        base = self.root / key
        return base.with_suffix(".npz"), base.with_suffix(".json")

    # -- read / write ----------------------------------------------------------
    def save(self, key: str, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        if not self.enabled:
            return
        npz, manifest = self._paths(key)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        data = buf.getvalue()
        record = {"key": key, "sha256": hashlib.sha256(data).hexdigest(), "meta": meta or {}}
        try:
            atomic_write(npz, data)
            atomic_write(manifest, json.dumps(record, indent=1, default=str).encode())
        except OSError as err:
            raise CacheNotWritable(
                f"cannot write the result cache at {self.root} ({err.strerror or err}): make it writable, "
                f"set EFFDEPTH_CACHE=<a writable folder>, or set EFFDEPTH_NO_CACHE=1 to run without a cache "
                f"(no reuse, no resume)."
            ) from None

    def load(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """(arrays, meta), or None when absent. Raises DamagedEntry when the bytes are wrong."""
        if not self.enabled:
            return None
        npz, manifest = self._paths(key)
        if not npz.exists() or not manifest.exists():
            return None
        try:
            record = json.loads(manifest.read_text())
            if record.get("key") != key:
                raise DamagedEntry(
                    f"{manifest} records key {record.get('key')!r}, not {key!r} (copied from another entry?)"
                )
            data = npz.read_bytes()
            if hashlib.sha256(data).hexdigest() != record["sha256"]:
                raise DamagedEntry(f"checksum mismatch for {npz}")
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return arrays, record.get("meta", {})
        except DamagedEntry:
            raise
        except Exception as err:  # truncated zip, bad JSON, …
            raise DamagedEntry(f"cannot read {npz}: {err}") from err

    def _quarantine(self, key: str, err: Exception) -> None:
        warnings.warn(f"Damaged cache entry {key} ({err}); moved aside and recomputing.", stacklevel=3)
        for p in self._paths(key):
            if p.exists():
                try:
                    os.replace(p, p.with_name(p.name + ".damaged"))
                except OSError:  # an unwritable cache: the recomputed entry's save says so
                    pass

    def get_or_compute(self, key: str, compute: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
        """Read `key`, or run `compute()` -> (arrays, meta), save it, and return it."""
        try:
            hit = self.load(key)
        except DamagedEntry as err:
            self._quarantine(key, err)
            hit = None
        if hit is not None:
            return hit
        arrays, meta = compute()
        self.save(key, arrays, meta)
        return arrays, meta

    def map(
        self,
        key_prefix: str,
        items: Iterable,
        compute: Callable[[object], dict],
        item_id: Callable[[object], object] = lambda x: x,
        progress: str | None = None,
    ) -> list[dict]:
        """Per-item cached computation: `compute(item) -> arrays`, one entry per item (resumable)."""

        items = list(items)
        out = []
        quiet = progress is None or len(items) < 2 or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        for item in tqdm(items, desc=progress, disable=quiet, leave=False):
            key = f"{key_prefix}/{digest(item_id(item))}"
            arrays, _ = self.get_or_compute(key, lambda: (compute(item), {}))  # noqa: B023  (called within this loop step)
            out.append(arrays)
        return out


_default: Store | None = None


def caching_enabled() -> bool:
    """False when `EFFDEPTH_NO_CACHE` is set (to anything but 0): nothing is read from or written to the cache."""
    return os.environ.get("EFFDEPTH_NO_CACHE", "0") in ("0", "")


def default_store() -> Store:
    """The process-wide store; `EFFDEPTH_NO_CACHE=1` turns caching off."""
    global _default
    if _default is None or _default.root != cache_root() / "results":
        _default = Store(enabled=caching_enabled())
    return _default
