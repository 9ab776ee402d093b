# The README's commands. `make demo` and `make test` each set up .venv first (once).
#
# torch: this Makefile installs TORCH_SPEC only when the venv has no torch yet, so a GPU box
# keeps its CUDA build. On Linux `pip install torch==2.13.0` from PyPI is a CUDA build; on the
# project's CPU machines the same pin resolves to a CPU wheel on local disk.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vlkit-installed

.PHONY: setup demo test lab lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[notebooks,dev,serve]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m vlkit weights --obtain
	$(PY) -m vlkit demo --out out/demo

test: setup
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 notebooks/

lint: setup
	$(VENV)/bin/ruff check vlkit widgets tests bench
	$(VENV)/bin/ruff format --check vlkit widgets tests bench

bench: setup
	$(PY) bench/core.py

clean:
	rm -rf $(VENV) out
