# raymall: `make run` serves the demo shop on the embedded stores; `make test` checks it all.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RAYMALL := $(VENV)/bin/raymall
BENCH_SECONDS ?= 40
BENCH_RATE ?= 200
BENCH_WARMUP ?= 15
# the load test runs on the local servers when they answer; BENCH_STORES= uses embedded stores
BENCH_STORES ?= --mysql-server mysql+pymysql://root@127.0.0.1:3306/ --redis-url redis://127.0.0.1:6379/13
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test lint unit integration e2e browser bench bench-flash migration clean

# the outage tests (tests/e2e/test_outages.py) start, kill and restart servers of their own;
# promtool (Debian package prometheus) checks deploy/alerts.yml in the unit tests
SERVER_PACKAGES := mariadb-server redis-server
# the browser tests (tests/browser/) drive Debian's headless Chromium through Selenium
BROWSER_PACKAGES := chromium chromium-driver

install: $(STAMP)
	@PATH="$$PATH:/usr/sbin" command -v mariadbd >/dev/null && command -v redis-server >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SERVER_PACKAGES) || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SERVER_PACKAGES); } || \
		echo "warning: the outage tests need $(SERVER_PACKAGES): apt-get install $(SERVER_PACKAGES)" >&2
	@command -v promtool >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; } || \
		echo "warning: the alert-rule tests need promtool: apt-get install prometheus" >&2
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES) || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES); } || \
		echo "warning: the browser tests need $(BROWSER_PACKAGES): apt-get install $(BROWSER_PACKAGES)" >&2

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	# CPU build of torch first, so sentence-transformers does not pull CUDA packages
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(RAYMALL) migrate
	$(RAYMALL) seed --demo
	$(RAYMALL) serve

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

integration: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/integration

e2e: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/e2e tests/browser

# the storefront and admin journeys alone (headless Chromium; screenshots in var/screenshots/)
browser: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/browser

test: install
	@bash scripts/test.sh

bench: install
	$(PY) bench/load_test.py --warmup-seconds $(BENCH_WARMUP) --duration $(BENCH_SECONDS) --rate $(BENCH_RATE) \
		--capacity-seconds 15 --concurrency 32 --out bench/report $(BENCH_STORES)

# the flash-sale benchmark drives its load with wrk (a Debian package, installed when missing)
bench-flash: install
	@command -v wrk >/dev/null || apt-get install -y -q wrk || \
		{ echo "bench-flash needs wrk: apt-get install wrk" >&2; exit 1; }
	$(PY) bench/flash_sale.py $(FLASH_BENCH_ARGS)

migration: install
	$(PY) scripts/regen_initial_migration.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
