# `make` (= `make test`) sets everything up in .venv and runs lint, types and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
# test processes (pytest-xdist): the tests mostly wait on servers, so more than the cores
WORKERS ?= 4

.PHONY: all test test-all test-compat test-pythons lint types unit demo bench bench-pythons docs clean

all: test

# the developer dependencies are PEP 735 groups in pyproject.toml: `--group` needs pip >= 25.1
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . --group dev
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

## the whole suite, slow fault and load tests included, on every Python and the oldest and
## a 7.x redis-py, and the docs site (what CI runs)
test-all: PYTEST_ARGS += --run-slow
test-all: PYTHONS_FLAGS = --skip-main
test-all: test test-pythons test-compat docs

## the fast suite on every CPython minor from 3.11 to the newest one here (pyenv or
## python3.X on PATH), each in .venv-py3.X (.venv's own minor in .venv). PYTHONS, the
## minors pyproject.toml claims, are required when CI=true: a missing one fails, named.
PYTHONS ?= $(shell sed -n 's/^ *"Programming Language :: Python :: \(3\.[0-9]*\)",$$/\1/p' pyproject.toml)
test-pythons: $(STAMP)
	PYTHONS="$(PYTHONS)" WORKERS=$(WORKERS) VENV=$(VENV) .ci/pythons.sh $(PYTHONS_FLAGS)

## the fast suite again on .venv's Python with other redis-py releases, each in
## .venv-redis-X: the oldest that pyproject.toml allows, the last 7.x, and 8.1 (whose
## pool skips its closed-connection check: the stale-connection tests bite there; .venv
## has the newest); and the stop tests with their slow ones (a worker idle for 30 s)
REDIS_FLOOR := $(shell sed -n 's/.*"redis\[hiredis\]>=\([0-9.]*\)[,"].*/\1/p' pyproject.toml)
REDIS_VERSIONS ?= $(REDIS_FLOOR) 7.4.1 8.1.0
test-compat: $(addprefix test-redis-,$(REDIS_VERSIONS))

.PRECIOUS: .venv-redis-%/.installed-dev

.venv-redis-%/.installed-dev: pyproject.toml
	test -x .venv-redis-$*/bin/python || $(PYTHON) -m venv .venv-redis-$*
	.venv-redis-$*/bin/python -m pip install -q --upgrade pip
	.venv-redis-$*/bin/python -m pip install -q -e . --group dev 'redis[hiredis]==$*'
	touch $@

test-redis-%: .venv-redis-%/.installed-dev
	.venv-redis-$*/bin/python -c 'import redis; print("redis-py", redis.__version__)'
	.venv-redis-$*/bin/python -m pytest -q -p no:cacheprovider -n $(WORKERS) $(COMPAT_ARGS)
	.venv-redis-$*/bin/python -m pytest -q -p no:cacheprovider -n $(WORKERS) --run-slow tests/test_stop.py

## the documentation site (docs/, mkdocs.yml) into site/; a broken link or reference fails,
## and so does a Sphinx role (:class:`X`) that reached a page as literal text
SPHINX_ROLE := :(class|meth|func|mod|attr|exc|data|obj):(`|<code>)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@if grep -rnoE '$(SPHINX_ROLE)' site --include='*.html' --include='*.json'; then \
		echo 'raw Sphinx roles in the site (above): write [`Name`][aioredstream.Name]'; exit 1; fi

## the main job end to end on an embedded server (or $$REDIS_URL)
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## benchmarks against a server they start; writes benchmarks/results.{json,md,png}, and
## with a venv per Python (make test-pythons) the per-Python rows, python_results.{json,md}
## (the HTTP row needs wrk, a Debian package: `apt-get install -y wrk`; skipped without it)
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -p no:cacheprovider -q $(PYTEST_ARGS)

## the benchmarks on every Python test-pythons finds, into benchmarks/py3.X/
bench-pythons: $(STAMP)
	PYTHONS="$(PYTHONS)" VENV=$(VENV) .ci/pythons.sh --bench

clean:
	rm -rf $(VENV) .venv-py3.* .venv-redis-* .venv-compat site .mypy_cache .pytest_cache .ruff_cache .coverage htmlcov
