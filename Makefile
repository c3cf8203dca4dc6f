# Two commands do all set-up on a fresh clone:
#   make demo   -- create .venv if missing, install, run the whole pipeline on the embedded digits data
#   make test   -- same self-installing set-up, then the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-deep install lint clean mutate fuzz mutate-random

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# An old pip can spend many minutes resolving this dependency set; upgrade it first.
	$(PY) -m pip install -q -U pip
	# Pin torch to the wheels that lie on this machine's disk (a fresh resolve would fetch GBs).
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e ".[dev,ray]"
	# torchattacks 3.5.1 pins requests~=2.25.1 (it never imports requests); installing it as a
	# normal dependency would drag MLflow back to 2.x and numpy to 1.x, so: --no-deps. Its wheel
	# also ships a stray top-level `robustbench` package, which unlearnbench never imports.
	$(PY) -m pip install -q --no-deps "torchattacks==3.5.1"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unlearnbench demo

# The linters (ruff pinned, import-linter; a few seconds) run first: CI fails on a finding as on a failing test.
test: lint
	$(PY) -m pytest -q -x --timeout=900 $(PYTEST_ARGS)

# Long property runs, coverage simulations and fuzzing (minutes to an hour; not in CI).
test-deep: lint
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q --deep --timeout=3600 $(PYTEST_ARGS)

# Fuzzing the input boundary (tests/test_fuzz.py) with many more cases than `make test` runs:
# FUZZ_EXAMPLES per test (12 tests), fresh random inputs; prints the Markdown table that
# docs/boundary.md records (cases, refused, reached the work, failed). Hours on 2 busy cores.
FUZZ_EXAMPLES ?= 1700
FUZZ_STATS    ?= $(or $(TMPDIR),/tmp)/unlearnbench-fuzz-stats.tsv
fuzz: $(STAMP)
	rm -f $(FUZZ_STATS)
	HYPOTHESIS_PROFILE=deep FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STATS=$(FUZZ_STATS) \
		$(PY) -m pytest -q --timeout=0 tests/test_fuzz.py; status=$$?; \
		$(PY) tools/fuzz_summary.py $(FUZZ_STATS); exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check unlearnbench tests benchmarks
	# The layering as import-linter contracts (pyproject.toml [tool.importlinter]; docs/architecture.md).
	$(VENV)/bin/lint-imports --no-cache

# Curated mutation check over the lines that decide published numbers (minutes; not run in CI).
# Writes the score and the list to docs/mutation.md; MUTATE_ARGS="--only ID,ID" runs a few.
mutate: $(STAMP)
	$(PY) tools/mutate.py $(MUTATE_ARGS)

# Random mutation testing with cosmic-ray over the modules that decide numbers (45 modules x 25
# sampled mutants, about three hours on one core from scratch; not in CI). Resumable (.mutation/); writes the per-module scores to docs/mutation.md.
# MUTATE_ARGS="--only core/recipes.py" runs one module.
mutate-random: $(STAMP)
	$(PY) -m pip install -q "cosmic-ray==8.7.0"  # the tool docs/mutation.md was measured with
	nice $(PY) tools/mutate_random.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
