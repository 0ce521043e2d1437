# slam-recipes — common tasks. `make pretrain` and `make test` install first when needed.
PYTHON ?= python
TORCH_VERSION ?= 2.13.0
CONFIG ?= recipes/demo/pretrain.yaml
ACCELERATE_CONFIG ?=
ARGS ?=

.PHONY: install test test-all lint format demo demo-sims demo-corpus pretrain dpo eval bench clean

install: .installed

# torch first, and only when missing: an installed build (CUDA or CPU) is never replaced.
.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -e ".[dev]" -c constraints.txt
	$(PYTHON) recipes/pretrain.py --help > /dev/null  # stores the training recipes' --help (see slam_recipes/recipe_help.py)
	$(PYTHON) recipes/dpo.py --help > /dev/null
	touch .installed

# The default tier: offline, CPU only, under 10 minutes on 2 cores without native bf16.
test: install
	$(PYTHON) -m pytest

# Every tier but the GPU one: adds the slow tests (the whole demo pipeline, DeepSpeed, ...). What CI runs.
test-all: install
	$(PYTHON) -m pytest -m "not gpu"

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: install
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

# The main job: the whole pipeline on CPU (pretrain → evaluate → DPO → evaluate) on the spoken demo corpus in data/demo,
# ending with a results table and a loss / learning-rate plot in outputs/demo.
demo: install
	$(PYTHON) recipes/demo.py $(ARGS)

# Interleaved speech-text training (SIMS) on the same corpus: pretrain → speech-only and cross-modal evaluation, with
# a results table in outputs/demo-sims.
demo-sims: install
	$(PYTHON) recipes/demo_sims.py $(ARGS)

# Rebuild the spoken demo corpus (espeak-ng, from the tts extra that `make install` includes) and compare it with the
# committed one.
demo-corpus: install
	$(PYTHON) recipes/make_demo_corpus.py --verify data/demo

# Pretrain a speech LM (default: the CPU demo on the units shipped in data/demo).
#   make pretrain CONFIG=recipes/slam/pretrain.yaml ACCELERATE_CONFIG=accelerate_configs/a5000_24h.yaml
pretrain: install
	$(PYTHON) -m accelerate.commands.launch $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),--num_processes 1) recipes/pretrain.py --config $(CONFIG) $(ARGS)

# Stage 2: DPO (default: the CPU demo, from the output of `make pretrain`).
DPO_CONFIG ?= recipes/demo/dpo.yaml
dpo: install
	$(PYTHON) -m accelerate.commands.launch $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),--num_processes 1) recipes/dpo.py --config $(DPO_CONFIG) $(ARGS)

# Stage 3: the pairwise likelihood metrics (default: the demo benchmarks, on the output of `make pretrain`).
EVAL_CONFIG ?= recipes/demo/eval.yaml
eval: install
	$(PYTHON) recipes/evaluate.py --config $(EVAL_CONFIG) $(ARGS)

bench: install
	$(PYTHON) -m bench.run $(ARGS)

clean:
	rm -rf outputs bench_results .installed
