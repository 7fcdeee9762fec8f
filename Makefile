# The two commands of the README: `make run` and `make test`. Each creates .venv when missing
# and (re)installs when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=

.PHONY: run test lint format bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[speed]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[speed,test]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/dma-gateway serve

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check gateway tests
	$(BIN)/ruff format --check gateway tests
	$(BIN)/mypy gateway

format: $(TEST_STAMP)
	$(BIN)/ruff format gateway tests
	$(BIN)/ruff check --fix gateway tests

bench: $(RUN_STAMP)
	$(BIN)/dma-gateway bench

demo: $(RUN_STAMP)
	$(BIN)/dma-gateway demo

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
