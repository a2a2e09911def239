# `make` (= `make test`) sets everything up in .venv and runs lint, types and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
# test processes (pytest-xdist): the tests mostly wait on servers, so more than the cores
WORKERS ?= 4

.PHONY: all test test-all test-compat lint types unit demo bench docs clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -n $(WORKERS) $(PYTEST_ARGS)
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

## lint, types, then the test suite (fast subset) against Redis 7 and the embedded Valkey
test: lint types unit

## the whole suite, slow fault and load tests included, the oldest redis-py, and the docs site
## (what CI runs)
test-all: PYTEST_ARGS += --run-slow
test-all: test test-compat docs

## the fast suite again on the oldest redis-py that pyproject.toml allows, in .venv-compat,
## and the stop tests with their slow ones (a worker idle for 30 s)
REDIS_FLOOR := $(shell sed -n 's/.*"redis\[hiredis\]>=\([0-9.]*\)".*/\1/p' pyproject.toml)
COMPAT_VENV ?= .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed-redis-$(REDIS_FLOOR)
$(COMPAT_STAMP): pyproject.toml
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install -q -e '.[dev]' 'redis[hiredis]==$(REDIS_FLOOR)'
	touch $(COMPAT_STAMP)

test-compat: $(COMPAT_STAMP)
	$(COMPAT_VENV)/bin/python -c 'import redis; print("redis-py", redis.__version__)'
	$(COMPAT_VENV)/bin/python -m pytest -q -p no:cacheprovider -n $(WORKERS) $(COMPAT_ARGS)
	$(COMPAT_VENV)/bin/python -m pytest -q -p no:cacheprovider -n $(WORKERS) --run-slow tests/test_stop.py

## the documentation site (docs/, mkdocs.yml) into site/; a broken link or reference fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## the main job end to end on an embedded server (or $$REDIS_URL)
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## benchmarks against a server they start; writes benchmarks/results.{json,md,png}
## (the HTTP row needs wrk, a Debian package: `apt-get install -y wrk`; skipped without it)
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -p no:cacheprovider -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) site .mypy_cache .pytest_cache .ruff_cache .coverage htmlcov
