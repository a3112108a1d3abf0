# smtpkit: `make demo` runs the end-to-end campaign on the embedded sandbox; `make test` runs
# every test (lint and types, pytest, then the notebooks). Both start from nothing but Python 3.11.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test lint pytest notebooks lab bench clean-venv

demo: $(VENV)/.run-installed
	$(BIN)/smtpkit demo

test: $(VENV)/.dev-installed lint pytest notebooks

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check smtpkit tests bench data
	$(BIN)/mypy

pytest: $(VENV)/.dev-installed
	$(PY) -m pytest -m "not notebook"

notebooks: $(VENV)/.dev-installed
	$(PY) -m pytest -m notebook

lab: $(VENV)/.dev-installed
	$(BIN)/jupyter lab notebooks/

bench: $(VENV)/.dev-installed
	@set -e; for script in bench/*_bench.py; do echo "== $$script"; $(PY) $$script; done

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev,notebook]'
	$(PY) -m ipykernel install --sys-prefix --name python3
	touch $@ $(VENV)/.run-installed

clean-venv:
	rm -rf $(VENV)
