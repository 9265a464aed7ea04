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

test: setup
	$(BIN)/python -m pytest -q

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
