# Two entry points for a new machine with nothing but Python: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint install

$(STAMP): pyproject.toml setup.py ltx/_frames.c blockmap/_fusefalloc.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra --timeout 300

bench: $(STAMP)
	$(BIN)/python -m pytest bench -q --benchmark-only

lint: $(STAMP)
	$(BIN)/ruff check ltx vfs hydrator blockmap tests bench
	$(BIN)/mypy ltx vfs hydrator blockmap
