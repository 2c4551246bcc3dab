# The workbook's commands. `make help` lists them.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
CL    := $(VENV)/bin/cloudlab
PYTEST := bash scripts/pytest.sh

.DEFAULT_GOAL := help
.PHONY: help setup run lab test test-quick bench lint clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: ## venv + package; as root on Debian also Docker, registry, Prometheus...; idempotent
	@bash scripts/setup.sh

run: setup ## set up, start services, run every notebook headless, grade a demo course, summarise
	@$(CL) services up
	@$(CL) run --quiet --jobs 2; rc=$$?; \
	 echo; echo "== grading demo"; $(PY) scripts/grading_demo.py || rc=1; \
	 $(CL) cleanup >/dev/null; exit $$rc

lab: setup ## open JupyterLab on the workbook
	$(VENV)/bin/jupyter lab --notebook-dir=. notebooks/00-getting-started.ipynb

test: ## set up, then run every test tier (unit, integration, notebooks, grading, browser)
	@t0=$$(date +%s); fresh=$$(test -x $(PY) && echo no || echo yes); \
	 bash scripts/setup.sh --with-browser && \
	 CLOUDLAB_TEST_SINCE=$$t0 CLOUDLAB_TEST_FRESH=$$fresh $(PYTEST) --lanes

test-quick: ## unit tests only (no services, seconds)
	@test -x $(PY) || bash scripts/setup.sh --python-only
	@$(PYTEST) -m unit tests

bench: setup ## every bench/*.py, then one report: bench/REPORT.md + plots (targets live here)
	@rm -rf bench/results bench/plots; rc=0; $(CL) services up >/dev/null || rc=1; \
	 for b in $(filter-out bench/report.py,$(wildcard bench/[a-z]*.py)); do \
	   echo "== $$b"; $(PY) $$b || rc=1; done; \
	 echo "== bench/kubernetes_grading.py --real-node"; \
	 $(PY) bench/kubernetes_grading.py --real-node || rc=1; \
	 $(PY) bench/report.py || rc=1; exit $$rc

lint: ## ruff on the library, tests and scripts
	@$(VENV)/bin/ruff check lib tests scripts

clean: ## remove what the workbook created (containers, services, outputs)
	-@test -x $(CL) && $(CL) cleanup
	rm -rf runs course .pytest_cache
