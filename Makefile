# coinpulse — the two commands a newcomer needs are `make demo` and `make test`; the rest are shortcuts.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen

.PHONY: setup up down purge status demo test test-fast test-loaded test-unit lint bench

setup: ## system packages a bare Debian lacks (infra/scripts/setup-system.sh, as CI), uv, the Python workspace
	@bash infra/scripts/setup-system.sh
	$(UV) sync --frozen --all-packages

up: setup ## start the native stack and wait until every part is healthy
	$(RUN) coinpulse up

down: ## stop every process the stack started (data kept)
	$(RUN) coinpulse down

purge: ## stop everything and delete all local data
	$(RUN) coinpulse down --purge

status:
	$(RUN) coinpulse status

demo: up ## the whole pipeline on the bundled simulators
	$(RUN) python -m coinpulse_platform.demo

test: setup ## unit, integration and end-to-end tests (starts the stack if needed; the own-stack tests run beside the rest)
	RUN="$(RUN)" bash infra/scripts/run-tests.sh

test-fast: setup ## everything but the slow end-to-end tests (a developer's run, a few minutes)
	$(RUN) pytest -m "not slow"

test-loaded: setup ## the whole suite with two busy loops competing for the cores (timing assumptions fail here)
	RUN="$(RUN)" bash infra/scripts/under-load.sh 2 -- bash infra/scripts/run-tests.sh

test-unit: setup
	$(RUN) pytest -m unit

lint: ## ruff, the import contracts, mypy over the libs, the duplicates budget
	$(RUN) ruff check .
	$(RUN) lint-imports --no-cache
	$(RUN) mypy
	bash infra/scripts/duplicates-budget.sh

bench: up
	for b in bench/*.py; do $(RUN) python $$b || exit 1; done
