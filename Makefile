# mrcnn-np: the README's two commands are `make demo` and `make test`.
# Both create .venv/ when it is missing and install the project into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# Stamps record what was installed, so a changed pyproject.toml reinstalls.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test notebooks lessons-check bench clean venv lab lab-oracle

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(BASE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[notebooks]"
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test,notebooks]"
	touch $@ $(BASE_STAMP)

venv: $(BASE_STAMP)

# The main job: shapes data set -> train the tiny preset -> evaluate -> runs/demo/.
# One BLAS thread: the tiny model's matrices are small, and measured no slower than two.
demo: $(BASE_STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m mrcnn_np demo --out runs/demo

# Every test: unit, gradient checks, oracle (torch/torchvision), kernels (CUDA simulator
# when there is no GPU), notebooks (match their lesson and execute from a clean kernel).
test: $(TEST_STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile tests

# Rebuild notebooks/ from lessons/ and execute them, keeping outputs.
notebooks: $(TEST_STAMP)
	$(PY) tools/notebooks.py build

# Open the chapters: JupyterLab in notebooks/ from .venv (the run-time stack; every chapter but
# 13 runs on it). `make lab-oracle` also installs torch/torchvision first, for chapter 13.
# JupyterLab prints the address to open; LAB_ARGS passes options (LAB_ARGS=--no-browser).
lab: $(BASE_STAMP)
	cd notebooks && ../$(PY) -m jupyter lab $(LAB_ARGS)

lab-oracle: $(TEST_STAMP)
	cd notebooks && ../$(PY) -m jupyter lab $(LAB_ARGS)

bench: $(TEST_STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis build *.egg-info
