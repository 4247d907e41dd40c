# cio-mavera: `make demo` and `make test` are all a new user needs (`make help` lists the rest).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast bench lab lint services clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cio-mavera needs Python 3.11+; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cio-mavera)" >/dev/null
	@touch $@

setup: $(STAMP) ## Create .venv and install the kit with its dev extras

services: ## Install redis-server and chromium if missing (Debian, as root); tests start them themselves
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (Debian package) for the Redis queue tests"; \
	    (apt-get install -y -qq redis-server >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)); \
	  else echo "redis-server not found: Redis tests will be skipped (apt-get install redis-server)"; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (Debian package) for the real-browser report tests"; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1)) || \
	    echo "chromium could not be installed: the browser report tests will be skipped"; \
	  else echo "chromium not found: the browser report tests will be skipped (apt-get install chromium)"; fi; }

demo: setup ## Run every job against the local sandbox and print where the reports are
	$(BIN)/cio-mavera demo

# One worker per core (at most 4), a whole file each: --dist loadfile keeps a file's module fixtures in one process.
test: setup services ## Run the whole test suite (unit, sandbox integration, notebooks)
	$(BIN)/ruff check cio_mavera tests bench
	$(BIN)/python -m pytest -q --numprocesses=auto --maxprocesses=4 --dist loadfile

bench: setup services ## Run the benchmarks in bench/ and print their figures
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lab: setup ## Open JupyterLab on the landing notebook (notebooks/00_start_here.ipynb)
	$(BIN)/jupyter lab notebooks/00_start_here.ipynb

lint: setup ## ruff over the package, tests and benchmarks
	$(BIN)/ruff check cio_mavera tests bench

clean: ## Remove the venv, caches and rendered reports (keeps .gitkeep)
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find data reports -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
