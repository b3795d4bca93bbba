# Two commands do all the set-up: `make run` starts the app, `make test` runs the tests.
# Each creates .venv and installs the project when missing or out of date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run serve test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## start the app (embedded backend)
	$(BIN)/agent-tui

serve: $(STAMP)  ## start the backend alone on 127.0.0.1:8787
	$(BIN)/agent-tui serve

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

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
