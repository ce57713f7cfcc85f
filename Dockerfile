# syntax=docker/dockerfile:1
# The kwanzaa-kit image: the kit and a hashed torch lock on a digest-pinned CUDA base. `make image`
# builds it with the OCI label values; docs/container.md says how to run it.
#
# One Dockerfile, two variants, chosen by the CUDA build argument (`make image CUDA=12.6`):
#   CUDA=13.0 (default)  requirements/cuda.txt: torch 2.13.0 from PyPI with its CUDA 13.0 wheels;
#                        needs an NVIDIA driver >= 580.65.06 (R580 or newer).
#   CUDA=12.6            requirements/cuda-12.6.txt: torch 2.13.0+cu126 from the PyTorch index with its
#                        CUDA 12.6 wheels; needs a driver >= 525.60.13 (R535-R575 hosts).
# Each torch brings its own CUDA libraries (nvidia-* wheels) and Triton its own ptxas, so the small
# "base" flavour is enough: it adds the driver check (NVIDIA_REQUIRE_CUDA) and little else. Each
# digest is the one published for its tag; image.json records the one used.
ARG CUDA=13.0
ARG BASE_CUDA_13_0=nvidia/cuda:13.0.1-base-ubuntu24.04@sha256:f8ef28f579ea42a44b415d2c5d46f788e6a9b395c6c83f2929416e1fc192c143
ARG BASE_CUDA_12_6=nvidia/cuda:12.6.3-base-ubuntu24.04@sha256:c87e78933f4c16e3272123bf2f75537306596d0fbaa395a29696a22786e5ee0e

FROM ${BASE_CUDA_13_0} AS cuda-13.0
ARG BASE_CUDA_13_0
ENV KWANZAA_KIT_LOCK=cuda KWANZAA_KIT_BASE_IMAGE=${BASE_CUDA_13_0}

FROM ${BASE_CUDA_12_6} AS cuda-12.6
ARG BASE_CUDA_12_6
ENV KWANZAA_KIT_LOCK=cuda-12.6 KWANZAA_KIT_BASE_IMAGE=${BASE_CUDA_12_6}

# The variant's base, with its lock's name and its own reference in the environment. DL3006 (tag
# every image) cannot see that cuda-${CUDA} names one of the two digest-pinned stages above.
# hadolint ignore=DL3006
FROM cuda-${CUDA}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 24.04's Python 3.12, the version both CUDA locks were resolved for. Not pinned to a Debian
# revision (.hadolint.yaml says why); image.json records the Python version installed.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# uid 1000 (the base's `ubuntu` user gives it up) so a bind-mounted runs/ from a typical host
# account is writable; the cache directories exist before VOLUME, so a new named volume inherits
# their owner.
RUN userdel --remove ubuntu 2>/dev/null || true; \
    useradd --create-home --uid 1000 --user-group --shell /bin/bash kit \
    && install -d -o kit -g kit /cache /cache/huggingface /cache/kwanzaa-kit /workspace

WORKDIR /opt/kwanzaa-kit

# The dependencies first, from the locks and the installer alone, so that a change to the kit's source
# does not rebuild this multi-GB layer. The same script `make venv` (and so CI) runs: every file is
# checked against its sha256. The uv cache is a build cache, not a layer, and the image carries no
# cache. Bytecode is compiled now: /opt/venv is read-only at run time.
COPY requirements/ requirements/
COPY scripts/install-locked.sh scripts/
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    scripts/install-locked.sh "${KWANZAA_KIT_LOCK}" --venv /opt/venv --deps-only

# Then the kit itself (editable: recipes/, data/ and references/ stay beside the package).
COPY . .
RUN scripts/install-locked.sh "${KWANZAA_KIT_LOCK}" --venv /opt/venv --kit-only

# Build metadata comes after the install: a new revision must not re-run apt or the install.
ARG CUDA
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
      org.opencontainers.image.base.name="${KWANZAA_KIT_BASE_IMAGE}" \
      io.github.kwanzaa-kit.cuda="${CUDA}" \
      io.github.kwanzaa-kit.lock.sha256="${LOCK_SHA256}"

RUN /opt/venv/bin/python -m kit.container --lock "${KWANZAA_KIT_LOCK}" --base-image "${KWANZAA_KIT_BASE_IMAGE}" \
        --revision "${REVISION}" --expect-lock-sha256 "${LOCK_SHA256}" \
        --expect-version "${VERSION}" --out /etc/kwanzaa-kit/image.json

# The caches live on one volume: the Hugging Face cache (the 7B download) and the kit's own (random
# weights for `kit qualify` and --random-weights), so that no run rewrites gigabytes into the
# container's layer (docs/container.md: -v kwanzaa-cache:/cache).
ENV PATH="/opt/venv/bin:${PATH}" \
    HF_HOME=/cache/huggingface \
    KWANZAA_KIT_CACHE=/cache/kwanzaa-kit \
    PYTHONUNBUFFERED=1
VOLUME ["/cache"]
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["kit"]
CMD ["--help"]
