"""The version of effdepth (recorded in every cached result, so a new version never reads an old one's)."""

__version__ = "0.1.0"
