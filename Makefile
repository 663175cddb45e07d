# Tickets Wholesale webhook receiver template: developer tasks.
# `make test` and `make demo` create $(VENV) on first use and reinstall when
# requirements.txt changes.

PYTHON ?= python3
VENV ?= .venv
LOWEST_VENV ?= .venv-lowest
BIN := $(VENV)/bin
BUILD_DIR ?= build

.PHONY: help install test test-fast demo bake bench clean

help:
	@echo "make test       run the template tests (bakes option sets, runs the generated tests)"
	@echo "make test-fast  the same without the slow tests"
	@echo "make demo       bake a project and show a signed event going through it"
	@echo "make bake       bake the defaults into $(BUILD_DIR)/"
	@echo "make bench      bake the defaults and print the performance table (a few minutes)"
	@echo "make clean      remove $(BUILD_DIR)/ and caches (keeps $(VENV))"

# Debian and Ubuntu ship Python's venv module in a package of its own.
$(VENV)/.installed: requirements.txt
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "make: '$(PYTHON) -m venv' failed: this needs Python 3.11+ with its venv module" \
	       "(on Debian and Ubuntu: sudo apt install python3-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

# The generated project's dependencies at their lowest allowed versions, for the test
# that runs part of its suite on them (tests/test_platforms.py).
$(LOWEST_VENV)/.installed: requirements-lowest.txt
	@$(PYTHON) -m venv $(LOWEST_VENV) || { rm -rf $(LOWEST_VENV); exit 1; }
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet -r requirements-lowest.txt
	touch $@

install: $(VENV)/.installed $(LOWEST_VENV)/.installed

test: install
	$(BIN)/python -m pytest tests

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest tests -m "not slow"

demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py

bake: $(VENV)/.installed
	rm -rf $(BUILD_DIR)/tw-webhook-receiver
	$(BIN)/cookiecutter --no-input --output-dir $(BUILD_DIR) .

# Not part of `make test`: it takes minutes and its figures depend on the machine.
# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS=--quick
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(BUILD_DIR) dist .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
