# Two commands do all the set-up: `make run` starts the app, `make test` runs the tests.
# Each creates .venv and installs the project when missing or out of date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist); 0 runs the suite in this process. The tests that start
# OpenCode run one at a time on one worker (tests/conftest.py), the rest beside them.
TEST_WORKERS ?= 2
# OpenCode (engine=opencode) from npm, into the virtualenv; the version is pinned in one place.
OPENCODE_VERSION := $(shell sed -n 's/^OPENCODE_VERSION = "\(.*\)"/\1/p' backend/agent/opencode/binary.py)
OPENCODE := $(VENV)/opencode/node_modules/.bin/opencode

.PHONY: run serve test lint format bench clean opencode

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(OPENCODE): backend/agent/opencode/binary.py | $(BIN)/python
	@command -v npm >/dev/null || { echo "npm not found: install Node.js for engine=opencode" >&2; exit 1; }
	npm install --prefix $(VENV)/opencode --no-audit --no-fund --loglevel=error opencode-ai@$(OPENCODE_VERSION)
	touch $(OPENCODE)

opencode: $(OPENCODE)  ## install OpenCode (engine=opencode) into .venv/opencode

run: $(STAMP)  ## start the app (embedded backend)
	$(BIN)/agent-tui

serve: $(STAMP)  ## start the backend alone on 127.0.0.1:8787
	$(BIN)/agent-tui serve

test: $(STAMP)  ## run the whole test suite
	@$(MAKE) --no-print-directory opencode || echo "OpenCode not installed: its tests skip (fail under CI=true)" >&2
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check agent_tui backend sandbox tests bench
	$(BIN)/ruff format --check agent_tui backend sandbox tests bench

format: $(STAMP)
	$(BIN)/ruff format agent_tui backend sandbox tests bench
	$(BIN)/ruff check --fix agent_tui backend sandbox tests bench

bench: $(STAMP)  ## print the benchmark tables (see bench/README.md)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
