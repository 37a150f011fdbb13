# One-command set-up, tests, demo and benchmark.
#   make setup   Debian's QGIS (apt, when root and missing), .venv, pinned packages
#   make test    setup + the whole test suite (pytest + pytest-qgis, offscreen)
#   make test-fast  setup + every test that trains no network (under 2 minutes on 2 cores)
#   make demo    setup + scripts/demo.sh (headless qgis_process) into demo-output/
#   make bench   setup + benchmarks/export_bench.py
#   make package dist/deep_learning_tools.zip for the QGIS plugin repository (no set-up needed)

SHELL := /bin/bash
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-stamp
APT_PACKAGES := qgis python3-qgis qgis-providers python3-venv

.PHONY: setup qgis venv test test-fast demo bench package clean

setup: qgis $(STAMP)

# Debian's QGIS 3.22 (brings qgis_process, python3-qgis, GDAL, numpy 1.24).
qgis:
	@if ! $(SYSTEM_PYTHON) -c "import qgis.core" >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "QGIS python bindings not found: installing Debian's QGIS"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update && apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	  else \
	    echo "QGIS python bindings not found and not root: run as root, or" >&2; \
	    echo "  sudo apt-get install -y --no-install-recommends $(APT_PACKAGES)" >&2; \
	    exit 1; \
	  fi; \
	fi

# A virtual environment made by QGIS's Python that still sees QGIS, GDAL and numpy.
$(PY): | qgis
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)

venv: $(PY)

# pip runs only when the requirement lists or constraints changed since the last install.
# requirements-engine.txt (the engine's one pinned list, shared with the plugin's environment
# installer) goes in with --isolated: pip's configuration on these machines find-links a
# CPU-only torch 2.13.0 wheel that the registry's torchvision 0.28.0 does not import against,
# and --isolated takes the matching pair from the package index. Override with
# `make setup ENGINE_PIP_FLAGS=` where pip's own configuration should apply.
# requirements.txt: the development and test packages.
ENGINE_PIP_FLAGS ?= --isolated
$(STAMP): requirements-engine.txt requirements.txt constraints.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check $(ENGINE_PIP_FLAGS) -r requirements-engine.txt
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest tests -q --durations=25

# The fast lane: export, data, models, packages, the provider with fake workers; the tests marked
# `trains` or `heavy` (pytest.ini) are left out.
test-fast: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest tests -q -m "not trains and not heavy"

demo: setup
	scripts/demo.sh

bench: setup
	$(PY) benchmarks/export_bench.py

# The plugin zip (scripts/make_package.py: what goes in, and the plugin repository's checks).
# Standard library only, so any python3 builds it.
package:
	python3 scripts/make_package.py

clean:
	rm -rf demo-output benchmarks/output .pytest_cache .qgis-settings
