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
# The image's CUDA: 13.0 needs an NVIDIA driver R580+; on a host with an older driver (R525-R575)
# the default is the CUDA 12.6 image. Set it to choose: `make image CUDA=12.6`.
DRIVER_MAJOR := $(shell nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 | cut -d. -f1)
CUDA ?= $(if $(DRIVER_MAJOR),$(shell [ "$(DRIVER_MAJOR)" -lt 580 ] 2>/dev/null && echo 12.6 || echo 13.0),13.0)
LOCK_FILE := requirements/$(if $(filter 13.0,$(CUDA)),cuda,cuda-$(CUDA)).txt
IMAGE_REF := $(IMAGE)$(if $(filter 13.0,$(CUDA)),,:cuda$(CUDA))
VERSION_TAG := $(VERSION)$(if $(filter 13.0,$(CUDA)),,-cuda$(CUDA))
# One volume holds both caches (the Hugging Face download, the kit's random weights): kept across --rm runs.
CACHE_VOLUME ?= kwanzaa-cache

.PHONY: help venv test test-fast reproduce lock lint image

help:
	@echo "make reproduce   train, evaluate, verify and report (in the image when Docker has a GPU)"
	@echo "make test        the test suite (what CI runs)"
	@echo "make test-fast   the tests that train no model (under 90 s)"
	@echo "make venv        $(VENV) from the CPU lock plus test tools"
	@echo "make lint        ruff on the Python, hadolint on the Dockerfile, the import layers"
	@echo "make image       build the $(IMAGE) image (CUDA=$(CUDA); CUDA=12.6 for drivers older than R580)"
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
		$(MAKE) image CUDA=$(CUDA) && mkdir -p runs && \
		docker run --rm --gpus all -e HF_TOKEN -v $(CACHE_VOLUME):/cache \
			-e KWANZAA_KIT_IMAGE_ID="$$(docker image inspect --format '{{.Id}}' $(IMAGE_REF))" \
			-v "$(CURDIR)/runs:/workspace/runs" $(IMAGE_REF) reproduce $(REPRODUCE_ARGS); \
	else \
		$(MAKE) venv && $(VENV)/bin/kit reproduce $(REPRODUCE_ARGS); \
	fi

lock: venv
	UV=$(VENV)/bin/uv requirements/lock.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint Dockerfile   # both variants: one file, the CUDA build argument picks the stage
	$(VENV)/bin/python scripts/import_graph.py --check

# Tags: kwanzaa-kit and kwanzaa-kit:VERSION (CUDA 13.0); kwanzaa-kit:cuda12.6 and kwanzaa-kit:VERSION-cuda12.6.
image:
	@test -f $(LOCK_FILE) || { echo "make image: $(LOCK_FILE) is missing; run \`make lock\` where download.pytorch.org is reachable" >&2; exit 1; }
	docker build \
		--build-arg CUDA=$(CUDA) \
		--build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) \
		--build-arg SOURCE=$(SOURCE) \
		--build-arg LOCK_SHA256=$$(sha256sum $(LOCK_FILE) | cut -d' ' -f1) \
		-t $(IMAGE):$(VERSION_TAG) -t $(IMAGE_REF) .
