"""Where the project's files are: the chapters' notebooks, the runs, and the book's sources.

One place decides, from the working directory (or the folder named by $EFFDEPTH_HOME), never from
where the package happens to be installed:

- the *home* folder is $EFFDEPTH_HOME when it is set, else the working directory;
- the *project* is the home folder, or the nearest folder above it, that holds `_toc.yml` and
  `notebooks/` (a clone of this repository); there, and only there, `effdepth book` builds the site;
- runs go to `<project>/runs/`, or `<home>/runs/` outside any project (an `effdepth run` started in
  an empty folder writes its run folder there, never into the clone the package came from);
- the notebooks and the book's sources (`book/`, `_config.yml`, `_toc.yml`) are the project's own;
  outside a project they are the copy shipped inside the installed package (`effdepth/project/`,
  written by setup.py's build step into every wheel), and for an editable install with no shipped
  copy, the clone the package is imported from.

Every function reads the environment when it is called. effdepth.running keeps module-level copies
(`ROOT`, `NOTEBOOKS`, `RUNS`) made when it is imported, which tests replace.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ENV = "EFFDEPTH_HOME"
MARKERS = ("_toc.yml", "notebooks")  # what makes a folder a project
SHIPPED = "project"  # effdepth/project/: the copy of notebooks/, book/, _config.yml, _toc.yml in a wheel


def home() -> Path:
    """$EFFDEPTH_HOME when set (it must be a folder), else the working directory."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return Path.cwd()
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{ENV}={value} is not a folder: point it at a clone of the project, or at the folder that should hold runs/ (or unset it to use the working directory)."
        )
    return folder.resolve()


def is_project(folder: Path) -> bool:
    return all((Path(folder) / m).exists() for m in MARKERS)


def project() -> Path | None:
    """The project folder (home or the nearest folder above it holding _toc.yml and notebooks/), or
    None when the home folder is in no project."""
    start = home()
    return next((f for f in (start, *start.parents) if is_project(f)), None)


def shipped() -> Path | None:
    """The sources shipped in the installed package (effdepth/project/), or, for an editable install
    that has none, the clone holding the package; None when neither exists."""
    package = Path(str(resources.files("effdepth")))
    for folder in (package / SHIPPED, package.parent):
        if is_project(folder):
            return folder
    return None


def sources() -> Path:
    """The folder whose notebooks/, book/, _config.yml and _toc.yml are used: the project, else the
    shipped copy, else (an install with neither) the home folder, where the missing notebook is then
    named by the run's plan."""
    return project() or shipped() or home()


def root() -> Path:
    """The folder the book is built in (it holds _toc.yml, book/ and gets _build/): the project, or
    the shipped sources outside any project."""
    return sources()


def notebooks() -> Path:
    """notebooks/: the chapters' MyST notebooks (course/ holds the exercises)."""
    return sources() / "notebooks"


def runs() -> Path:
    """runs/: one folder per model and device that `effdepth run` writes; in the project, else in
    the home folder."""
    return (project() or home()) / "runs"
