# The two commands of the quick start: `make demo` and `make test`. Both set up .venv first if needed.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.benloss-installed
CORES ?= all

.PHONY: setup demo test lint report clean-demo gpu-check

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	@echo "Report: results/demo/report.html"

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1
	$(BIN)/snakemake --lint --cores 1 --configfile config/bigearthnet.yaml
	$(BIN)/snakemake --lint --cores 1 --configfile config/bigearthnet_v2.yaml
	$(BIN)/snakemake --lint --cores 1 --configfile .test/config/config_v2.yaml
	$(BIN)/snakemake --lint --cores 1 --configfile config/bigearthnet.yaml config/bigearthnet_extended.yaml
	$(BIN)/snakemake --lint --cores 1 --configfile config/bigearthnet_v2.yaml config/bigearthnet_v2_extended.yaml
	$(BIN)/snakemake --lint --cores 1 --configfile .test/config/config.yaml
	$(BIN)/snakemake --lint --cores 1 --configfile config/bigearthnet_v2.yaml config/bigearthnet_v2_architectures.yaml
	$(BIN)/snakemake --lint --cores 1 --configfile config/bigearthnet_v2.yaml config/bigearthnet_v2_resnet50_anchor.yaml

report: setup
	$(BIN)/snakemake --cores 1 --report results/demo/snakemake-report.zip

# The GPU verification (benchmarks/README.md): on a CUDA machine, about 8 minutes. Needs torch, numpy, pandas,
# pytest, tqdm, matplotlib and scipy only, so it runs with the system Python of a bare GPU machine too:
#   make gpu-check PYTHON_GPU=python3
PYTHON_GPU ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	PYTHONPATH=src $(PYTHON_GPU) benchmarks/gpu_check.py --out benchmarks/out/gpu
