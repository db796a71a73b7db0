# synchrod — two commands: `make demo` and `make test` (both set themselves up).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench bench-storage bench-monitor dist clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Everything but the slow fault/chaos tests.
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m 'not slow' $(PYTEST_ARGS)

bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# Only the storage benchmarks of `make bench`: pruning speed (p), storage and recordings API (s).
bench-storage: install
	$(BIN)/python scripts/bench.py --only p,s $(BENCH_ARGS)

# /api/v1/status, /monitor/ and first paint with 50 sources and 10,000 cycles of history.
bench-monitor: install
	$(BIN)/python scripts/bench_monitor.py $(BENCH_MONITOR_ARGS)

# An sdist and a wheel (built from that sdist, as `python -m build` does) in dist/.
dist: install
	rm -rf dist build
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) .demo .bench build dist *.egg-info
