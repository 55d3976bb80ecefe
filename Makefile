# splitlab: every target sets itself up on a fresh machine (a .venv beside this file).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The dashboard's browser tests: Debian's Chromium (Playwright's own browser download cannot work
# here) and axe-core from npm, in a folder git ignores; installed once, then the stamp says so.
AXE_DIR := .cache/axe
BROWSER_STAMP := .cache/browser-tests.installed

.PHONY: test demo demo-router lint typecheck pytest bench bench-service browser-deps clean

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

$(BROWSER_STAMP):
	command -v chromium >/dev/null || (apt-get install -y chromium || (apt-get update && apt-get install -y chromium))
	npm install --prefix $(AXE_DIR) --no-save --no-audit --no-fund --loglevel=error axe-core@4
	test -f $(AXE_DIR)/node_modules/axe-core/axe.min.js
	touch $(BROWSER_STAMP)

browser-deps: $(BROWSER_STAMP)

# Two workers: most tests wait on servers, subprocesses and databases, so two keep both cores busy.
# tests/conftest.py's scheduler keeps a file's tests on one worker, and Spark's tests on one worker.
pytest: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/pytest -n 2

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/splitlab demo --database splitlab-demo.db --reports reports

# The model router live on loopback: two trained models, two canaries, the monitor's timeline (1-2 minutes).
demo-router: $(STAMP)
	$(BIN)/splitlab demo-router --database splitlab-router-demo.db

bench: $(STAMP)
	$(BIN)/python benchmarks/stats_bench.py

# The service benchmark drives the server with wrk (Debian's package) from a second process.
bench-service: $(STAMP)
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	$(BIN)/python benchmarks/service_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(AXE_DIR) $(BROWSER_STAMP)
