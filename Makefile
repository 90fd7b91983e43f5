# flowlog — the two commands: `make run` (the engine on local services) and `make test`.
PYTHON ?= python3
STAMP  := .cache/install.stamp
SVC    := $(PYTHON) -m flowlog.infra.services.manager
PYTEST_ARGS ?=

.PHONY: help install up down status test test-unit test-integration lint run stop bench clean promtool compose-schema dashboard browser

help:
	@echo "make run     - the whole system: services, every flowlog process, a demo (see README)"
	@echo "make stop    - stop what make run started"
	@echo "make test    - install what is missing, start the services, run every test"
	@echo "make up|down|status - the local Kafka, PostgreSQL, Redis and RabbitMQ"
	@echo "make bench   - the benchmark scripts (figures to benchmarks/results/)"
	@echo "make lint    - ruff and mypy"

# The stamp alone is not trusted: a machine can keep the checkout but lose site-packages.
$(STAMP): pyproject.toml examples/pyproject.toml
	@mkdir -p .cache
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps -e examples
	@touch $(STAMP)

install: $(STAMP)
	@$(PYTHON) -c 'import flowlog.infra.services.manager, faust, pytest, flowlog_examples' \
	  2>/dev/null || \
	  { echo "flowlog is not importable by $(PYTHON): installing"; \
	    $(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]' && \
	    $(PYTHON) -m pip install -q --disable-pip-version-check --no-deps -e examples && \
	    touch $(STAMP); }

up: install
	$(SVC) up
	$(PYTHON) -m flowlog.cli db migrate

down: install
	$(SVC) down

status: install
	$(SVC) status

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy flowlog schemas aggregates streams projections api infra

# promtool (Debian package prometheus) checks infra/prometheus/ in the tests; the same
# package lets `make run` start a Prometheus scraping every process
promtool:
	@command -v promtool >/dev/null || $(PYTHON) -c \
	  'from flowlog.infra.services.base import apt_install; apt_install(["prometheus"])'

# the Compose specification's JSON schema (inside the docker-compose 1.29.2 wheel, read by
# tests/unit/observability/test_deployment_files.py; nothing is installed)
COMPOSE_SCHEMA := .cache/compose-spec/docker_compose-1.29.2-py2.py3-none-any.whl
$(COMPOSE_SCHEMA):
	$(PYTHON) -m pip download -q --disable-pip-version-check --no-deps -d .cache/compose-spec \
	  docker-compose==1.29.2

compose-schema: $(COMPOSE_SCHEMA)

# the dashboard (api/dashboard: Vite + Chart.js) built into api/query/static, which the
# query API serves at /dashboard/; rebuilt whenever a source or the lockfile changes. Not
# committed: a fresh clone builds it from package-lock.json (npm ci).
DASHBOARD_SRC := $(wildcard api/dashboard/src/*) api/dashboard/index.html \
  api/dashboard/vite.config.js api/dashboard/package.json api/dashboard/package-lock.json
api/query/static/index.html: $(DASHBOARD_SRC)
	cd api/dashboard && npm ci --no-audit --no-fund --loglevel=error && npm run build
	@touch $@

dashboard: api/query/static/index.html

# Debian's chromium for the dashboard's browser test (Playwright drives it; no download)
browser:
	@command -v chromium >/dev/null || $(PYTHON) -c \
	  'from flowlog.infra.services.base import apt_install; apt_install(["chromium"])'

test: up lint promtool compose-schema dashboard browser
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PYTHON) -m pytest -m unit $(PYTEST_ARGS)

# the whole system as one supervisor of OS processes (infra/supervisor.py); Ctrl-C or
# `make stop` (from another shell) ends everything it started
run: up promtool dashboard
	$(PYTHON) -m flowlog.cli run $(RUN_ARGS)

stop: install
	$(PYTHON) -m flowlog.cli stop

bench: up
	$(PYTHON) benchmarks/bench_kafka.py
	$(PYTHON) benchmarks/bench_engine.py $(BENCH_ARGS)

clean: down
	rm -rf .state
