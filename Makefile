# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make run    venv + install + the local stack with every function on http://127.0.0.1:8080
#   make test   venv + install + lint + the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean

$(STAMP): requirements.txt scripts/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) scripts/run_local.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache
