"""Every exercise notebook of the course runs top to bottom: the exercise cell answers "not
implemented yet", the solution is collapsed and passes its check, the static page has a figure
where JupyterLab has a widget; the book gets every course page (executed or a placeholder)."""

import nbformat
import pytest

from effdepth.exercises import course


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.slow
@pytest.mark.parametrize("name", [c[0] for c in course.COURSE])
def test_exercise_notebook_runs_top_to_bottom(name, tmp_path):
    times = course.run_course(out=tmp_path, names=[name], progress=False)
    assert list(times) == [name]
    nb = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    outputs = _outputs(nb)
    assert not any(o.get("output_type") == "error" for o in outputs)
    html = [str(o.get("data", {}).get("text/html", "")) for o in outputs]
    assert sum("not implemented yet" in h for h in html) == 1  # the student's cell, as a student first sees it
    assert sum("✔ Passed" in h for h in html) >= 1 and not any(
        "✘ Not yet" in h and "not implemented" not in h for h in html
    )
    assert any(h.startswith("<details") for h in html)  # the solution, collapsed
    assert any(
        "image/png" in o.get("data", {}) for o in outputs
    )  # every notebook ends with a figure or a table of the package's measurement
    assert not any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs
    )  # static page: figures, no empty widgets
    exercise = next(c for c in nb.cells if c.cell_type == "code" and "raise NotImplementedError" in c.source)
    assert "remove-input" not in exercise.metadata.get("tags", [])  # the exercise cell is visible and editable
    assert course.run_course(out=tmp_path, names=[name], progress=False) == {name: 0.0}  # an up-to-date copy is reused


def test_the_book_gets_a_page_for_every_exercise_even_before_the_course_ran(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# executed"))
    nbformat.write(nb, runs / "2_skip.ipynb")
    course.prepare_for_book(tmp_path / "site", runs=runs)
    pages = sorted(p.stem for p in (tmp_path / "site" / "book" / "course").glob("*.ipynb"))
    assert pages == sorted(c[0] for c in course.COURSE)
    assert "executed" in (tmp_path / "site" / "book" / "course" / "2_skip.ipynb").read_text()
    assert "make class" in (tmp_path / "site" / "book" / "course" / "3_lens.ipynb").read_text()


def test_every_course_notebook_is_in_the_toc_and_the_teachers_page_names_each():
    from effdepth.running import ROOT

    toc = (ROOT / "_toc.yml").read_text()
    teachers = (ROOT / "book" / "course" / "teachers.md").read_text()
    for name, _, _ in course.COURSE:
        assert f"book/course/{name}" in toc and f"({name})" in teachers
        assert (course.COURSE_NOTEBOOKS / f"{name}.md").exists()
    assert "book/course/teachers" in toc
