# The course's two commands:  `make run` (set up, then Jupyter Lab) and `make test` (set up, then every test).
# Each step leaves a stamp in .venv/, so a second run does no work that is already done.

PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Parallel workers for the tests (pytest-xdist); notebooks are spread one file per worker.
WORKERS ?= 2
# The student edition (written by `make student`) carries tools/exercises.json; the instructor's tree carries
# instructor/. The same Makefile serves both: `make test` ends with the exercise checklist in the first.
EDITION := $(if $(wildcard tools/exercises.json),student,instructor)
REPORTS := .cache/test-reports
JUPYTER_ARGS ?=
# Jupyter refuses to start as root (containers, CI machines) unless told it may.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: run test setup data lint unit notebooks build clean-venv help git-filter chromium test-browser \
	student check-release mistakes grade grade-totals checklist \
	nbgrader-course nbgrader-submissions nbgrader-marks test-nbgrader
.DEFAULT_GOAL := help

help:
	@echo "make run    - set up everything (venv, torch $(TORCH_VERSION), project, Cython, data) and start Jupyter Lab"
	@echo "make test   - the same set-up, then the unit tests and every notebook in quick mode (nbval)"
	@echo "make lint | make unit | make notebooks | make data | make build   - the single steps"
	@echo "make test-browser [NOTEBOOKS=assignment1/Perceptron.ipynb]   - the notebooks in JupyterLab in headless Chromium"
	@echo "make check EXERCISE=affine   - one exercise's checks in seconds, with the first failure's message (no EXERCISE: the list)"
ifeq ($(EDITION),instructor)
	@echo "make student        - write the student edition to dist/student"
	@echo "make check-release  - prove the student edition sound (no leak, round trip, every exercise caught)"
	@echo "make mistakes       - inject the catalogued common mistakes: every one caught, at least 90% named"
	@echo "make grade SUBMISSION=PATH | SUBMISSIONS=DIR [SCHEDULER=tcp://host:port]   - grade one submission or a class"
	@echo "make grade-totals   - recompute the gradebook's totals after marking written answers by hand"
	@echo "make nbgrader-course OUT=DIR | nbgrader-submissions COURSE=DIR | nbgrader-marks COURSE=DIR | test-nbgrader"
	@echo "                    - written answers through nbgrader (JupyterHub, formgrader): see INSTRUCTORS.md"
endif

JUPYTER_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json $(VENV)/etc/jupyter/jupyter_server_config.py

setup: $(VENV)/.installed $(JUPYTER_SETTINGS) git-filter data

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: anything that lets pip choose would pull a newer build with GBs of CUDA packages.
$(VENV)/.torch-$(TORCH_VERSION): | $(PY)
	$(PIP) install --disable-pip-version-check -q torch==$(TORCH_VERSION)
	touch $@

# The project with its extras; `pip install -e .` also compiles the Cython extension in place.
$(VENV)/.installed: pyproject.toml setup.py $(wildcard common/*.pyx) $(VENV)/.torch-$(TORCH_VERSION)
	$(PIP) install --disable-pip-version-check -q -e ".[dev]"
	touch $@

# The course's Jupyter settings, where every `jupyter lab` started from the venv reads them: no "get notified
# about Jupyter news?" toast (JupyterLab's overrides.json), and notebooks saved with the metadata they are
# committed with, so opening one does not rewrite it (the server's pre-save hook).
$(VENV)/share/jupyter/lab/settings/overrides.json: jupyter-config/overrides.json $(VENV)/.installed
	mkdir -p $(@D)
	cp $< $@

$(VENV)/etc/jupyter/jupyter_server_config.py: jupyter-config/jupyter_server_config.py $(VENV)/.installed
	mkdir -p $(@D)
	cp $< $@

# Outputs and what Jupyter writes on save never reach a commit: nbstripout as a git filter (idempotent;
# does nothing outside a git work tree). Only in the instructor's repository: a student's outputs are theirs.
git-filter: $(VENV)/.installed
ifeq ($(EDITION),instructor)
	@$(PY) -m tools.notebook_filter install
endif

# Rebuild the extension after editing the .pyx (pip install -e . does this too).
build: $(VENV)/.installed
	$(PY) setup.py -q build_ext --inplace

# Checks what is there by checksum; fetches only what is missing or corrupt.
data: $(VENV)/.installed
	PYTHON=$(PY) bash get_datasets.sh

run: setup
	$(VENV)/bin/jupyter lab --notebook-dir=. $(ROOT_FLAG) $(JUPYTER_ARGS)

# One BLAS/torch thread per test process: with parallel workers, more threads only fight over the cores
# (measured: a training step 10-15x slower with two threads per process on a loaded 2-core machine).
# COURSE_THREADS=1 also keeps the load-aware training loops at one thread, so test runs are reproducible.
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 COURSE_THREADS=1

# The grader's end-to-end gradings are left to make test-grading (minutes each).
unit: setup
	$(ONE_THREAD) $(PY) -m pytest tests -n $(WORKERS) -m "not slow_grading" --junitxml=$(REPORTS)/unit.xml

# Notebooks in quick mode, one notebook per worker.
notebooks: setup
	COURSE_QUICK=1 MPLBACKEND=Agg $(ONE_THREAD) \
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider \
		-n $(WORKERS) --dist loadfile --durations=5 --junitxml=$(REPORTS)/notebooks.xml \
		assignment1 assignment2 assignment3

# Lint and format check of the code (ruff, configured in pyproject.toml; notebooks for errors only).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

ifeq ($(EDITION),instructor)
# Lint and unit tests first (fast), then every notebook.
test: lint unit notebooks
else
# The student's edition: every test and notebook runs even when some fail, then the checklist says which
# exercises pass, fail or are not started yet (and fails when any is not passing).
test: setup
	-@rm -rf $(REPORTS)
	-$(MAKE) --no-print-directory unit
	-$(MAKE) --no-print-directory notebooks
	@$(MAKE) --no-print-directory checklist
endif

checklist:
	@$(PY) -m tools.checklist --reports $(REPORTS)

# One exercise's checks in seconds, stopping at the first failure and printing its message:
# make check EXERCISE=affine (an exercise, or one function: EXERCISE=affine_backward). Without EXERCISE: the list.
.PHONY: check
EXERCISE ?=
check: $(VENV)/.installed
	@$(ONE_THREAD) $(PY) -m tools.check $(EXERCISE)

# Chromium from the system's package manager when there is none (Playwright drives it; no browser download).
chromium:
	@bash tools/install_chromium.sh

# The notebooks as a student runs them: JupyterLab in headless Chromium, Run All, no error, stderr, dialog or
# unrun cell. Quick mode; NOTEBOOK=assignment1/Perceptron.ipynb picks one, NOTEBOOKS="a.ipynb b.ipynb" some
# (default: all), BROWSER_ARGS passes options (--full, --timeout S). Screenshots in .browser-test/screenshots/.
NOTEBOOK ?=
NOTEBOOKS ?= $(NOTEBOOK)
BROWSER_ARGS ?=
test-browser: setup chromium
	$(PY) -m tools.browser_test $(BROWSER_ARGS) $(NOTEBOOKS)

clean-venv:
	rm -rf $(VENV)

# --- for instructors: the student edition, its proof, grading (see INSTRUCTORS.md) ---
ifeq ($(EDITION),instructor)
SUBMISSION ?=
SUBMISSIONS ?=
# A class is graded on Dask: a local cluster by default, or the running cluster whose scheduler is at SCHEDULER
# (tcp://host:port; see INSTRUCTORS.md). GRADE_ARGS=--regrade grades again what is already graded.
SCHEDULER ?=
GRADE_ARGS ?=
student: $(VENV)/.installed
	$(PY) -m instructor.student

check-release: $(VENV)/.installed data
	$(PY) -m instructor.check_release

# Each catalogued common mistake (instructor/mistakes.py) made in a copy of the tree: caught, and named by the
# first failing check's message.
mistakes: $(VENV)/.installed data
	$(PY) -m instructor.mistakes

# Grading runs each submission in a bubblewrap sandbox (instructor/sandbox.py). Installs Debian/Ubuntu's
# bubblewrap when it is missing and this is root, or says how; then says whether the sandbox works here. Without
# it (macOS, no user namespaces) the grader refuses to grade unless given GRADE_ARGS=--no-sandbox.
.PHONY: sandbox
sandbox: $(VENV)/.installed
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(uname -s)" != Linux ]; then \
	    echo "sandbox: bubblewrap needs Linux; grade here with GRADE_ARGS=--no-sandbox (reports say so)"; \
	  elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq bubblewrap) || echo "sandbox: could not install bubblewrap"; \
	  else \
	    echo "sandbox: bubblewrap is missing; install it with: sudo apt-get install bubblewrap"; \
	  fi; \
	fi
	@$(PY) -m instructor.sandbox

# Real submissions graded end to end in the sandbox: the solved course, the untouched edition, alternatives,
# wrong and broken pieces, attacks on the grader and the sandbox, a class on Dask. One grading at a time (each
# takes the cores it is given).
test-grading: sandbox data
	$(ONE_THREAD) $(PY) -m pytest -p no:xdist -p no:cacheprovider -m slow_grading --durations=10 tests/grading

# After marking the written answers in grades/gradebook.csv by hand: recompute its totals.
grade-totals: $(VENV)/.installed
	$(PY) -m instructor.grade --totals $(GRADE_ARGS)

# Written answers through nbgrader (JupyterHub, formgrader; see INSTRUCTORS.md): the course as an nbgrader course
# directory, nbgrader's collected submissions as course folders for `make grade`, and the marks given in
# formgrader into grades/gradebook.csv (recomputing its totals). Only the last needs nbgrader installed here.
OUT ?=
COURSE ?=
INBOX ?= grades/nbgrader-inbox
$(VENV)/.nbgrader: pyproject.toml $(VENV)/.installed
	$(PIP) install --disable-pip-version-check -q -e ".[dev,nbgrader]"
	touch $@

nbgrader-course: $(VENV)/.installed
	@test -n "$(OUT)" || { echo "usage: make nbgrader-course OUT=path/to/course"; exit 2; }
	$(PY) -m instructor.nbgrader_course export --out $(OUT)

nbgrader-submissions: $(VENV)/.installed
	@test -n "$(COURSE)" || { echo "usage: make nbgrader-submissions COURSE=path/to/course [INBOX=$(INBOX)]"; exit 2; }
	$(PY) -m instructor.nbgrader_course submissions --course $(COURSE) --out $(INBOX)

nbgrader-marks: $(VENV)/.nbgrader
	@test -n "$(COURSE)" || { echo "usage: make nbgrader-marks COURSE=path/to/course"; exit 2; }
	$(PY) -m instructor.nbgrader_marks --course $(COURSE) $(GRADE_ARGS)

# The nbgrader round trip with nbgrader itself (export, generate, validate, exchange, autograde, marks back):
# slow, so not part of `make test`.
test-nbgrader: $(VENV)/.nbgrader
	COURSE_NBGRADER_TEST=1 $(ONE_THREAD) $(PY) -m pytest -p no:xdist -p no:cacheprovider tests/grading/test_nbgrader.py

grade: $(VENV)/.installed data sandbox
ifneq ($(SUBMISSIONS),)
	$(PY) -m instructor.grade --class $(SUBMISSIONS) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(GRADE_ARGS)
else ifneq ($(SUBMISSION),)
	$(PY) -m instructor.grade $(SUBMISSION) $(GRADE_ARGS)
else
	@echo "usage: make grade SUBMISSION=path/to/student-folder-or.zip  |  make grade SUBMISSIONS=folder/of/submissions"; exit 2
endif
endif
