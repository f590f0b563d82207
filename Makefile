# tiaojie: the two commands a newcomer needs, and a few for administrators.
#
#   make run    set up .venv, migrate, load the centre directory and start the assistant
#               on its embedded defaults (SQLite in ./var)
#   make test   set up .venv, lint with ruff, run the whole test suite
#
# Everything is installed from pyproject.toml into .venv; nothing is assumed on the machine
# except Python >= 3.11.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CENTRES ?= storage/data/baoan_centres.yml

.PHONY: run test lint setup migrate rasa rasa-stop test-rasa bench clean browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(BIN)/tiaojie db upgrade
	$(BIN)/tiaojie centers load $(CENTRES)

run: migrate
	$(BIN)/tiaojie run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint browser-deps
	$(BIN)/python -m pytest -q

# The workspace's browser tests drive Debian's Chromium (Playwright's own download does
# not work here) and need a CJK font; installed when running as root and missing.
browser-deps:
	@if [ "$$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei) >/dev/null; \
	fi

bench: setup
	$(BIN)/python benchmarks/nlu_bench.py
	$(BIN)/python benchmarks/dialogue_bench.py

# Optional Rasa 3.6 server (Python 3.10 venv in .venv-rasa, ~2.7 GB, several minutes).
rasa:
	scripts/rasa.sh setup
	scripts/rasa.sh train
	scripts/rasa.sh serve

rasa-stop:
	scripts/rasa.sh stop

test-rasa: setup
	scripts/rasa.sh test

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
