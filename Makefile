# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SIZE ?= small
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck install lock bench bench-sync bench-graph dev clean

# requirements.lock pins every package (the product with its dev and postgres extras, and the
# simulator, both editable), so a fresh machine installs what CI tested; `make lock` regenerates it
# after a dependency change in pyproject.toml, simulator/pyproject.toml or requirements.in.
$(STAMP): pyproject.toml simulator/pyproject.toml requirements.lock Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $(STAMP)

lock: $(STAMP)
	$(PY) -m pip install --quiet "pip-tools==7.6.2"
	$(VENV)/bin/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras \
		-o requirements.lock requirements.in

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/azdo-pipeline demo --size $(SIZE) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

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
