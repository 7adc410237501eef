# Everything bootstraps itself: the first `make run` or `make test` creates .venv and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-future test-midnight check lint typecheck bench lock clean

# constraints.txt pins every package to the set the tests ran with: the same install everywhere.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## the service on the embedded default (SQLite in the per-user data folder)
	$(BIN)/python -m bot run

test: $(STAMP)  ## the whole suite; PostgreSQL tests run when FLARESTART_TEST_POSTGRES_URL is set
	$(BIN)/pytest -q

# The suite 400 days ahead under Debian's libfaketime: no test may depend on today's date. Only the
# calendar moves: a shifted CLOCK_MONOTONIC makes libfaketime 0.9.10 hang timed waits. -m preloads the
# thread-safe libfaketimeMT: the plain library races between the suite's server threads and segfaulted CI.
test-future: $(STAMP)  ## the whole suite a year and a month ahead (needs the faketime package)
	FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -m '+400 days' $(BIN)/pytest -q

# Each test file started two seconds before midnight (UTC, a year ahead): its module-level clocks
# are read on one day and its tests run on the next, where a test that works out "today" twice
# disagrees with itself. ~9 minutes (a process per file), so not in CI; run it after touching dates.
test-midnight: $(STAMP)  ## every test file run across midnight (needs the faketime package)
	@failed=""; for f in tests/test_*.py tests/*/test_*.py; do \
	  FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -m '2027-12-31 23:59:58' $(BIN)/pytest -q -p no:cacheprovider $$f \
	    > .test-midnight.log 2>&1 && echo "ok      $$f" || { echo "FAILED  $$f"; tail -n 30 .test-midnight.log; failed="$$failed $$f"; }; \
	done; rm -f .test-midnight.log; test -z "$$failed" || { echo "failed across midnight:$$failed"; exit 1; }

check: lint typecheck  ## what CI checks besides the tests

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench

typecheck: $(STAMP)
	$(BIN)/mypy bot

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/cli_startup.py

lock:  ## renew constraints.txt: the newest versions inside pyproject.toml's ranges; then run make test
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e ".[dev]"
	{ grep '^#' constraints.txt; .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -iv '^pip=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache .mypy_cache .ruff_cache
