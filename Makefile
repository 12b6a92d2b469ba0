# Two commands for a newcomer: `make run` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= examples/specs/ai-lab.room.yaml

.PHONY: run test lint typecheck unit bench clean soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project's dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/roomop up $(SPEC)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The hub's interop tests run Microsoft's JavaScript SignalR client: installed from the pinned lock file.
NODE_DIR := tests/hub/node
NODE_STAMP := $(NODE_DIR)/node_modules/.package-lock.json

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

unit: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

# The long fault, crash-loop, fuzz and load runs (docs/reliability.md); `make test` runs their short versions.
soak: $(STAMP)
	$(BIN)/pytest -q -s -m soak tests/suites tests/fuzz --timeout 3600

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .roomop .mypy_cache .pytest_cache .ruff_cache .hypothesis .import_linter_cache
