"""The package installed NON-editable into a fresh venv runs a chapter from an empty folder: the run
folder is made there (effdepth/paths.py), not in the clone, and the notebooks come from the copy
shipped in the wheel (setup.py). The venv borrows this interpreter's site-packages for the
dependencies (a .pth file), so the test installs only effdepth itself: no network, about 25 s."""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from effdepth.testing import save_tiny

pytestmark = pytest.mark.slow

CLONE = Path(__file__).resolve().parents[2]
BUILD_INPUTS = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "effdepth",
    "notebooks",
    "book",
    "_config.yml",
    "_toc.yml",
)
NOT_SOURCES = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.ipynb", "_build", "*.egg-info"
)  # book/chapters/: by setup.py


def _fresh_venv(tmp: Path) -> Path:
    """A venv holding a non-editable install of a copy of the sources (built outside the clone, so the
    clone gets no build/ or egg-info), its dependencies read from this interpreter's site-packages."""
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        (
            shutil.copytree(CLONE / name, src / name, ignore=NOT_SOURCES)
            if (CLONE / name).is_dir()
            else shutil.copy2(CLONE / name, src / name)
        )
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_effdepth_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            str(src),
        ],
        check=True,
        env=_env(tmp),
    )
    return venv


def _env(tmp: Path) -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EFFDEPTH_HOME")
    }  # nothing may lead back to the clone
    return {**env, "OMP_NUM_THREADS": "1", "EFFDEPTH_CACHE": str(tmp / "cache")}


def test_installed_package_runs_a_chapter_in_an_empty_folder(tmp_path):
    venv = _fresh_venv(tmp_path)
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import effdepth, effdepth.paths as p; print(effdepth.__file__); print(p.notebooks())",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path),
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where  # the installed copy, not the clone's
    assert Path(where[1]).is_relative_to(venv) and Path(where[1], "contributions.md").exists(), (
        where
    )  # the notebooks shipped in the wheel
    model = save_tiny(tmp_path / "tiny-llama", "llama", n_layers=3)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [
            str(venv / "bin" / "effdepth"),
            "run",
            "--model",
            str(model),
            "--chapters",
            "contributions",
            "--profile",
            "small",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=_env(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    runs = work / "runs"
    assert [p.name for p in work.iterdir()] == ["runs"]  # nothing else is written in the working directory
    (out,) = runs.iterdir()
    assert f"executed notebooks in {out}" in done.stdout
    assert json.loads((out / "status.json").read_text())["runs"]["contributions"]["state"] == "ok"
    nb = nbformat.read(out / "contributions.ipynb", as_version=4)
    assert nb.metadata["papermill"]["exception"] is None and any(
        c.get("outputs") for c in nb.cells if c.cell_type == "code"
    )
    assert not (CLONE / "runs" / out.name).exists()  # the clone's runs/ got nothing
