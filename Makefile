# splitlab: every target sets itself up on a fresh machine (a .venv beside this file).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA := src/splitlab/data/checkout_experiment.csv.gz

.PHONY: test demo lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/splitlab analyze-file $(DEMO_DATA) --variant variant --control control \
		--metric conversion=converted:proportion \
		--metric revenue_per_user=revenue:mean \
		--metric orders_per_session=orders/sessions:ratio \
		--metric average_order_value=revenue/orders:ratio \
		--covariate revenue_per_user=pre_revenue
	$(BIN)/splitlab sample-size --baseline-rate 0.045 --mde 0.08

bench: $(STAMP)
	$(BIN)/python benchmarks/stats_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
