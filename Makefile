# The two entry points: `make demo` and `make test`. Each creates or refreshes
# the virtualenv when pyproject.toml changed, and does nothing more otherwise.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
# Test workers (pytest-xdist), one test file per worker at a time: most e2e tests
# wait on real processes, so more workers than cores pays; the longest files start
# first (tests/conftest.py). `make test WORKERS=2` on a smaller or busier machine.
WORKERS ?= 4
XDIST   := -n $(WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: demo test unit e2e screenshots lint typecheck bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pvoq needs Python >= 3.11 (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pvoq demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST)

unit: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) tests/unit

e2e: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) tests/e2e

# The console's pictures in docs/console/ (docs/console.md), taken by its browser tests.
screenshots: $(STAMP)
	PVOQ_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/python -m pytest -q $(XDIST) \
		tests/e2e/test_console_*.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
