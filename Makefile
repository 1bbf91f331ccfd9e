# `make test` is the one command CI and developers run: it creates .venv when missing,
# installs the package with its dev extras, lints, and runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint install bench bench-cli demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check hive_core agent_runtime hive_cli tests bench

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.core --agents 100 --facts 20000

bench-cli: $(STAMP)
	$(BIN)/python -m bench.cli_processes --agents 20
	$(BIN)/python -m bench.cli_processes --agents 100

# Create a 5-agent local hive, start it, learn the sample corpus, ask three questions from
# agents that did not learn the answers, show status, stop. Uses a temporary AMPLIHACK_HOME
# unless one is set.
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
