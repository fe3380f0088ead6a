# alliancesim: every target sets up .venv itself, so a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := $(BIN)/python

.PHONY: demo test lint format docs bench clean fuzz chaos

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

# Two workers, one test file each at a time (--dist loadfile: the files' module fixtures are built once).
# Many tests start pools or subprocesses of their own, so more workers than cores only adds contention.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-dev $(VENV)/.chromium  ## the whole test suite (TEST_WORKERS=0: in one process)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

FUZZ_EXAMPLES ?= 400
fuzz: $(VENV)/.installed-dev  ## mutated scenarios, specs, targets and command lines: each refused cleanly (tests/test_fuzz.py)
	ALLIANCESIM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py -q

CHAOS_KILLS ?= 20
chaos: $(VENV)/.installed-dev  ## SIGKILL a sweep at random moments, resume, compare bit for bit (tests/chaos.py)
	$(RUN) -m tests.chaos --kills $(CHAOS_KILLS)

lint: $(VENV)/.installed-dev  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(VENV)/.installed  ## regenerate docs/parameters.md from the registry
	$(RUN) -m sim params --markdown > docs/parameters.md.tmp && mv docs/parameters.md.tmp docs/parameters.md

bench: $(VENV)/.installed  ## speed figures (see docs/performance.md)
	$(RUN) benchmarks/bench.py

clean:
	rm -rf results .pytest_cache .ruff_cache

# ── sensitivity experiments (docs/experiments.md); results land in results/<spec name>/ ────────
EXECUTOR ?= processes
WORKERS ?=
SCHEDULER ?=
WORKER_TIMEOUT ?=
OUT ?=
EXTEND ?=
FORMAT ?=
SPEC ?= experiments/sobol_dropout.toml
# Where runs happen (the sweep runner and virtual trials take the same options) ...
RUN_ARGS = --executor $(EXECUTOR) $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(WORKER_TIMEOUT),--worker-timeout $(WORKER_TIMEOUT)) \
	$(if $(OUT),--out $(OUT))
# ... and what only a sweep takes: EXTEND=2048 adds base samples to a Sobol run, FORMAT=csv writes CSV for R.
SWEEP_ARGS = $(RUN_ARGS) $(if $(EXTEND),--extend $(EXTEND)) $(if $(FORMAT),--format $(FORMAT))

.PHONY: sobol morris grid sweep export sensitivity

sobol: $(VENV)/.installed  ## Sobol indices of dropout and outcomes (experiments/sobol_dropout.toml)
	$(RUN) -m experiments run experiments/sobol_dropout.toml $(SWEEP_ARGS)

morris: $(VENV)/.installed  ## Morris screening of the free parameters (experiments/morris_screening.toml)
	$(RUN) -m experiments run experiments/morris_screening.toml $(SWEEP_ARGS)

grid: $(VENV)/.installed  ## empathy x humility heatmaps (experiments/grid_empathy_humility.toml)
	$(RUN) -m experiments run experiments/grid_empathy_humility.toml $(SWEEP_ARGS)

sweep: $(VENV)/.installed  ## any spec: make sweep SPEC=x.toml EXECUTOR=dask [WORKERS=4 SCHEDULER=tcp://... OUT=dir]
	$(RUN) -m experiments run $(SPEC) $(SWEEP_ARGS)

DIR ?= results/sobol_dropout
export: $(VENV)/.installed  ## a finished sweep as CSV for R: make export DIR=results/sobol_dropout
	$(RUN) -m experiments export $(DIR) --csv

ANALYSIS_ARGS ?=
sensitivity: $(VENV)/.installed  ## re-analyse a sweep: make sensitivity DIR=... ANALYSIS_ARGS="--outputs dropout_rate --resamples 1000"
	$(RUN) -m analysis sensitivity $(DIR) $(ANALYSIS_ARGS)

# ── research questions on the model: scenario discovery and virtual trials ──────────────────
.PHONY: discover trial

DISCOVER_DIR = $(or $(OUT),results/discovery_dropout)
DISCOVER_ARGS ?= --output dropout_rate --above 0.3
discover: $(VENV)/.installed  ## PRIM boxes of dropout above 30% (experiments/discovery_dropout.toml, run or resumed first)
	$(RUN) -m experiments run experiments/discovery_dropout.toml $(SWEEP_ARGS)
	$(RUN) -m analysis discover $(DISCOVER_DIR) $(DISCOVER_ARGS)

TRIAL ?= experiments/trials/trial_feedback.toml
trial: $(VENV)/.installed  ## power curve of a virtual trial, feedback vs usual care on dropout: results/trial_feedback/
	$(RUN) -m analysis trial $(TRIAL) $(RUN_ARGS)

# ── credibility: published facts (docs/validation.md) and calibration (docs/calibration.md) ─────
.PHONY: validate validate-strict docs-validation calibrate

POSTERIOR_DRAWS ?= 40

validate: $(VENV)/.installed  ## every published fact against the baseline, at the point values and with the posterior: results/validate/
	$(RUN) -m analysis validate --out results/validate --posterior $(POSTERIOR_DRAWS)

docs-validation: $(VENV)/.installed  ## the same, also regenerating docs/validation.md and its forest plot
	$(RUN) -m analysis validate --out results/validate --docs docs --posterior $(POSTERIOR_DRAWS)

validate-strict: $(VENV)/.installed  ## the same, exiting non-zero when a calibration fact misses its band at the point values
	$(RUN) -m analysis validate --out results/validate --posterior $(POSTERIOR_DRAWS) --strict

# ABC-SMC on all cores, or on a running Dask cluster: make calibrate SCHEDULER=tcp://host:8786
calibrate: $(VENV)/.installed  ## a posterior over the free parameters: sim/posterior.csv, sim/calibrated.toml, docs/calibration.md
	$(RUN) -m analysis calibrate $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(WORKERS),--workers $(WORKERS))
	$(RUN) -m analysis expected-recovery

# ── interactive app (sim/app.py) and the browser it is tested in ─────────────────────────────────
.PHONY: app

# the viz extra pins solara, solara-assets and ipyvuetify so the app renders offline (no CDN)
$(VENV)/.installed-viz: pyproject.toml $(VENV)/.installed
	$(RUN) -m pip install --quiet -e ".[viz]"
	touch $@

SCENARIO ?= baseline
app: $(VENV)/.installed-viz  ## the browser app (Solara, a Mesa model) on http://127.0.0.1:8765 (localhost only); make app SCENARIO=low_empathy
	$(RUN) -m sim app $(SCENARIO)

# Debian's chromium for tests/test_app.py (Playwright drives it by path; never `playwright install`).
# CI runs as root with apt; elsewhere a failed install only warns, and the browser test skips.
$(VENV)/.chromium: | $(VENV)/.installed
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| { test -z "$$CI" && echo "chromium not installed: the browser test in tests/test_app.py will skip"; }
	if command -v chromium >/dev/null; then touch $@; fi
