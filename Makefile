# alliancesim: every target sets up .venv itself, so a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := $(BIN)/python

.PHONY: demo test lint format docs bench clean

# The stamps re-install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(RUN) || $(PYTHON) -m venv $(VENV)
	$(RUN) -m pip install --quiet --upgrade pip
	$(RUN) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(RUN) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed  ## run the baseline scenario into results/demo/
	$(RUN) -m sim run baseline --out results/demo

test: $(VENV)/.installed-dev  ## the whole test suite
	$(BIN)/pytest

lint: $(VENV)/.installed-dev  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(VENV)/.installed  ## regenerate docs/parameters.md from the registry
	$(RUN) -m sim params --markdown > docs/parameters.md

bench: $(VENV)/.installed  ## speed figures (see docs/performance.md)
	$(RUN) benchmarks/bench.py

clean:
	rm -rf results .pytest_cache .ruff_cache
