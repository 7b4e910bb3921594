# Quick start: `make run` (service on the embedded default), `make test` (lint, types, all tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# `run` needs the package only; everything else also needs the test tools (the `dev` extra).
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint types pytest bench bench-console bench-editing bench-burst bench-feed bench-scale bench-rebuild bench-list fault-long property-long undo-long scale-out-long trash-long trash-faults feed-long mutation fmt clean

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

# Two test processes: most tests wait on servers, workers and timeouts rather than on a core. Each test
# has its own databases and ports, so they do not meet.
PYTEST_PROCS ?= 2

# The 25 slowest tests are listed at the end: the suite must stay under 15 minutes here.
pytest: $(DEV_STAMP)
	$(BIN)/pytest -n $(PYTEST_PROCS) --durations=25

fmt: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.eventstore
	$(BIN)/python -m bench.byodb
	$(BIN)/python -m bench.saga
	$(BIN)/python -m bench.saga_ratio
	$(BIN)/python -m bench.http1
	$(BIN)/python -m bench.one_client
	$(BIN)/python -m bench.job_latency
	$(BIN)/python -m bench.editing
	$(BIN)/python -m bench.trash

# p50/p95 render time of every console page with 10,000 tables (about 120,000 events) copied directly
# into the core database, against /healthz in the same run (target p95 < 100 ms; ~1 min;
# SCHEMASAGA_BENCH_CONSOLE_TABLES=500 for a quick check).
bench-console: $(DEV_STAMP)
	$(BIN)/python -m bench.console --tables $${SCHEMASAGA_BENCH_CONSOLE_TABLES:-10000}

# A type change and an index build through schemasaga on a 1,000,000-row PostgreSQL table while another
# connection inserts 500 rows/s, against the raw DDL (~30 s; SCHEMASAGA_BENCH_EDITING_ROWS=20000 for a
# quick check).
bench-editing: $(DEV_STAMP)
	$(BIN)/python -m bench.editing

# A burst of 10,000 creates from 16 clients, then a batch of 300, with and without the worker's
# statistics check on the job table (SCHEMASAGA_BENCH_BURST=1000 for a quick run; the case without it
# may take its whole 300 s timeout).
bench-burst: $(DEV_STAMP)
	$(BIN)/python -m bench.burst

# schemasaga at 100,000 tables / 10,000,000 events (filled server-side) against an almost empty core
# database: list, show, time travel, paged events, saga latency, rebuild events/s, drift and verify on
# BYODBs of 1,000 and 10,000 tables (SCHEMASAGA_BENCH_SCALE=quick: 10,000 tables / 200,000 events, ~10 min).
bench-scale: $(DEV_STAMP)
	$(BIN)/python -m bench.scale

# GET /v1/tables: a page of 100 tables of the full-size shape (about 36 columns each), first and deep page,
# show and /healthz, on 101 tables; BENCH_LIST_ARGS="--baseline <other checkout>/.venv/bin/schemasaga"
# answers beside another checkout on the same data (byte-equal answers checked first), request by request.
bench-list: $(DEV_STAMP)
	$(BIN)/python -m bench.list_page $(BENCH_LIST_ARGS)

# projections rebuild alone, the domain fold against the fast fold (one and two processes), same data and
# run, the read models compared after each (10,000 tables / 1,000,000 events; about 5 minutes).
bench-rebuild: $(DEV_STAMP)
	$(BIN)/python -m bench.rebuild

# The randomized fault test with a large budget (commands, worker kills and outages interleaved).
fault-long: $(DEV_STAMP)
	SCHEMASAGA_FAULT_EXAMPLES=200 $(BIN)/pytest -m fault tests/fault/test_randomized.py -s -p no:cacheprovider --timeout 0

# The property test of table editing with a large budget: random sequences of changes on each engine,
# show against SQLAlchemy's inspector and `verify` after every change (default: 2 examples of <= 8 changes).
property-long: $(DEV_STAMP)
	SCHEMASAGA_PROPERTY_EXAMPLES=100 SCHEMASAGA_PROPERTY_STEPS=12 $(BIN)/pytest tests/integration/test_editing_properties.py -p no:cacheprovider --timeout 0

# Undo of each change kind on each engine (tests/integration/test_undo.py) on a table of 10,000 rows instead of
# the suite's 3: after each undo the live schema, every row and `show` are as before the change.
undo-long: $(DEV_STAMP)
	SCHEMASAGA_UNDO_ROWS=10000 $(BIN)/pytest tests/integration/test_undo.py -k each_change_kind -p no:cacheprovider --timeout 0 -v

# The several-processes acceptance test at a larger size: 2 API processes (`serve --workers 2`) and 3 workers,
# 32 clients, a worker SIGKILLed every 2.5 s, 1,200 operations instead of the suite's 152 (a few minutes).
SCALE_OUT_OPERATIONS ?= 1200
scale-out-long: $(DEV_STAMP)
	SCHEMASAGA_SCALE_OUT_OPERATIONS=$(SCALE_OUT_OPERATIONS) $(BIN)/pytest tests/acceptance/test_scale_out.py -s -p no:cacheprovider --timeout 0

# The trash's proofs (tests/integration/test_trash.py) with 10,000 rows per table instead of 300: a table
# deleted and restored, two columns removed and restored, rows compared by checksum, on every engine.
trash-long: $(DEV_STAMP)
	SCHEMASAGA_TEST_TRASH_ROWS=10000 $(BIN)/pytest tests/integration/test_trash.py -p no:cacheprovider --timeout 0

# A worker SIGKILLed after the DDL of each step of the trash's sagas (delete, restore, remove and restore
# a column, purge), then a rescuer; rows, consistency and drift checked after each (about a minute).
trash-faults: $(DEV_STAMP)
	SCHEMASAGA_TRASH_FAULTS=1 $(BIN)/pytest -m fault tests/fault/test_trash_kills.py -s -p no:cacheprovider --timeout 0

# The live feed's acceptance test at full size: a consumer process SIGKILLed and restarted twice (resuming with
# Last-Event-ID) and the service SIGKILLed and restarted once while 1,000 changes are made, instead of the
# suite's 40; the consumer must hold every event of the log once, in order (a minute or two).
FEED_CHANGES ?= 1000
feed-long: $(DEV_STAMP)
	SCHEMASAGA_FEED_CHANGES=$(FEED_CHANGES) $(BIN)/pytest tests/acceptance/test_feed.py -s -p no:cacheprovider --timeout 0 -k killed_consumer

# Latency of the live feed at idle: commit to delivery to an SSE client, p50/p99 over 200 events.
bench-feed: $(DEV_STAMP)
	$(BIN)/python -m bench.feed

# Mutation testing (not part of `test`): mutmut mutates src/schemasaga/domain/ and
# src/schemasaga/byodb/identifiers.py and runs tests/unit against each mutant (no database needed;
# configured in [tool.mutmut] of pyproject.toml). A fresh run each time, so that new or changed tests
# count; it fails when fewer than MUTATION_MIN percent of the mutants are killed.
# Score: 920/931 killed (98.8%). The 11 survivors are equivalent: no behaviour can tell them apart.
#   byodb.identifiers InvalidIdentifier.__init__ _5: drops code=None, which is ByodbError's default.
#   domain.columns Column.from_dict _29, _31: primary_key default None or absent; bool() makes both False.
#   domain.policy HostPattern.parse _5 rstrip("XX.XX"), _16 rstrip("XX/XX"), _27 strip("XX[]XX");
#     HostPattern.matches _5 rstrip("XX.XX"), _11 rstrip("XX/XX"); _ip _3 strip("XX[]XX"): the text
#     is lower-cased first (_ip's only caller is matches), so an upper-case X is never there to strip.
#   domain.policy HostPattern.parse _23: strict=None; ipaddress only tests `if strict`.
#   domain.policy RegistrationPolicy.check _7: `sqlite_path or "XXXX"`; the only caller passes the
#     URL's path, which parse_database_url requires to be absolute for SQLite, so never empty.
MUTATION_MIN ?= 95
mutation: $(DEV_STAMP)
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats
	$(BIN)/python -c 'import json, sys; s = json.load(open("mutants/mutmut-cicd-stats.json")); k, t = s["killed"], s["total"]; print(f"mutation score: {k}/{t} killed ({100 * k / t:.1f}%)"); sys.exit(100 * k < $(MUTATION_MIN) * t)'

clean:
	rm -rf $(VENV) .schemasaga mutants
