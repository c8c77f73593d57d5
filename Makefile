# ChargeSim: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=
# Test processes (pytest-xdist); 0 runs the suite in this process, one test at a time.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
TYPED := chargesim_site chargers locations vehicles fleet_io simulator scripts tests bench api scenarios

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

## make run: install, migrate, start the simulator with the built-in CSMS and a demo fleet,
## and serve the admin and dashboard on http://127.0.0.1:8000
run: $(VENV)/.runtime
	$(BIN)/python manage.py runsimulator --demo

## make test: install runtime and dev requirements, run the whole suite on SQLite, then the
## database tests again on PostgreSQL when one is reachable; TEST_WORKERS processes (2).
test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)
	@if $(BIN)/python -m scripts.reachable "$(PG_TEST_URL)"; then \
		echo "== database tests again on PostgreSQL ($(PG_TEST_URL)) =="; \
		DATABASE_URL="$(PG_TEST_URL)" $(BIN)/python -m pytest -m "django_db and not browser" $(PYTEST_PARALLEL) $(PYTEST_ARGS); \
	else \
		echo "== PostgreSQL not reachable at $(PG_TEST_URL): database tests ran on SQLite only =="; \
	fi

## make lint: ruff, formatting, mypy (with django-stubs) and the import-linter layer contracts
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .hypothesis test-artifacts
