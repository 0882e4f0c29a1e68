# Haneul: one entry point for people and CI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint up down status bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

up: $(STAMP)
	$(BIN)/haneul up

down: $(STAMP)
	$(BIN)/haneul down

status: $(STAMP)
	$(BIN)/haneul status

bench: $(STAMP)
	$(BIN)/python benchmarks/ring_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
