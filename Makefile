# The two commands of the README: `make up` (the main job) and `make test` (the tests).
PYTHON ?= python3

.PHONY: up test deps python-deps system-deps lint bench

up: python-deps
	$(PYTHON) -m meshdcm.cli.main up

test: deps lint
	$(PYTHON) -m pytest -q -ra --durations=15

deps: system-deps python-deps

system-deps:
	bash scripts/install-system-packages.sh

python-deps:
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[dev]'

lint:
	$(PYTHON) -m ruff check meshdcm nodes tests bench

bench: deps
	for b in bench/[a-z]*.py; do $(PYTHON) $$b --quick || exit 1; done
