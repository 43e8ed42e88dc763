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

.PHONY: setup demo test test-fast notebooks-test exercises bench results results-gpu reproduce ui-test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	PYTHONWARNINGS="ignore:Editable installation:Warning" $(BIN)/python -m pip install -q -e ".[test]"
	touch $@

## The main job: every notebook, headless, on the embedded demo data -> runs/demo (executed copies + summary)
demo: setup
	$(BIN)/python -m mtkit.notebook_runner --out runs/demo

## Everything CI checks: unit tests, then the notebooks against their committed outputs
test: setup
	$(BIN)/python -m pytest tests -q
	$(BIN)/python -m pytest --nbval notebooks -q -p no:cacheprovider --nbval-sanitize-with notebooks/sanitize.cfg

test-fast: setup
	$(BIN)/python -m pytest tests -q -m "not slow"

## Regenerate exercises/ from solutions/
exercises: setup
	$(BIN)/python -m mtkit.exercises solutions exercises

bench: setup
	$(BIN)/python bench/run_all.py

## The reports' comparisons on the real data, one budget and three seeds: docs/RESULTS.md (bench/results.py)
results: setup
	$(BIN)/python -m bench.results --protocol compact-cpu --data-dir $${MTKIT_DATA:-../shared/data} --doc docs/RESULTS.md

## The same on a GPU with the complete training sets
results-gpu: setup
	$(BIN)/python -m bench.results --protocol full-gpu --device cuda --data-dir $${MTKIT_DATA:-../shared/data} --doc docs/RESULTS.md

## All notebooks with full parameters on the real data (GPU)
reproduce: setup
	$(BIN)/python -m mtkit.notebook_runner --out runs/full --profile full --data-dir $${MTKIT_DATA:-../shared/data}

ui-test: setup
	$(BIN)/python -m pytest tests/ui -m ui -q

clean:
	rm -rf $(VENV) runs artifacts
