# Everything bootstraps itself: the first `make run` or `make test` creates .venv and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## the service on the embedded default (SQLite in the per-user data folder)
	$(BIN)/python -m bot run

test: $(STAMP)  ## the whole suite; PostgreSQL tests run when FLARESTART_TEST_POSTGRES_URL is set
	$(BIN)/pytest -q

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
