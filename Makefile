# Two entry points for a fresh machine (Python 3.11, no GPU, no Hub access):
#   make book   install, train the zoo if not cached, execute every chapter, build the HTML book
#   make test   install, then the test suite
#   make class  install, then make every exercise notebook of the course runnable (book/course/teachers.md)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= zoo:default
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip on some machines lists find-links folders that do not exist; drop that noise, keep errors.
QUIET  := 2>&1 | { grep -v "^WARNING: Location '" || true; }

.PHONY: install book run html test bench zoo clean class course

$(BIN)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt $(QUIET)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt $(QUIET)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e . $(QUIET)
	touch $@

install: $(BIN)/.installed

zoo: install
	$(BIN)/effdepth zoo train

run: zoo
	$(BIN)/effdepth run --model $(MODEL)

html: install
	$(BIN)/effdepth book --model $(MODEL)

# Render even when a chapter failed (its page shows the error), but exit non-zero then.
book: zoo course
	$(BIN)/effdepth run --model $(MODEL); status=$$?; $(BIN)/effdepth book --model $(MODEL) && exit $$status

# The exercise notebooks, executed once into runs/course/ (for the book; reused while unchanged).
course: install
	$(BIN)/python -m effdepth.exercises.course

# A class: the course's notebooks as .ipynb for JupyterLab (a student's existing copy is never
# overwritten), each executed once here to prove it runs on this machine.
class: course
	@for f in notebooks/course/*.md; do test -e "$${f%.md}.ipynb" || $(BIN)/jupytext --quiet --to ipynb "$$f"; done
	@echo "Ready: .venv/bin/jupyter lab notebooks/course/   (teacher page: book/course/teachers.md)"

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/effdepth bench

clean:
	rm -rf _build runs book/chapters
