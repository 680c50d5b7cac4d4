# The two commands of the README, and what they stand on. Each target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast test-speed test-batch test-serving test-platform faults setup jars browser down lock clean

demo: setup  ## start the local stack and run the main job on local defaults
	$(BIN)/braid demo $(DEMO_ARGS)

# TEST_WORKERS=2: two pytest-xdist workers, each with its own Kafka, Cassandra and Spark session; a module's tests stay
# on one worker and the slowest modules go first (tests/conftest.py). On the 2-core machine the service tests then
# compete for the cores: 1,805 s against 1,980 in one process for the same code (2026-12-07), each service test about
# twice as long, so one process stays the default.
TEST_WORKERS ?= 0
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

test: setup  ## the test suite, against real Kafka, Cassandra, Spark/Delta (started once per worker, stopped at the end)
	$(BIN)/python -m pytest $(XDIST) --durations=25 $(PYTEST_ARGS)

test-fast: $(VENV)/.installed  ## every test that needs no service and no Spark: the developer's loop
	$(BIN)/python -m pytest $(XDIST) -m "not services and not spark" -q $(PYTEST_ARGS)

# Each layer's tests alone (its integration tests start the services and the Spark session they need).
test-speed: setup
	$(BIN)/python -m pytest tests/speed $(PYTEST_ARGS)

test-batch: setup
	$(BIN)/python -m pytest tests/batch tests/dags $(PYTEST_ARGS)

test-serving: setup
	$(BIN)/python -m pytest tests/serving $(PYTEST_ARGS)

test-platform: setup  ## services, CLI, producers, ingest, demo, soak, deployment files
	$(BIN)/python -m pytest tests/braid tests/schemas tests/docker tests/test_prepared_statements.py $(PYTEST_ARGS)

faults: setup  ## only the fault suite (tests/faults; part of `make test` too)
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

setup: $(VENV)/.installed jars browser

# The dashboard's browser test drives Debian's Chromium through its ChromeDriver; installed once, as root or via sudo.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

jars: $(VENV)/.installed  ## Maven Central -> ~/.braid/jars, once
	$(BIN)/braid jars

down: $(VENV)/.installed
	$(BIN)/braid down

lock: $(VENV)/.installed  ## re-resolve requirements.lock after changing pyproject.toml
	{ echo "# Every package Braid installs, resolved together (Python 3.11); used as a pip constraint by the Makefile."; \
	  echo "# Regenerate after changing pyproject.toml: make lock"; \
	  $(BIN)/pip freeze --exclude-editable; } > requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info
