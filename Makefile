# One entry point for every task; CI calls `make test` through .ci/run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/pip install --quiet -e . --group dev
	touch $(STAMP)

install: $(STAMP) ## create .venv with the gateway and its test/lint tools

run: $(STAMP) ## the gateway on the example config; embedded PostgreSQL unless GATEWAY_DATABASE_URL is set
	$(BIN)/gateway --config config/gateway.toml serve

lint: $(STAMP) ## ruff, mypy --strict, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

unit: $(STAMP) ## the pytest suite only (needs PostgreSQL and Redis on 127.0.0.1)
	$(BIN)/pytest

test: lint unit ## the whole suite: lint, type checks and tests

bench: $(STAMP) ## benchmarks (BENCH="core smpp" picks some), each next to its ceiling from the same run; not part of CI
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
