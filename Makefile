PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest docs bench soak soak-autoscale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,cli,bench,docs,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# Strict: a warning (a broken reference, a public name without a docstring) fails.
# -E: re-read every page, so that no warning hides in a cached one.
docs: $(STAMP)
	$(BIN)/sphinx-build -E -q -W --keep-going -b html docs docs/_build/html

test: lint typecheck docs pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

soak: $(STAMP)
	$(BIN)/python -m tests.soak --minutes $${MINUTES:-5}

# The same with autoscaling and recycling on and a factory failing 1 call in 20.
soak-autoscale: $(STAMP)
	$(BIN)/python -m tests.soak --minutes $${MINUTES:-5} --autoscale

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache docs/_build
