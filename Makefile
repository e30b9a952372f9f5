# The two commands a new user runs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The locked dependency set (hashed, every platform and Python >= 3.11): what CI tested is what
# gets installed. `make lock` regenerates it after a change of pyproject.toml's dependencies.
LOCK := requirements/lock.txt
DEV_LOCK := requirements/dev-lock.txt
UV_VERSION := 0.13.8
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml --universal --generate-hashes --quiet --custom-compile-command "make lock"
export PATH := $(CURDIR)/.tools:$(PATH)

.PHONY: setup tools test lint typecheck layering pytest smoke-wheel dist demo bench bench-full bench-ha bench-10k clean lock lock-upgrade

setup: $(STAMP) tools

# Exactly the locked set (pip checks every hash and resolves nothing), then gitopsd and the
# example plugin editable without their dependencies; `pip check` catches a stale lock.
$(STAMP): pyproject.toml examples/gitopsd-example-plugin/pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps --only-binary :all: -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . -e examples/gitopsd-example-plugin
	$(BIN)/python -m pip check || { echo "make setup: $(DEV_LOCK) does not satisfy pyproject.toml: run 'make lock'" >&2; exit 1; }
	touch $(STAMP)

# Regenerate the lock files from pyproject.toml, keeping every pin that still fits (uv, pinned,
# is installed into the venv for this; installs never need it). `make lock-upgrade` moves every
# pin to the newest release its range allows.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/uv --version 2>/dev/null | grep -q "^uv $(UV_VERSION)" || $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	mkdir -p requirements
	$(UV_COMPILE) $(UV_FLAGS) -o $(LOCK)
	$(UV_COMPILE) $(UV_FLAGS) --extra dev -c $(LOCK) -o $(DEV_LOCK)

lock-upgrade:
	$(MAKE) lock UV_FLAGS=--upgrade

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

test: lint typecheck pytest smoke-wheel

# Build wheel + sdist, install the wheel into a clean venv from the lock, run gitopsd from there.
smoke-wheel: setup
	./scripts/smoke-wheel.sh

# The wheel and sdist in dist/, built with the locked hatchling (docs/install.md installs them).
dist: setup
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

demo: setup
	$(BIN)/python -m gitopsd.cli.demo

bench: setup
	$(BIN)/python -m bench.run --apps 100 --objects 10
	$(BIN)/python -m bench.ui --apps 1000

bench-full: setup
	$(BIN)/python -m bench.run --apps 1000 --objects 5

# 3 members x 1000 apps over a 3-node etcd (Debian etcd-server): converge, join, failover.
bench-ha: setup
	$(BIN)/python -m bench.ha --apps 1000 --objects 5

bench-10k: setup
	$(BIN)/python -m bench.run --apps 10000 --objects 5 --repos 10 --skip-baseline --timeout 420 --stall 300 --drift-samples 10 --push-samples 5

clean:
	rm -rf .demo dist build
