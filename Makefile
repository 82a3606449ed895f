# One entry point for every task; CI calls `make test` through .ci/run.
# Dependencies come from the lock files in requirements/ (pinned, with hashes): runtime.txt for
# the gateway (`make run`, the image), dev.txt for tests and lint (`make install`, CI). Both are
# written from pyproject.toml by `make lock`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.runtime-installed
SMSC   := tests/peers/smsc
SMSC_STAMP := $(SMSC)/node_modules/.package-lock.json
LOCK_FLAGS := --universal --generate-hashes --python-version 3.11 --custom-compile-command "make lock"

.PHONY: install run test lint unit bench bench-deps clean smsc-sim run-smpp smsc-mo lock schema

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25.1"

$(STAMP): requirements/dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP) $(RUN_STAMP)

# What the gateway needs and nothing else; a venv that has the dev lock already has it.
$(RUN_STAMP): requirements/runtime.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements/runtime.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(RUN_STAMP)

lock: | $(BIN)/python ## rewrite requirements/*.txt from pyproject.toml (newest versions it allows)
	$(BIN)/pip install --quiet --group lock
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.txt
	$(BIN)/uv pip compile pyproject.toml --group dev -c requirements/runtime.txt $(LOCK_FLAGS) \
	  -o requirements/dev.txt

$(SMSC_STAMP): $(SMSC)/package.json $(SMSC)/package-lock.json
	npm ci --prefix $(SMSC) --no-audit --no-fund --silent
	touch $(SMSC_STAMP)

install: $(STAMP) $(SMSC_STAMP) ## create .venv with the gateway and its test/lint tools

run: $(RUN_STAMP) ## the gateway on the example config; embedded PostgreSQL unless GATEWAY_DATABASE_URL is set
	$(BIN)/gateway --config config/gateway.toml serve

lint: $(STAMP) ## ruff, mypy --strict, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests/edges/smpp/conftest.py
	$(BIN)/hadolint Dockerfile

unit: $(STAMP) $(SMSC_STAMP) ## the pytest suite only (needs PostgreSQL and Redis on 127.0.0.1)
	$(BIN)/pytest

test: lint unit ## the whole suite: lint, type checks and tests

schema: $(RUN_STAMP) ## rewrite docs/schema.sql from a scratch schema the migrations build (GATEWAY_DATABASE_URL, else embedded)
	$(BIN)/python -m gateway.store.schema_dump --output docs/schema.sql

bench-deps: ## Kannel (Debian `kannel`), the peer the SMPP benchmark runs against
	@test -x /usr/sbin/bearerbox || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kannel; }

bench: $(STAMP) $(SMSC_STAMP) bench-deps ## benchmarks (BENCH="core smpp" picks some), each next to its ceiling from the same run; not part of CI
	$(BIN)/python -m bench $(BENCH)

smsc-sim: $(SMSC_STAMP) ## an SMSC simulator (node-smpp) on 127.0.0.1:2775, control API on :2776
	node $(SMSC)/simulator.js --port 2775 --control-port 2776 --system-id gateway --password secret

run-smpp: $(RUN_STAMP) ## the gateway bound to `make smsc-sim` (config/smpp-demo.toml)
	GATEWAY_SMPP_SIM_PASSWORD=secret $(BIN)/gateway --config config/smpp-demo.toml serve

smsc-mo: ## send one MO through the simulator: make smsc-mo TEXT=STOP FROM=14155550123
	node $(SMSC)/send_mo.js --text "$(or $(TEXT),STOP)" --from "$(or $(FROM),14155550123)" --to 12345

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
