# emp developer tasks. `make test` is what CI runs (.ci/run).
.DEFAULT_GOAL := check

VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  ?= python3
# Touched after a successful install; re-install only when pyproject.toml changes (or .venv is gone).
STAMP   := $(VENV)/.emp-setup.stamp
SOURCES := emp tests

.PHONY: setup demo test lint mypy check format bench redis-server chromium

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/emp demo

# Tests start their own redis-server (>= 7) unless EMP_TEST_REDIS_URL points at one.
redis-server:
	@if [ -z "$${EMP_TEST_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then \
		scripts/ensure-redis-server; \
	fi

# The web monitor's browser test drives the system Chromium (Debian's package; never a downloaded build).
chromium:
	@scripts/ensure-chromium

test: setup redis-server chromium
	@scripts/ensure-test-tools
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/lint-imports

mypy: setup
	$(BIN)/mypy --strict emp

check: lint mypy test

format: setup
	$(BIN)/ruff check --fix $(SOURCES)
	$(BIN)/ruff format $(SOURCES)

bench: setup
	$(BIN)/emp bench
