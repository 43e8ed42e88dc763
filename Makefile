# mtkit: the two commands a fresh machine needs are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
# torch is installed on its own first: torch==2.13.0 is the CPU wheel on a CPU-only course machine
# whose pip has it locally, and the CUDA build from PyPI on a Linux GPU machine.
# Override, e.g. `make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`.
# The editable install filters one message, setuptools' "Editable installation" note (a folder named like the
# package in the working directory could shadow it: here that folder is the package, which is the point).
TORCH_SPEC ?= torch==2.13.0
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

.PHONY: setup demo test test-fast notebooks-test exercises lab bench results results-gpu reproduce ui-test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	PYTHONWARNINGS="ignore:Editable installation:Warning" $(BIN)/python -m pip install -q -e ".[test]"
	# test-only reference for the methods lab; --no-deps: its torchvision requirement would replace torch
	$(BIN)/python -m pip install -q --no-deps "LibMTL>=1.1.5"
	touch $@

## The main job: every notebook, headless, on the embedded demo data -> runs/demo (executed copies + summary)
demo: setup
	$(BIN)/python -m mtkit.teach.notebook_runner --out runs/demo

## Everything CI checks: unit tests, then the notebooks against their committed outputs
test: setup
	$(BIN)/python -m pytest tests -q
	$(BIN)/python -m pytest --nbval notebooks -q -p no:cacheprovider --nbval-sanitize-with notebooks/sanitize.cfg

test-fast: setup
	$(BIN)/python -m pytest tests -q -m "not slow"

## Regenerate exercises/ from solutions/
exercises: setup
	$(BIN)/python -m mtkit.exercises solutions exercises

## JupyterLab rooted at the project root, opened on notebook 01: exercises/, notebooks/ and data/ are all in its
## file browser (a notebook's kernel still runs in notebooks/). LAB_OPTIONS adds options, e.g. --no-browser --port=8889
LAB_OPTIONS ?=
lab: setup
	$(BIN)/python -m jupyterlab --ServerApp.root_dir="$(CURDIR)" $(LAB_OPTIONS) notebooks/01_setup_and_data.ipynb

bench: setup
	$(BIN)/python bench/run_all.py

## The reports' comparisons on the real data, one budget and three seeds: docs/RESULTS.md (bench/results.py)
## (data: $MTKIT_DATA, else the folders `python -m bench.results --help` names, such as data/results as
## `mtkit data fetch` + `mtkit data split` make it: see docs/RESULTS.md).
## Each refuses the other's device: `make results` on a GPU says to use `make results-gpu`.
results: setup
	$(BIN)/python -m bench.results --protocol compact-cpu --doc docs/RESULTS.md

## The same on a GPU with the complete training sets
results-gpu: setup
	$(BIN)/python -m bench.results --protocol full-gpu --device cuda --doc docs/RESULTS.md

## All notebooks with full parameters on the real data (GPU)
reproduce: setup
	$(BIN)/python -m mtkit.teach.notebook_runner --out runs/full --profile full --data-dir $${MTKIT_DATA:-data}

ui-test: setup
	$(BIN)/python -m pytest tests/ui -m ui -q

clean:
	rm -rf $(VENV) runs artifacts
