# One entry point for every task; CI calls `make test` through .ci/run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SMSC   := tests/peers/smsc
SMSC_STAMP := $(SMSC)/node_modules/.package-lock.json

.PHONY: install run test lint unit bench bench-deps clean smsc-sim run-smpp smsc-mo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/pip install --quiet -e . --group dev
	touch $(STAMP)

$(SMSC_STAMP): $(SMSC)/package.json $(SMSC)/package-lock.json
	npm ci --prefix $(SMSC) --no-audit --no-fund --silent
	touch $(SMSC_STAMP)

install: $(STAMP) $(SMSC_STAMP) ## create .venv with the gateway and its test/lint tools

run: $(STAMP) ## the gateway on the example config; embedded PostgreSQL unless GATEWAY_DATABASE_URL is set
	$(BIN)/gateway --config config/gateway.toml serve

lint: $(STAMP) ## ruff, mypy --strict, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests/smpp/conftest.py
	$(BIN)/hadolint Dockerfile

unit: $(STAMP) $(SMSC_STAMP) ## the pytest suite only (needs PostgreSQL and Redis on 127.0.0.1)
	$(BIN)/pytest

test: lint unit ## the whole suite: lint, type checks and tests

bench-deps: ## Kannel (Debian `kannel`), the peer the SMPP benchmark runs against
	@test -x /usr/sbin/bearerbox || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kannel; }

bench: $(STAMP) $(SMSC_STAMP) bench-deps ## benchmarks (BENCH="core smpp" picks some), each next to its ceiling from the same run; not part of CI
	$(BIN)/python -m bench $(BENCH)

smsc-sim: $(SMSC_STAMP) ## an SMSC simulator (node-smpp) on 127.0.0.1:2775, control API on :2776
	node $(SMSC)/simulator.js --port 2775 --control-port 2776 --system-id gateway --password secret

run-smpp: $(STAMP) ## the gateway bound to `make smsc-sim` (config/smpp-demo.toml)
	GATEWAY_SMPP_SIM_PASSWORD=secret $(BIN)/gateway --config config/smpp-demo.toml serve

smsc-mo: ## send one MO through the simulator: make smsc-mo TEXT=STOP FROM=14155550123
	node $(SMSC)/send_mo.js --text "$(or $(TEXT),STOP)" --from "$(or $(FROM),14155550123)" --to 12345

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
