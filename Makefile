# mlassets: two commands do all the set-up. `make demo` then `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MLASSETS_HOME ?= $(CURDIR)/.mlassets
export DAGSTER_HOME ?= $(MLASSETS_HOME)/dagster
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export MLFLOW_ALLOW_PICKLE_DESERIALIZATION := false
# NannyML (the `bench` extra, benchmarks/bench_estimation.py) sends usage analytics unless this
# is set, to any value.
export NML_DISABLE_USAGE_LOGGING := 1
DEMO_ROWS ?= 10000
# `dg` (dagster-dg-cli), the CLI Dagster 1.13 tells users to run; it finds the code location through
# [tool.dg] in pyproject.toml. VIRTUAL_ENV says the project's .venv is the active one (else dg warns).
DG := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg

.PHONY: demo dev test test-fast test-local lint format bench install home clean browser screenshots serve readme-figures readme-check

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,engines]'
	touch $@

install: $(BIN)/.installed

# The `bench` extra: NannyML, the estimation benchmark's yardstick; `make bench` only.
$(BIN)/.installed-bench: $(BIN)/.installed pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,engines,bench]'
	touch $@

home:
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/local/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# `make demo`: both bundled models (mlassets/specs/), trained and promoted one after the other,
# one run each. With MLASSETS_SPEC=<one spec file>, run `make demo DEMO_JOBS=training_job`.
# Each run is launched by `python -m mlassets.launch` (not `dg launch`): it carries the code
# location's origin, as a run launched from the UI does, so the UI shows it on Overview and in its
# job's Runs tab; it still runs in this process, needing no daemon. A failed run stops the demo
# with the launch's own lines (the run, why it failed: its failed checks or steps, and for failed
# gates the YAML that would change them) and the summary; the run's log is in demo.log.
# DEMO_CONFIG=run_config.yaml gives each run a run config (as `dg launch -c`).
DEMO_JOBS ?= fraud_detection_training_job churn_model_training_job
demo: install home
	$(BIN)/python -m mlassets.synthetic --rows $(DEMO_ROWS) --seed 42 --force --out $(MLASSETS_HOME)/data/transactions.parquet
	$(BIN)/python -m mlassets.synthetic --table churn --rows $(DEMO_ROWS) --seed 42 --force --out $(MLASSETS_HOME)/data/churn/customers.parquet
	: > $(MLASSETS_HOME)/demo.log
	for job in $(DEMO_JOBS); do \
		echo "launching $$job"; \
		$(BIN)/python -m mlassets.launch --job $$job $(if $(DEMO_CONFIG),-c $(DEMO_CONFIG)) \
			2>> $(MLASSETS_HOME)/demo.log > $(MLASSETS_HOME)/run.txt \
			|| { cat $(MLASSETS_HOME)/run.txt; echo "full log: $(MLASSETS_HOME)/demo.log"; \
				$(BIN)/python -m mlassets.summary; exit 1; }; \
		cat $(MLASSETS_HOME)/run.txt >> $(MLASSETS_HOME)/demo.log; \
	done
	@echo "full log: $(MLASSETS_HOME)/demo.log"
	$(BIN)/python -m mlassets.summary

# `make serve`: MLflow's scoring server for the production model on 127.0.0.1:$(SERVE_PORT); it
# takes the spec's raw rows (JSON, CSV or Parquet at /invocations). Stop it with Ctrl-C.
SERVE_PORT ?= 5001
SERVE_MODEL ?= fraud_detection
serve: install
	$(BIN)/python -m mlassets.serve --port $(SERVE_PORT) --model $(SERVE_MODEL)

dev: install home
	$(DG) dev -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Test tiers (pytest markers: each test module declares its own `pytestmark`, and a test of another
# tier carries its own mark; mlassets_tests/tiers.py stops the collection on a test without one):
#   unit         the functional core and small pieces, no Dagster run
#   integration  Dagster runs in process on a real instance and a real MLflow store
#   e2e          the real CLI, daemon, webserver, servers and separate processes
# `make test`: lint, then every test of every tier, services included (what CI runs); the 30
# slowest tests are listed at the end, so CI's log says where the suite's time goes.
test: install lint
	$(BIN)/pytest -q --durations=30

# `make test-fast`: lint, then the unit tier only; under a minute on 2 cores.
test-fast: install lint
	$(BIN)/pytest -q -m unit

# `make test-local`: lint, then every tier but the tests that start or need real services
# (PostgreSQL, RabbitMQ, an MLflow or S3 server, a Dask or Celery cluster).
test-local: install lint
	$(BIN)/pytest -q -m "not services"

# Debian's Chromium and its own chromedriver (always the same version) for the browser test
# (mlassets_tests/test_ui.py) and `make screenshots`; no test tool ever downloads a browser.
# Idempotent: does nothing when both are installed. Needs root (apt-get), as on CI.
browser:
	@if test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; then \
		/usr/bin/chromium --headless --no-sandbox --version 2>/dev/null || true; \
	else \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends chromium chromium-driver fonts-liberation fonts-dejavu-core; \
	fi

# README's pictures of the UI (docs/asset-graph.png, docs/evaluation-report.png), from a real run
# in a temporary home: a webserver and daemon, training_job launched over GraphQL, headless Chromium.
screenshots: install browser
	$(BIN)/python -m mlassets_tests.test_ui docs

# The README's demo figures from a real demo (both models, in a temporary home): written, or
# checked (exit 1 naming every figure that drifted from what the code prints).
readme-figures: install
	$(BIN)/python -m mlassets_tests.readme_figures --write

readme-check: install
	$(BIN)/python -m mlassets_tests.readme_figures

bench: $(BIN)/.installed-bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(MLASSETS_HOME)
