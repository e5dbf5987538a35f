# Every target creates what it needs: a fresh clone needs only python3 (>= 3.11) and make.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-e2e lint tools generate pictures bench clean

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

## test-e2e: the end-to-end tier against real Letta 0.16.8 and 0.11.7 (installed into .tools/ the first time)
test-e2e: $(BIN)/.installed
	WITH_LETTA=1 bash scripts/install-tools.sh
	LETTA_E2E_REQUIRED=1 PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/pytest -m e2e tests/e2e $(PYTEST_ARGS)

## lint: ruff (lint + format) and mypy --strict
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## generate: rewrite alerts/letta-exporter.rules.yml and dashboards/*.json from their generators
generate: $(BIN)/.installed
	$(BIN)/python -m alerts.generate
	$(BIN)/python -m dashboards.generate

## pictures: docs/overview.png, the overview dashboard drawn from a live simulator -> exporter -> Prometheus (~80 s)
pictures: $(BIN)/.installed tools
	$(BIN)/pip install --quiet -e '.[docs]'
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m docs.render_overview

## bench: benchmarks (not part of the tests): one table of figures measured in the same run, also bench/results/latest.json (~25 min; BENCH_ARGS=--quick)
bench: $(BIN)/.installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
