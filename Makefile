# The two commands a new user runs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/.tools:$(PATH)

.PHONY: setup tools test lint typecheck layering pytest demo bench bench-full clean

setup: $(STAMP) tools

$(STAMP): pyproject.toml examples/gitopsd-example-plugin/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e examples/gitopsd-example-plugin
	touch $(STAMP)

tools:
	./scripts/install-tools.sh

lint: setup
	$(BIN)/ruff check gitopsd plugins tests bench examples

typecheck: setup
	MYPYPATH=plugins $(BIN)/mypy gitopsd plugins/gitopsd_plugins

layering: setup
	$(BIN)/pytest -q tests/unit/test_layering.py

pytest: setup
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

demo: setup
	$(BIN)/python -m gitopsd.cli.demo

bench: setup
	$(BIN)/python -m bench.run --apps 100 --objects 10
	$(BIN)/python -m bench.ui --apps 1000

bench-full: setup
	$(BIN)/python -m bench.run --apps 1000 --objects 5

clean:
	rm -rf .demo dist build
