# splitlab: every target sets itself up on a fresh machine (a .venv beside this file).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest bench bench-service clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/splitlab demo --database splitlab-demo.db --reports reports

bench: $(STAMP)
	$(BIN)/python benchmarks/stats_bench.py

# The service benchmark drives the server with wrk (Debian's package) from a second process.
bench-service: $(STAMP)
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	$(BIN)/python benchmarks/service_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
