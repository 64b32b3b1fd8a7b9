"""The course part of the book: execute the exercise notebooks (notebooks/course/*.md) and hand
them to the book.

    python -m effdepth.exercises.course          # run every exercise notebook once, print the time of each
    python -m effdepth.exercises.course --force  # even those whose executed copy is up to date

`effdepth book` copies the executed copies into the book (book/course/), with a placeholder page
for any not executed yet. Each notebook runs on tiny random-weight models (effdepth.testing), independent of the model the
book's chapters were run for. An executed copy (runs/course/<name>.ipynb) is reused while the
notebook and the exercises package are unchanged (a digest of both is stored beside it).
"""

from __future__ import annotations

import hashlib
import resource
import shutil
import sys
import time
from pathlib import Path

from effdepth.running import COURSE_FOLDER, NOTEBOOKS, RUNS, execute

COURSE_NOTEBOOKS = NOTEBOOKS / "course"
COURSE_RUNS = RUNS / COURSE_FOLDER
# (notebook stem, title, minutes a class needs for it: reading, writing, checking, the questions)
COURSE = (
    ("1_contribution", "Exercise 1 · Relative contribution (§3.1)", 25),
    ("2_skip", "Exercise 2 · Skipping a layer (§3.2)", 30),
    ("3_lens", "Exercise 3 · The logit lens (§3.2)", 25),
    ("4_depth_score", "Exercise 4 · The depth score (§3.3)", 15),
    ("5_erasure", "Exercise 5 · Residual erasure (§3.3)", 25),
    ("6_linear_map", "Exercise 6 · The linear map (§3.4)", 20),
)


def _digest(notebook: Path) -> str:
    h = hashlib.sha256(notebook.read_bytes())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _cpu() -> float:
    """CPU seconds used so far by this process and its waited-for children (the notebook kernels)."""

    return sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )


def run_course(
    out: Path | None = None, names=None, force: bool = False, notebooks: Path | None = None, progress: bool = True
) -> dict[str, float]:
    """Execute the exercise notebooks into `out` (default runs/course/); returns {name: seconds}
    (0.0 for an up-to-date copy that was reused). A failing notebook raises papermill's error after
    its partly executed copy is written."""
    out = Path(out or COURSE_RUNS)
    src = Path(notebooks or COURSE_NOTEBOOKS)
    times = {}
    for name, _, _ in COURSE:
        if names and name not in names:
            continue
        nb, target, stamp = src / f"{name}.md", out / f"{name}.ipynb", out / f"{name}.digest"
        digest = _digest(nb)
        if not force and target.exists() and stamp.exists() and stamp.read_text() == digest:
            times[name] = 0.0
            continue
        t0, cpu0 = time.time(), _cpu()
        if progress:
            print(f"[effdepth course] {name} …", flush=True)
        stamp.unlink(missing_ok=True)
        execute(nb, target, {}, timeout=600, kernel_log=out / f"{name}.kernel.log")
        stamp.write_text(digest)
        times[name] = time.time() - t0
        if progress:  # CPU seconds: this process and its finished kernel (what an idle machine would spend)
            print(f"[effdepth course] {name}: ok ({times[name]:.0f} s wall, {_cpu() - cpu0:.0f} s CPU)", flush=True)
    return times


def prepare_for_book(root: Path, runs: Path | None = None) -> None:
    """Copy the executed exercise notebooks from `runs` (default runs/course/) to `root`/book/course/;
    a notebook not executed yet gets a page saying how to run it (`make class`), so the TOC stays whole."""
    import nbformat

    runs = Path(runs or COURSE_RUNS)
    dest = Path(root) / "book" / "course"
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.ipynb"):
        old.unlink()
    for name, title, _ in COURSE:
        if (runs / f"{name}.ipynb").exists():
            shutil.copyfile(runs / f"{name}.ipynb", dest / f"{name}.ipynb")
        else:
            nb = nbformat.v4.new_notebook()
            nb.cells.append(
                nbformat.v4.new_markdown_cell(
                    f"# {title}\n\nThis exercise notebook has not been executed for this build: run `make class` (or `python -m effdepth.exercises.course`), then build the book again. The notebook itself is `notebooks/course/{name}.md`."
                )
            )
            nbformat.write(nb, dest / f"{name}.ipynb")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    try:
        times = run_course(force="--force" in argv)
    except Exception as err:  # papermill's error names the cell; the partly executed copy is in runs/course/
        print(
            f"[effdepth course] failed: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}",
            file=sys.stderr,
        )
        return 1
    print(
        f"[effdepth course] {len(times)} exercise notebooks ready in {time.time() - t0:.0f} s; open them with: .venv/bin/jupyter lab notebooks/course/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
