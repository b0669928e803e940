# The two commands of the README: `make up` (the main job) and `make test` (the tests).
# Both run in the project's virtual environment $(VENV), created when missing with the first Python >= 3.11 on PATH
# (never the system's Python: Debian's refuses pip installs), and installed with the pinned versions of constraints.txt.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip install -q --disable-pip-version-check
PYTEST := $(PYTHON) -m pytest -q -ra --durations=15
# make up MESH=ward3: a mesh of its own name (and state folder), so that two `make up` run side by side
MESH ?=

.PHONY: up test test-fast deps python-deps js-deps js-test system-deps lint bench lock

up: python-deps
	$(PYTHON) -m meshdcm.cli.main up $(if $(MESH),--mesh $(MESH))

test: deps lint
	$(PYTEST)
	$(MAKE) js-test

# everything but the tests marked slow (real Orthanc, Chromium, network namespaces, chaos)
test-fast: deps lint
	$(PYTEST) -m "not slow"

deps: system-deps python-deps js-deps

# The JavaScript package (js/, docs in js/README.md): its pinned dependencies (package-lock.json) and its tests
# (node --test), which start Python nodes from $(VENV). --ignore-scripts: zeromq ships a prebuilt libzmq.
js-deps: js/node_modules/.installed

js/node_modules/.installed: js/package.json js/package-lock.json
	cd js && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

js-test: js-deps python-deps
	cd js && MESHDCM_PYTHON=$(abspath $(PYTHON)) node --test test/*.test.js

system-deps:
	bash scripts/install-system-packages.sh

python-deps: $(VENV)/.installed

$(PYTHON):
	bash scripts/venv.sh $(VENV)

# nilearn is installed as a data package only (the MNI ICBM152 brain the realistic studies are made of,
# docs/studies.md): --no-deps keeps its scikit-learn/pandas out, and meshdcm never imports it.
$(VENV)/.installed: $(PYTHON) pyproject.toml constraints.txt
	$(PIP) -c constraints.txt -e '.[dev]'
	$(PIP) -c constraints.txt --no-deps nilearn
	touch $@

lint: python-deps
	$(PYTHON) -m ruff check meshdcm nodes tests bench

bench: deps
	for b in bench/[a-z]*.py; do $(PYTHON) $$b --quick || exit 1; done

# Refresh the pins: the newest versions that pyproject.toml's ranges allow, in a throw-away environment.
# Run `make test` afterwards and commit constraints.txt only when it passes.
lock:
	rm -rf .venv-lock
	bash scripts/venv.sh .venv-lock
	.venv-lock/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	.venv-lock/bin/python -m pip install -q --disable-pip-version-check --no-deps nilearn
	{ echo "# Versions \`make test\` passed with (pip constraints; refresh with \`make lock\`)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .venv-lock
