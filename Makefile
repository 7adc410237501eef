# Everything bootstraps itself: the first `make run` or `make test` creates .venv and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-future check lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## the service on the embedded default (SQLite in the per-user data folder)
	$(BIN)/python -m bot run

test: $(STAMP)  ## the whole suite; PostgreSQL tests run when FLARESTART_TEST_POSTGRES_URL is set
	$(BIN)/pytest -q

# The suite 400 days ahead under Debian's libfaketime: no test may depend on today's date. Only the
# calendar moves: a shifted CLOCK_MONOTONIC makes libfaketime 0.9.10 hang timed waits.
test-future: $(STAMP)  ## the whole suite a year and a month ahead (needs the faketime package)
	FAKETIME_DONT_FAKE_MONOTONIC=1 faketime '+400 days' $(BIN)/pytest -q

check: lint typecheck  ## what CI checks besides the tests

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench

typecheck: $(STAMP)
	$(BIN)/mypy bot

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
