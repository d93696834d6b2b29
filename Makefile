# Tidings — two commands: `make demo` and `make test`. Both set everything up on a fresh
# machine that has Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The web client (client_sdk/web, npm @tidings/client): its dev tools, at the exact versions
# of its package-lock.json, installed again only when that changes.
NPM ?= npm
WEB := client_sdk/web
WEB_STAMP := $(WEB)/node_modules/.installed
NEED_NPM = @command -v $(NPM) >/dev/null 2>&1 && node -e 'process.exit(+process.versions.node.split(".")[0] < 20 ? 1 : 0)' 2>/dev/null || { echo "make: the web client (client_sdk/web) needs Node 20 or later and npm" >&2; exit 1; }
# The browser tests drive Debian's Chromium with Playwright's Python package (never a browser
# of Playwright's own download): installed with apt when missing, as root or through sudo.
# Only `make test` needs it.
CHROMIUM := /usr/bin/chromium
# bench/web_client.py: the bundler and AWS Amplify, to compare the web client's size with.
BENCH_WEB := bench/web

.PHONY: demo test check fuzz acceptance lint typecheck js-test chromium bench wheels clean

# Both distributions (tidings-client from clients/python, tidings from here) editable with
# every extra, and the tools, at the exact versions of constraints.txt.
$(STAMP): constraints.txt requirements-dev.txt pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt \
		-e './clients/python[v1]' -e '.[local,deploy]'
	touch $(STAMP)

$(WEB_STAMP): $(WEB)/package-lock.json $(WEB)/package.json
	$(NEED_NPM)
	cd $(WEB) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

# A file target: nothing to do once the package is installed.
$(CHROMIUM):
	@command -v apt-get >/dev/null 2>&1 || { echo "make: the browser tests need Chromium at $(CHROMIUM): install Debian's chromium package" >&2; exit 1; }
	@if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	else echo "make: the browser tests need Debian's chromium package: run as root, or install it with 'apt-get install --no-install-recommends chromium'" >&2; exit 1; fi; \
	set -x; $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
	@test -x $(CHROMIUM) || { echo "make: the chromium package did not install $(CHROMIUM)" >&2; exit 1; }

chromium: $(CHROMIUM)

demo: $(STAMP)
	$(VENV)/bin/tidings demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy backend auth client_sdk infra

# The web client: its types (tsc) and its tests (node --test), among them the ordering
# conformance scenarios of tests/conformance that pytest runs against the Python client.
js-test: $(WEB_STAMP)
	$(NEED_NPM)
	cd $(WEB) && $(NPM) run --silent typecheck
	cd $(WEB) && $(NPM) test --silent

# The whole suite, two test processes (a test file stays in one process, so its module-scoped
# servers are shared as written). PYTEST_WORKERS=0 runs it in this process.
PYTEST_WORKERS ?= 2

test: $(STAMP) $(CHROMIUM) lint typecheck js-test
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

# The quick loop: unit and functional tests only, the fuzzers with a fifth of their examples.
check: $(STAMP)
	TIDINGS_FUZZ_SCALE=0.2 $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests/unit tests/functional

# Schemathesis against the running local API (tests/functional/test_api_fuzz.py): 500 cases
# per operation and mode instead of `make test`'s 25. FUZZ_EXAMPLES=N for another number.
FUZZ_EXAMPLES ?= 500

fuzz: $(STAMP)
	TIDINGS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/functional/test_api_fuzz.py

# The acceptance suite (tests/acceptance) against the local stack; against a stack deployed
# with `tidings deploy`: make acceptance ACCEPTANCE_ARGS="--stack NAME --region R".
acceptance: $(STAMP)
	$(PY) -m pytest -q tests/acceptance $(ACCEPTANCE_ARGS)

bench: $(STAMP)
	$(PY) bench/fanout.py
	$(PY) bench/login.py
	$(PY) bench/publisher.py
	$(PY) bench/e2e.py
	$(PY) bench/client.py
	$(PY) bench/micro.py
	$(PY) bench/startup.py
	$(PY) bench/devices.py
	$(PY) bench/web_client.py

# The two wheels, in dist/: tidings-client (clients/python) and tidings. Earlier build output
# goes first: setuptools would pack a module left in build/ that the sources no longer have.
wheels:
	rm -rf dist build clients/python/build
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir dist ./clients/python .

clean:
	rm -rf $(VENV) .tidings .pytest_cache .mypy_cache .ruff_cache dist build clients/python/build \
		$(WEB)/node_modules $(WEB)/types $(BENCH_WEB)/node_modules
