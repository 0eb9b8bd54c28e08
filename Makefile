# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data
PYTEST_ARGS ?=

.PHONY: run test install lint typecheck model bench bench-quality bench-model bench-model-compare bench-service clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $@

install: $(VENV)/.installed

## Start Redis (private, under var/, unless REDIS_URL is set), a Celery worker and the API on :8000.
run: install
	$(PY) scripts/run_local.py

## Unit + integration tests: private Redis on a free port, real Celery worker processes.
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check service workers model tests bench scripts

typecheck: install
	$(VENV)/bin/mypy

# --- model targets (owned with model/) --------------------------------------------------
## Train the default model artifact from the shared datasets into model/artifacts/.
model: install
	$(PY) -m model.cli build-default --data $(DATA)

bench-quality: $(VENV)/.installed-bench
	$(PY) bench/quality.py --data $(DATA)

bench-model: $(VENV)/.installed-bench
	$(PY) bench/model_speed.py --data $(DATA)

## Scoring speed of this tree against another commit, alternating in one run (AGAINST=<commit>).
bench-model-compare: $(VENV)/.installed-bench
	@test -n "$(AGAINST)" || (echo "usage: make bench-model-compare AGAINST=<commit>" >&2; exit 2)
	$(PY) bench/model_compare.py --data $(DATA) --against $(AGAINST) $(BENCH_ARGS)
# --- end model targets ------------------------------------------------------------------

## Service speed: intake vs a bare Flask ceiling (wrk), end to end, decisions/s, cost growth.
bench-service: $(VENV)/.installed-bench
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/service.py $(BENCH_ARGS)

## All benchmarks; results land in bench/results/ and the tables in docs/benchmarks.md.
bench: bench-quality bench-model bench-service

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
