# syntax=docker/dockerfile:1
# The kwanzaa-kit image: the kit and its CUDA lock on a digest-pinned CUDA base. `make image`
# builds it with the OCI label values; docs/container.md says how to run it.
#
# torch 2.13.0 from PyPI brings its own CUDA 13.0 libraries (nvidia-* wheels) and Triton its own
# ptxas, so the small "base" flavour is enough: it adds the CUDA 13.0 driver check
# (NVIDIA_REQUIRE_CUDA) and little else. The digest is the one published for this tag; one place,
# also written into image.json below.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04@sha256:f8ef28f579ea42a44b415d2c5d46f788e6a9b395c6c83f2929416e1fc192c143
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 24.04's Python 3.12, the version requirements/cuda.txt was resolved for. Not pinned to a
# Debian revision (.hadolint.yaml says why); image.json records the Python version installed.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# uid 1000 (the base's `ubuntu` user gives it up) so a bind-mounted runs/ from a typical host
# account is writable; the HF cache directory exists before VOLUME, so a new named volume
# inherits its owner.
RUN userdel --remove ubuntu 2>/dev/null || true; \
    useradd --create-home --uid 1000 --user-group --shell /bin/bash kit \
    && install -d -o kit -g kit /cache/huggingface /workspace

WORKDIR /opt/kwanzaa-kit
COPY . .

# The same command `make venv` (and so CI) runs, with the CUDA lock: every file is checked against
# its sha256. The uv cache is a build cache, not a layer, so a code change does not re-download
# torch and the image carries no cache. Bytecode is compiled now: /opt/venv is read-only at run time.
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    scripts/install-locked.sh cuda --venv /opt/venv

# Build metadata comes after the install: a new revision must not re-run apt or the install.
ARG BASE_IMAGE
ARG VERSION=""
ARG REVISION=unknown
ARG SOURCE=""
ARG LOCK_SHA256=""

LABEL org.opencontainers.image.title="kwanzaa-kit" \
      org.opencontainers.image.description="Re-train the Kwanzaa adapter (LoRA/QLoRA on OLMo-7B-Instruct) and prove you got the published result." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.github.kwanzaa-kit.lock.sha256="${LOCK_SHA256}"

RUN /opt/venv/bin/python -m kit.container --lock cuda --base-image "${BASE_IMAGE}" \
        --revision "${REVISION}" --expect-lock-sha256 "${LOCK_SHA256}" \
        --expect-version "${VERSION}" --out /etc/kwanzaa-kit/image.json

ENV PATH="/opt/venv/bin:${PATH}" \
    HF_HOME=/cache/huggingface \
    PYTHONUNBUFFERED=1
VOLUME ["/cache/huggingface"]
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["kit"]
CMD ["--help"]
