"""What an executed notebook states about how it ran: library versions, machine, model."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib import metadata

import pandas as pd
import torch

from effdepth.tables import header, show_table

PACKAGES = ("effdepth", "torch", "transformers", "nnsight", "datasets", "numpy", "pandas", "matplotlib", "papermill")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_info(model=None, **extra) -> dict:
    """A flat record for the run-info cell: versions, machine, date, and the model's identity."""

    info = {
        "date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    if model is not None:
        info.update(dict(model.identity().items()))
    info.update(extra)
    info.update(versions())
    return info


def run_info_table(model=None, **extra):
    """`run_info` as a two-column table (`tables.show_table`: names in words), for display at the end
    of every chapter."""

    return show_table(
        pd.DataFrame({"value": {header(k): str(v) for k, v in run_info(model, **extra).items()}}),
        missing="not recorded",
    )
