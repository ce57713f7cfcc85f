# kwanzaa-kit: `make reproduce` runs the main job, `make test` runs the tests (CI runs exactly that).
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
IMAGE ?= kwanzaa-kit
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# An image built from uncommitted changes says so in its revision label.
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git status --porcelain 2>/dev/null | grep -q . && echo -dirty)
SOURCE ?= $(shell git remote get-url origin 2>/dev/null)
REPRODUCE_ARGS ?=

.PHONY: help venv test test-fast reproduce lock lint image

help:
	@echo "make reproduce   train, evaluate, verify and report (in the image when Docker has a GPU)"
	@echo "make test        the test suite (what CI runs)"
	@echo "make test-fast   the tests that train no model (under 90 s)"
	@echo "make venv        $(VENV) from the CPU lock plus test tools"
	@echo "make lint        ruff on the Python, hadolint on the Dockerfile, the import layers"
	@echo "make image       build the $(IMAGE) image"
	@echo "make lock        regenerate requirements/*.txt from pyproject.toml"

# The stamp makes `make venv` a no-op until a lock, pyproject.toml or the installer changes.
venv: $(VENV)/.kit-installed
$(VENV)/.kit-installed: requirements/cpu.txt requirements/test.txt requirements/olmo-tokenizer.txt \
		requirements/uv.txt pyproject.toml scripts/install-locked.sh
	PYTHON=$${PYTHON:-python3.11} scripts/install-locked.sh cpu --with-test --venv $(VENV)
	touch $@

test: venv
	$(VENV)/bin/python -m pytest -q

test-fast: venv
	$(VENV)/bin/python -m pytest -q -m "not slow"

# In the image when a Docker engine and a GPU are there; otherwise in the local venv.
reproduce:
	@if docker info >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(MAKE) image && mkdir -p runs && \
		docker run --rm --gpus all -e HF_TOKEN -v hf-cache:/cache/huggingface \
			-v "$(CURDIR)/runs:/workspace/runs" $(IMAGE) reproduce $(REPRODUCE_ARGS); \
	else \
		$(MAKE) venv && $(VENV)/bin/kit reproduce $(REPRODUCE_ARGS); \
	fi

lock: venv
	UV=$(VENV)/bin/uv requirements/lock.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/python scripts/import_graph.py --check

image:
	docker build \
		--build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) \
		--build-arg SOURCE=$(SOURCE) \
		--build-arg LOCK_SHA256=$$(sha256sum requirements/cuda.txt | cut -d' ' -f1) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE) .
