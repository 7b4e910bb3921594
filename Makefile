# Quick start: `make run` (service on the embedded default), `make test` (lint, types, all tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types pytest bench fault-long fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/schemasaga serve

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench.eventstore
	$(BIN)/python -m bench.byodb
	$(BIN)/python -m bench.saga
	$(BIN)/python -m bench.job_latency

# The randomized fault test with a large budget (commands, worker kills and outages interleaved).
fault-long: $(STAMP)
	SCHEMASAGA_FAULT_EXAMPLES=200 $(BIN)/pytest -m fault tests/fault/test_randomized.py -s -p no:cacheprovider --timeout 0

clean:
	rm -rf $(VENV) .schemasaga
