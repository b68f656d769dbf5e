# mlray: `make demo` runs the quickstart, `make test` runs ruff and the whole test suite.
# Each creates .venv when it is missing and installs the project into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test lint demo bench cluster-sim clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# Tests that start and stop whole Ray heads (`mlray up/down`, `ray job submit`) run in
# their own pytest process, apart from the suite's shared local Ray.
test: lint
	$(BIN)/pytest -m "not lifecycle"
	$(BIN)/pytest -m lifecycle

demo: $(STAMP)
	$(BIN)/python -m jobs.demo

bench: $(STAMP)
	$(BIN)/python bench/registry.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/serving.py --quick
	$(BIN)/python bench/features.py --quick
	$(BIN)/python bench/monitoring.py --quick
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/abtest.py
	$(BIN)/python bench/pipelines.py

# The rendered KubeRay cluster run for real on loopback: a head and two workers with the
# pods' `ray start` argv and env, the rendered Redis, the bucket on an S3 API server;
# driven through serve deploy, ray job submit (token auth), a prediction and a feature read.
cluster-sim: $(STAMP)
	$(BIN)/python -m jobs.cluster_sim

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
