# Two entry points for a fresh machine (Python 3.11, no GPU, no Hub access):
#   make book   install, train the zoo if not cached, execute every chapter, build the HTML book
#   make test   install, then the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= zoo:default
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip on some machines lists find-links folders that do not exist; drop that noise, keep errors.
QUIET  := 2>&1 | { grep -v "^WARNING: Location '" || true; }

.PHONY: install book run html test bench zoo clean

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
book: zoo
	$(BIN)/effdepth run --model $(MODEL); status=$$?; $(BIN)/effdepth book --model $(MODEL) && exit $$status

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/effdepth bench

clean:
	rm -rf _build runs book/chapters
