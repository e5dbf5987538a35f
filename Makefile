# Every target creates what it needs: a fresh clone needs only python3 (>= 3.11) and make.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint tools generate bench clean

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: run the exporter against a built-in simulated Letta server (no configuration needed)
demo: $(BIN)/.installed
	$(BIN)/letta-exporter demo

## tools: real Prometheus / promtool (and the other real components the tests use) into .tools/
tools:
	bash scripts/install-tools.sh

## test: the whole test suite, against real components
test: $(BIN)/.installed tools
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff (lint + format) and mypy --strict
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## generate: rewrite alerts/letta-exporter.rules.yml and dashboards/*.json from their generators
generate: $(BIN)/.installed
	$(BIN)/python -m alerts.generate
	$(BIN)/python -m dashboards.generate

## bench: benchmarks (not part of the tests): ratios against baselines measured in the same run
bench: $(BIN)/.installed
	$(BIN)/python bench/spans.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
