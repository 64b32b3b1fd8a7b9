"""The build step that ships the book's sources inside the wheel (the rest is in pyproject.toml).

A non-editable install (`pip install .`, a wheel) gets a copy of notebooks/, book/, _config.yml and
_toc.yml as effdepth/project/, so that `effdepth run` works in any folder: effdepth/paths.py reads
the notebooks from it when the working directory is in no project, and writes runs/ there. An
editable install has no copy (paths.py reads the clone instead).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("notebooks", "book", "_config.yml", "_toc.yml")  # keep in step with effdepth/paths.py
LEFT_OUT = shutil.ignore_patterns("chapters", "*.ipynb", ".ipynb_checkpoints", "__pycache__", "_build")  # build outputs


class BuildPyWithBook(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "effdepth" / "project"
        shutil.rmtree(target, ignore_errors=True)
        for name in SHIPPED:
            src = here / name
            if src.is_dir():
                shutil.copytree(src, target / name, ignore=LEFT_OUT)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / name)


setup(cmdclass={"build_py": BuildPyWithBook})
