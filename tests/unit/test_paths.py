"""effdepth.paths: the project, its notebooks and its runs are found from the working directory (or
$EFFDEPTH_HOME), never from where the package is installed."""

from pathlib import Path

import pytest

from effdepth import cli, paths


def _project(folder: Path) -> Path:
    (folder / "notebooks").mkdir(parents=True)
    (folder / "_toc.yml").write_text("format: jb-book\n")
    return folder


def test_the_project_is_the_working_directory_or_the_nearest_folder_above_it(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ENV, raising=False)
    proj = _project(tmp_path / "proj")
    (proj / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(proj / "deep" / "er")
    assert paths.project() == proj
    assert paths.notebooks() == proj / "notebooks" and paths.runs() == proj / "runs" and paths.root() == proj


def test_outside_a_project_runs_go_to_the_working_directory_and_notebooks_come_with_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.project() is None
    assert paths.runs() == tmp_path / "runs"
    assert (paths.notebooks() / "contributions.md").exists()  # the shipped copy, or this clone for an editable install
    assert not paths.notebooks().is_relative_to(tmp_path)


def test_effdepth_home_replaces_the_working_directory(tmp_path, monkeypatch):
    proj = _project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(paths.ENV, str(proj))
    assert paths.project() == proj and paths.runs() == proj / "runs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv(paths.ENV, str(elsewhere))  # no project: runs there, notebooks from the package
    assert paths.project() is None and paths.runs() == elsewhere / "runs"
    monkeypatch.setenv(paths.ENV, str(tmp_path / "missing"))
    with pytest.raises(NotADirectoryError, match="EFFDEPTH_HOME"):
        paths.home()


def test_the_book_is_built_only_in_a_project(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(paths.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["book", "--model", "zoo:default"]) == 1
    err = capsys.readouterr().err
    assert "in no project" in err and paths.ENV in err
    assert not (tmp_path / "_build").exists() and not (tmp_path / "book").exists()
