# Two commands for a newcomer: `make demo` and `make test`. Both build everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
DUCKDB_HOME := .cache/duckdb-home
# Cloud Functions runs python312: where a 3.12 interpreter exists (pyenv's on this image), the unit
# tests run on it too.
PY312 := $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do $$p -c "" 2>/dev/null && echo $$p && break; done)
VENV312 := .venv312
# The Google provider's schema for tests/terraform/test_provider_schema.py, which checks every
# google_* block without Terraform or a provider download. PyPI has it in the prebuilt CDK Terrain
# bindings: their wheel carries a jsii assembly generated from one provider release (21.1.0 is
# hashicorp/google 8.7.0; the wheel's README names it). The wheel stays
# in .cache/; provider_schema.py keeps what the check reads in a 3 MB JSON beside it.
GOOGLE_BINDINGS_VERSION := 21.1.0
SCHEMA_CACHE := .cache/provider-schema
GOOGLE_BINDINGS_WHEEL := $(SCHEMA_CACHE)/cdktn_provider_google-$(GOOGLE_BINDINGS_VERSION)-py3-none-any.whl
GOOGLE_SCHEMA := $(SCHEMA_CACHE)/google.json

.PHONY: venv demo test unit unit312 bench package clean

venv: $(STAMP) $(DUCKDB_HOME)/.installed $(CHECKOV_VENV)/.installed $(GOOGLE_SCHEMA)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# bqemulator needs DuckDB's spatial and avro extensions; offline they come from PyPI wheels and
# are installed into a DuckDB home inside the project (the emulator is started with HOME there).
$(DUCKDB_HOME)/.installed: $(STAMP)
	$(BIN)/python -m ampbq.tools.stack install-duckdb-extensions $(DUCKDB_HOME)
	touch $@

# checkov pins libraries that clash with the Google clients, so it lives in its own venv.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r requirements-checkov.txt
	touch $@

# The Google provider's schema (GOOGLE_BINDINGS_VERSION above): the bindings' wheel, then the
# JSON that the check reads. A new version downloads the new wheel and rebuilds the JSON.
$(GOOGLE_BINDINGS_WHEEL): | $(STAMP)
	rm -f $(SCHEMA_CACHE)/cdktn_provider_google-*.whl
	$(BIN)/pip download -q --no-deps --only-binary=:all: -d $(SCHEMA_CACHE) cdktn-provider-google==$(GOOGLE_BINDINGS_VERSION)

$(GOOGLE_SCHEMA): $(GOOGLE_BINDINGS_WHEEL) tests/terraform/provider_schema.py
	$(BIN)/python tests/terraform/provider_schema.py extract $(GOOGLE_BINDINGS_WHEEL) $@

demo: $(STAMP) $(DUCKDB_HOME)/.installed
	$(BIN)/ampbq demo

# Two workers (the machines' 2 cores), each with its own local stack; whole modules go to one
# worker, so module fixtures are made once.
TEST_WORKERS ?= 2

test: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15
ifneq ($(PY312),)
	$(MAKE) unit312
endif

$(VENV312)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PY312) -m venv $(VENV312)
	$(VENV312)/bin/pip install -q --upgrade pip
	$(VENV312)/bin/pip install -q -r requirements-dev.txt
	$(VENV312)/bin/pip install -q --no-deps -e .
	touch $@

unit312: $(VENV312)/.installed
	$(VENV312)/bin/python -m pytest -q tests/unit

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# Throughput and peak memory of the transform beside a bare loop and a naive script (docs/performance.md).
# Extra options: make bench BENCH_ARGS="--export-gb 2 --e2e"
bench: $(STAMP)
	$(BIN)/python -m ampbq.tools.bench $(BENCH_ARGS)

# The three functions' zips, written to dist/ with the entries Terraform uploads: both read the one
# list in functions/runtime.json. Standard library only, so no venv is needed.
package:
	PYTHONPATH=shared $(PYTHON) -m ampbq.tools.function_zips dist

clean:
	rm -rf $(VENV) $(VENV312) $(CHECKOV_VENV) .cache .stack dist
