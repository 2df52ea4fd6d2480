# One venv per checkout; every target sets it up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default (it lies on the CI disk); on a GPU machine: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run test test-fast rehearse rehearse-up lint format typecheck ci bench bench-table clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The venv's bin on PATH, as if activated: tests run the `ray` CLI, and submitted jobs
# run `python`.
run test test-fast rehearse rehearse-up bench: export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

run: setup
	$(PY) jobs/train.py

# The full suite, real multi-worker Ray runs included: what CI runs (the cluster
# rehearsal has its own target, below).
test: setup
	$(PY) -m pytest -q -m "not rehearsal" --durations=25

# The cloud cluster rehearsed on this machine (docs/cluster.md, "Rehearse before you
# rent"): a Ray head and 2 worker nodes, an S3 server and an MLflow server, one of each
# shared by every scenario in tests/rehearsal.
rehearse: setup
	$(PY) -m pytest -q -m rehearsal tests/rehearsal --durations=10

# The same cluster and servers, left up for trying things by hand (Ctrl-C stops them).
rehearse-up: setup
	$(PY) tests/rehearsal/cluster.py up

# The inner loop: everything that starts no Ray and runs in one process (markers: pyproject).
test-fast: setup
	$(PY) -m pytest -q -m "not ray and not slow"

lint: setup
	$(VENV)/bin/ruff check platform jobs tests bench examples
	$(VENV)/bin/ruff format --check platform jobs tests bench examples

# Rewrites files: ruff's formatter and its safe fixes.
format: setup
	$(VENV)/bin/ruff format platform jobs tests bench examples
	$(VENV)/bin/ruff check --fix platform jobs tests bench examples

typecheck: setup
	$(VENV)/bin/mypy

# What .ci/run runs: lint, format check, type check, the full suite, the rehearsal.
ci: lint typecheck test rehearse

# The quick benchmarks (no Ray, a few minutes on 2 cores), at sizes too small to be
# results: their results files go to $(BENCH_OUT), not bench/results. The others are run
# by hand, with the commands in BENCHMARKS.md.
BENCH_OUT ?= /tmp/refiner-bench
bench: setup
	$(PY) bench/bench_augment.py --tasks 10 --reps 2 --big-tasks 200 --out $(BENCH_OUT)/augment.md
	$(PY) bench/bench_truncation.py --rounds 2 --out $(BENCH_OUT)/truncation.json
	$(PY) bench/bench_flops.py --steps 2 --out $(BENCH_OUT)/flops.json

# BENCHMARKS.md's headline table, rebuilt from the results files in bench/results/.
bench-table: setup
	$(PY) bench/headline.py

clean:
	rm -rf $(VENV) outputs mlflow.db .mypy_cache
