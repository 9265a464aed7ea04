# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench bench-peer clean

setup: $(STAMP)

# Reinstall only when the project's dependencies change; a second `make setup` is a no-op.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(BIN)/spaghettinet demo --workdir demo-workdir

# Two pytest workers (CI has 2 cores; most of the suite's time is single-threaded tracing of train steps). Each
# test file runs whole on one worker, so a module's trained fixture is built once. TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py

# Ours beside Ultralytics YOLOv8n, one core each (about an hour; needs two idle cores, makes its own ~7 GB venv
# outside the repository on first use). Not part of `make bench`. Options: BENCH_PEER_ARGS="--quick" and others
# in `benchmarks/bench_peer.py --help`.
bench-peer: setup
	$(BIN)/python benchmarks/bench_peer.py $(BENCH_PEER_ARGS)

clean:
	rm -rf $(VENV) demo-workdir .pytest_cache
