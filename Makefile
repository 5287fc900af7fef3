# wslviz set-up and entry points. Every target sets itself up first: a virtual environment in .venv, the
# CPU build of torch (installed before anything else, because a bare `torch` requirement pulls a multi-GB
# CUDA build), then the package. Stamp files depending on pyproject.toml make re-runs on a set-up
# checkout instant: nothing is reinstalled unless pyproject.toml or TORCH_SPEC changed.
#
#   make app     start the app on the bundled sample zoo (ZOO=path/to/zoo to open another; PORT=8501), on
#                127.0.0.1 only: to share it with a class use `wslviz serve --zoo-root DIR --address 0.0.0.0`
#   make test    the whole pytest suite, the real-browser test included (installs Debian's chromium if missing),
#                then the tests marked `kernels` (floats of different code paths or thread counts) again under
#                ATEN_CPU_CAPABILITY=default (torch's baseline kernels, no AVX2/AVX-512 dispatch: they round differently)
#   make bench   every benchmark script under benchmarks/

SHELL := /bin/bash
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PORT ?= 8501
ZOO ?=
CHROMIUM ?= /usr/bin/chromium
PYTEST_ARGS ?= -ra
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCHES = $(wildcard benchmarks/bench_*.py) $(wildcard benchmarks/*_table.py) $(wildcard benchmarks/leaderboard.py)

.PHONY: app test bench chromium FORCE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Rewritten (and torch reinstalled) only when TORCH_SPEC differs from the one installed; make re-reads the
# stamp's time after the recipe, so an unchanged stamp triggers nothing downstream.
$(VENV)/.stamp-torch: FORCE | $(BIN)/python
	@grep -qxF '$(TORCH_SPEC)' $@ 2>/dev/null || { $(PIP) install '$(TORCH_SPEC)' && echo '$(TORCH_SPEC)' > $@; }

$(VENV)/.stamp-app: pyproject.toml $(VENV)/.stamp-torch
	$(PIP) install -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-app
	$(PIP) install -e '.[dev,hf]'
	touch $@

chromium:
	@test -x $(CHROMIUM) || { export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }; }

app: $(VENV)/.stamp-app
	$(if $(ZOO),WSLVIZ_ZOO='$(ZOO)') $(BIN)/python -m streamlit run app.py --server.headless true \
		--browser.gatherUsageStats false --server.address 127.0.0.1 --server.port $(PORT)

test: $(VENV)/.stamp-dev chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest $(PYTEST_ARGS) -m kernels

bench: $(VENV)/.stamp-dev
	@set -e; for f in $(BENCHES); do echo "== $$f"; $(BIN)/python $$f; done
