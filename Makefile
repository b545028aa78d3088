# groundwork: `make demo` builds the example index through Airflow; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA := $(CURDIR)/data
PORT ?= 8080
INDEX ?= groundwork_docs
QUERY ?= What happens to a file that cannot be parsed?
PYTEST_ARGS ?=

# The embedded Airflow: SQLite metadata DB and logs under data/airflow, our dags/ and plugins/.
export GROUNDWORK_HOME := $(DATA)
export AIRFLOW_HOME := $(DATA)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS := admin:admin
export AIRFLOW__API__PORT := $(PORT)
export AIRFLOW__API__BASE_URL := http://localhost:$(PORT)
export AIRFLOW__LOGGING__LOGGING_LEVEL := WARNING
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := true
export SCARF_NO_ANALYTICS := true
export DVC_NO_ANALYTICS := 1

.DEFAULT_GOAL := help
.PHONY: help install demo airflow-init up test test-fast test-e2e lint bench lock clean

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "groundwork needs Python 3.11 ($(PYTHON) not found); set PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed ## Create .venv and install the pinned dependencies

airflow-init: install ## Create the embedded Airflow home (SQLite) in data/airflow
	@mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate >/dev/null

demo: airflow-init ## Build the example index through Airflow, then show the live version and a query
	$(BIN)/airflow dags reserialize >/dev/null
	$(BIN)/airflow dags test groundwork_refresh__$(INDEX) >$(DATA)/demo-dag-test.log 2>&1 \
	  || { tail -40 $(DATA)/demo-dag-test.log; echo "the DAG run failed: full log in $(DATA)/demo-dag-test.log"; exit 1; }
	@echo; $(BIN)/groundwork show $(INDEX)
	@echo; $(BIN)/groundwork versions $(INDEX)
	@echo; echo "query: $(QUERY)"; $(BIN)/groundwork search $(INDEX) "$(QUERY)" -k 3

up: airflow-init ## Start Airflow standalone with groundwork's DAGs on http://localhost:$(PORT)
	@echo "UI: http://localhost:$(PORT)  user: admin  password: see $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated"
	$(BIN)/airflow standalone

test: install ## Run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## Unit and DAG tests only (no Airflow runs, no real model)
	$(BIN)/python -m pytest -m "not airflow and not model" $(PYTEST_ARGS)

test-e2e: install ## Backfills and UI runs through a real Airflow (REST API, headless Chromium)
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check include dags plugins tests
	$(BIN)/mypy

bench: install ## Benchmark a refresh on a generated corpus (~5,000 chunks; takes a while): prints figures and ratios
	$(BIN)/python benchmarks/bench_refresh.py $(BENCH_ARGS)

lock: ## Re-pin requirements.lock from the current .venv
	@{ sed -n '1,5p' requirements.lock; $(BIN)/pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/; s|^unstructured_inference @ .*|unstructured-inference==1.6.14|'; } > requirements.lock.new && mv requirements.lock.new requirements.lock

clean: ## Delete data/ (all versions, caches and the Airflow home)
	rm -rf $(DATA)
