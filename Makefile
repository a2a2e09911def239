# `make` (= `make test`) sets everything up in .venv and runs lint, types and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: all test test-all lint types unit demo bench docs clean

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
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage report

## lint, types, then the test suite (fast subset) against Redis 7 and the embedded Valkey
test: lint types unit

## the whole suite, slow fault and load tests included, and the docs site (what CI runs)
test-all: PYTEST_ARGS += --run-slow
test-all: test docs

## the documentation site (docs/, mkdocs.yml) into site/; a broken link or reference fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## the main job end to end on an embedded server (or $$REDIS_URL)
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## benchmarks against a server they start; writes benchmarks/results.{json,md,png}
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -p no:cacheprovider -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache .coverage htmlcov
