# The two commands of the README: `make demo` and `make test`.
# Both create .venv with plain pip when it is missing (or when pyproject.toml changed), then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medact-installed
PYTEST_ARGS ?=
# one pytest worker per core (tests/conftest.py gives each one intra-op thread): much of the suite is
# single-threaded Python (importing monai takes 8-9 s of CPU in each of the ~80 processes the tests and tutorials
# start). One more worker than cores was measured slower (14.7 vs 13.3 min: the CPU is the limit, not waiting).
# The tutorial pages, minutes each, are split over four files and scheduled first (tests/conftest.py), so that
# no file is the long pole; each worker holds ~1.5 GB.
PYTEST_WORKERS ?= auto

.PHONY: FORCE demo demo-medseg demo-action demo-engine serve serve-scans test test-docs lint limits format docs tutorials install clean

# The install is editable in setuptools' strict mode: the venv sees a tree of links to the package files only
# (build/__editable__.*), so a folder named shared/ or action/ in the working directory (a user's data) cannot shadow
# medact's packages, as it does with the default editable finder (measured: tests/test_packaging.py). A link tree
# does not see new files, so the install is redone when pyproject.toml or the list of package files changes.
FILES := $(VENV)/.medact-files
$(STAMP): pyproject.toml $(FILES)
	@if ! $(PY) -c "import sys" >/dev/null 2>&1; then rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' --config-settings editable_mode=strict
	@# MONAI Label's real clients (its Python client and 3D Slicer's), for the annotation-loop tests: without its
	@# dependencies, which pin a server stack medact does not use; the clients need only requests
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'monailabel==0.8.5'
	@touch $(STAMP)

$(FILES): FORCE
	@mkdir -p $(VENV)
	@find shared medseg action bundles -type f -not -path '*/__pycache__/*' | sort > $@.new
	@if ls -d build/__editable__.medact-* >/dev/null 2>&1 && cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

FORCE:

install: $(STAMP)

# both halves: V-Net segmentation (~3.5 min), then GRU action recognition (1.5-5 min)
demo: demo-medseg demo-action

demo-medseg: $(STAMP)
	$(PY) -m medseg.demo

demo-action: $(STAMP)
	$(PY) -m action.demo

demo-engine: $(STAMP)
	$(PY) -m shared.demo --out demo_output

# ruff: lint rules and formatting as configured in pyproject.toml ([tool.ruff]); part of make test
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# no module over 450 lines, no function over 60 (also a test of make test)
limits: $(STAMP)
	$(PY) tests/test_code_limits.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

PYTEST := $(PY) -m pytest -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder

# every test but the documentation pages run as a reader would (tutorials at full size, to reach the numbers they
# quote; every page's commands from the wheel): 27 of the suite's 41 minutes on this 2-core machine. make test-docs
# runs those (CI runs both); tests/test_packaging.py keeps the installed wheel here.
test: lint
	@sh .ci/install-chromium
	@sh .ci/install-orthanc
	$(PYTEST) -m "not docs" $(PYTEST_ARGS)

# the 8 tutorials (each quoted number checked, as make tutorials does, figures untouched) and every guide's commands
test-docs: $(STAMP)
	$(PYTEST) -m docs $(PYTEST_ARGS)

# the documentation site, offline, into site/; any warning fails (mkdocs.yml: strict)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# run every tutorial's code in work/tutorials/, check its quoted numbers, refresh its figures
tutorials: $(STAMP)
	$(PY) docs/tutorials.py --update-figures

serve: $(STAMP)
	$(PY) -m action serve --model demo_output/action/c3d_gru

serve-scans: $(STAMP)
	$(PY) -m medseg serve --bundle demo_output/medseg/vnet_seg

clean:
	rm -rf demo_output demo_data test-artifacts .pytest_cache bundles/*/models bundles/*/eval site work
