"""Where zoo models live: the cache folder, one folder per model, and a lock while one is trained."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

import platformdirs

from effdepth.training import is_complete
from effdepth.zoo.specs import ZooSpec, spec_of


def cache_dir() -> Path:
    """``$EFFDEPTH_CACHE`` if set, else the platform's user cache folder for effdepth."""
    env = os.environ.get("EFFDEPTH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("effdepth"))


def data_dir() -> Path:
    """Where the zoo's training and evaluation batches are cached (shared by every zoo model)."""
    return cache_dir() / "zoo" / "_data"


def folder(name_or_spec) -> Path:
    """Where a zoo model lives (whether or not it is trained yet)."""
    return cache_dir() / "zoo" / spec_of(name_or_spec).name


def is_trained(name_or_spec) -> bool:
    return is_complete(folder(name_or_spec))


def stored_spec(final: Path) -> dict:
    return json.loads((final / "report.json").read_text()).get("spec", {})


def is_current(spec: ZooSpec) -> bool:
    """Whether the model's folder is complete and was trained with exactly ``spec``."""
    return is_trained(spec) and stored_spec(folder(spec)) == json.loads(json.dumps(spec.to_dict()))


@contextmanager
def model_lock(spec: ZooSpec):
    """An exclusive lock on ``<cache>/zoo/<name>.lock`` (``fcntl.flock``) for as long as a process
    trains the model; a second process says that it waits, and waits."""
    path = folder(spec).with_name(spec.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"[effdepth] zoo model '{spec.name}' is being trained by another process (lock {path}); waiting for it.",
                flush=True,
            )
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
