# One venv per checkout; `make run` and `make test` set it up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default (it lies on the CI disk); on a GPU machine: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The venv's bin on PATH, as if activated: tests run the `ray` CLI, and submitted jobs
# run `python`.
run test: export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

run: setup
	$(PY) jobs/train.py

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check platform jobs tests bench

clean:
	rm -rf $(VENV) outputs mlflow.db
