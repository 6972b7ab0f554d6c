# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SIZE ?= small
STAMP := $(VENV)/.installed

.PHONY: demo test lint install bench bench-sync bench-graph dev clean

$(STAMP): pyproject.toml simulator/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,postgres]" -e ./simulator
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/azdo-pipeline demo --size $(SIZE) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

dev: $(STAMP)
	$(VENV)/bin/azdo-pipeline dev --size $(SIZE) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# Benchmarks print figures (they are not tests). SIZE applies to the sync and graph benchmarks.
bench: $(STAMP)
	$(PY) benchmarks/simulator.py

bench-sync: $(STAMP)
	$(PY) benchmarks/full_sync.py --size $(SIZE)

bench-graph: $(STAMP)
	$(PY) benchmarks/access_graph.py --size $(SIZE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
