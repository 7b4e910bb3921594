# Quick start: `make run` (service on the embedded default), `make test` (lint, types, all tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# `run` needs the package only; everything else also needs the test tools (the `dev` extra).
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint types pytest bench fault-long fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(STAMP)

# The dev extra installs the package too, so it satisfies `run` as well.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(DEV_STAMP) $(STAMP)

run: $(STAMP)
	$(BIN)/schemasaga serve

test: lint types pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP)
	$(BIN)/pytest

fmt: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.eventstore
	$(BIN)/python -m bench.byodb
	$(BIN)/python -m bench.saga
	$(BIN)/python -m bench.job_latency

# The randomized fault test with a large budget (commands, worker kills and outages interleaved).
fault-long: $(DEV_STAMP)
	SCHEMASAGA_FAULT_EXAMPLES=200 $(BIN)/pytest -m fault tests/fault/test_randomized.py -s -p no:cacheprovider --timeout 0

clean:
	rm -rf $(VENV) .schemasaga
