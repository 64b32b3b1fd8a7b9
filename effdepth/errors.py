"""Every error a user of effdepth can meet, in one place. Each message names what is wrong and the fix.

The modules that raise them import them from here; `effdepth` re-exports the ones a script catches.
"""

from __future__ import annotations

from pathlib import Path


# --- models -----------------------------------------------------------------------------------------
class ModelNotAvailable(RuntimeError):
    """The model cannot be loaded here: no such zoo name or folder, or a Hub id with no network."""


class BadModelFolder(ModelNotAvailable):
    """A local model folder that cannot be loaded as it is: the message names the file and what was expected."""


class UnsupportedArchitecture(ValueError):
    """The model has no adapter, or has no additive residual stream the measurements can read."""


class SameAsModel(ValueError):
    """The requested control has exactly the model's own weights (the model is itself that random init)."""


class TokenizerMismatch(ValueError):
    """Source and target models do not share a tokenizer: their residuals are not aligned by token."""


# --- inputs and data --------------------------------------------------------------------------------
class PromptError(ValueError):
    """A prompt a measurement cannot run on: not text, empty, or longer than the model's context."""


class DataError(ValueError):
    """A data file or split whose content is not what its loader expects (message: file, row, expectation)."""


class DatasetNotAvailable(RuntimeError):
    """A real dataset that is neither reachable on the Hub nor given as a local file."""


class LiveUnavailable(RuntimeError):
    """The live leaderboard data set (or a model's config) could not be read."""


# --- caches and run folders -------------------------------------------------------------------------
class DamagedEntry(RuntimeError):
    """A cache entry whose bytes do not match its manifest, that cannot be parsed, or that is another key's."""


class CacheNotWritable(RuntimeError):
    """The result cache folder cannot be written (read-only, no permission, disk full)."""


class InvalidRunFile(ValueError):
    """A run folder's file that is not of its schema; the message names the file and the fix."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run`: which chapter was interrupted and which ones finished before it."""

    def __init__(self, chapter: str, finished: dict[str, str], out: Path):
        super().__init__(chapter)
        self.chapter, self.finished, self.out = chapter, finished, out


# --- NDIF -------------------------------------------------------------------------------------------
class SandboxRefusal(ImportError):
    """The trace names a module NDIF's sandbox would refuse (the message names it)."""


class WrongDevice(RuntimeError):
    """A trace body combined tensors of different devices (the message names the op and devices)."""


class NdifUnavailable(RuntimeError):
    """NDIF cannot run this book now: unreachable, key refused, model not hosted, nnsight mismatch."""
