# flowlog — the two commands: `make run` (the engine on local services) and `make test`.
PYTHON ?= python3
STAMP  := .cache/install.stamp
SVC    := $(PYTHON) -m flowlog.infra.services.manager
PYTEST_ARGS ?=

.PHONY: help install up down status test test-unit test-integration lint run bench clean

help:
	@echo "make run     - start the services and the engine (see README)"
	@echo "make test    - install what is missing, start the services, run every test"
	@echo "make up|down|status - the local Kafka, PostgreSQL, Redis and RabbitMQ"
	@echo "make bench   - the benchmark scripts (figures to benchmarks/results/)"
	@echo "make lint    - ruff and mypy"

# The stamp alone is not trusted: a machine can keep the checkout but lose site-packages.
$(STAMP): pyproject.toml
	@mkdir -p .cache
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)
	@$(PYTHON) -c 'import flowlog.infra.services.manager, faust, pytest' 2>/dev/null || \
	  { echo "flowlog is not importable by $(PYTHON): installing"; \
	    $(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]' && touch $(STAMP); }

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

test: up lint
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PYTHON) -m pytest -m unit $(PYTEST_ARGS)

run: up
	$(PYTHON) -m flowlog.cli run

bench: up
	$(PYTHON) benchmarks/bench_kafka.py
	$(PYTHON) benchmarks/bench_engine.py $(BENCH_ARGS)

clean: down
	rm -rf .state
