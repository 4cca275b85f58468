# mlassets: two commands do all the set-up. `make demo` then `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MLASSETS_HOME ?= $(CURDIR)/.mlassets
export DAGSTER_HOME ?= $(MLASSETS_HOME)/dagster
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export MLFLOW_ALLOW_PICKLE_DESERIALIZATION := false
DEMO_ROWS ?= 10000

.PHONY: demo dev test test-fast test-local lint format bench install home clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,engines]'
	touch $@

install: $(BIN)/.installed

home:
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install home
	$(BIN)/python -m mlassets.synthetic --rows $(DEMO_ROWS) --seed 42 --force --out $(MLASSETS_HOME)/data/transactions.parquet
	$(BIN)/dagster asset materialize -m mlassets.definitions --select '*' > $(MLASSETS_HOME)/demo.log 2>&1 \
		|| { tail -n 40 $(MLASSETS_HOME)/demo.log; $(BIN)/python -m mlassets.summary; exit 1; }
	@echo "full log: $(MLASSETS_HOME)/demo.log"
	$(BIN)/python -m mlassets.summary

dev: install home
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Test tiers (pytest markers, assigned in mlassets_tests/conftest.py):
#   unit         the functional core and small pieces, no Dagster run
#   integration  Dagster runs in process on a real instance and a real MLflow store
#   e2e          the real CLI, daemon, webserver, servers and separate processes
# `make test`: lint, then every test of every tier, services included (what CI runs).
test: install lint
	$(BIN)/pytest -q

# `make test-fast`: lint, then the unit tier only; under a minute on 2 cores.
test-fast: install lint
	$(BIN)/pytest -q -m unit

# `make test-local`: lint, then every tier but the tests that start or need real services
# (PostgreSQL, RabbitMQ, an MLflow or S3 server, a Dask or Celery cluster).
test-local: install lint
	$(BIN)/pytest -q -m "not services"

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(MLASSETS_HOME)
