#!/usr/bin/env bash
# Install kwanzaa-kit and exactly its locked dependencies into a virtual environment.
#
#   scripts/install-locked.sh cpu --with-test   # `make venv`, hence CI: .venv, Python 3.11
#   scripts/install-locked.sh cuda --venv /opt/venv --deps-only    # the Dockerfile (CUDA 13.0), then
#   scripts/install-locked.sh cuda --venv /opt/venv --kit-only     # ...the kit, after its source is copied
#   scripts/install-locked.sh cuda-12.6 ...                        # the CUDA 12.6 image (drivers R525+)
#
# The image and CI run this same script, so a green CI proves the install path the image uses.
# Every download is checked against a sha256 from requirements/: pip installs the pinned uv from
# uv.txt with --require-hashes, then uv syncs the venv to the lock (--require-hashes: removes what
# the lock does not list, installs nothing it does not list), then ai2-olmo --no-deps from its own
# lock, then the kit itself, editable, --no-deps, built with the locked setuptools (no download).
# --deps-only stops before the kit and --kit-only does the kit alone: the image installs the
# dependencies in a layer of their own, before the source is copied in.
#
# Environment: PYTHON (interpreter for a new venv, default python3), KIT_VENV (default .venv),
# TORCH_CPU_FIND_LINKS (where torch's CPU wheel is: /opt/wheels here, else the PyTorch CPU index),
# TORCH_FIND_LINKS (likewise for a CUDA build of torch from the PyTorch index, e.g. +cu126).
set -euo pipefail

usage() { echo "usage: $0 cpu|cuda|cuda-12.6 [--with-test] [--venv DIR] [--deps-only|--kit-only]" >&2; }
die() { echo "install-locked: $*" >&2; exit 1; }

kind="" with_test=0 deps=1 kit=1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KIT_VENV:-$root/.venv}
while (($#)); do
    case $1 in
        cpu | cuda | cuda-12.6) kind=$1 ;;
        --with-test) with_test=1 ;;
        --deps-only) kit=0 ;;
        --kit-only) deps=0 ;;
        --venv) venv=${2:?--venv needs a directory}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
    shift
done
[[ -n $kind ]] || { usage; exit 2; }

req=$root/requirements
lock=$req/$kind.txt
((deps || kit)) || die "--deps-only and --kit-only exclude each other."
[[ -f $lock ]] || die "$lock is missing; run \`make lock\` (on a machine that reaches download.pytorch.org)."
# Each lock was resolved for one Python minor version (its header says which); wheels and
# markers differ across versions, so installing it on another one is refused, not attempted.
want=$(sed -n 's/.*--python-version \([0-9.]*\).*/\1/p' "$lock" | head -n 1)
minor() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

if [[ ! -x $venv/bin/python ]]; then
    python=${PYTHON:-python3}
    have=$(minor "$python") || die "no Python interpreter '$python'; set PYTHON."
    [[ $have == "$want" ]] || die "$lock is for Python $want but $python is $have; set PYTHON=python$want."
    "$python" -m venv "$venv"
fi
have=$(minor "$venv/bin/python")
[[ $have == "$want" ]] || die "$venv has Python $have but $lock is for $want; remove $venv."

uv_version=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$req/uv.txt")
if [[ $("$venv/bin/uv" --version 2>/dev/null) != "uv $uv_version"* ]]; then
    # pip only bootstraps uv; ensurepip restores it offline if the venv has none
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$venv/bin/python" -m ensurepip --default-pip >/dev/null
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --require-hashes -r "$req/uv.txt"
fi

export UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never  # only the flags below decide what gets installed
uv() { "$venv/bin/uv" "$@"; }
if ((deps)); then
    locks=("$lock" "$req/uv.txt")
    ((with_test)) && locks+=("$req/test.txt")
    find_links=()
    torch_version=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$lock")
    if [[ $torch_version == *+* ]]; then  # a build from the PyTorch index (+cpu, +cu126): not on PyPI
        tag=${torch_version#*+}
        links=https://download.pytorch.org/whl/$tag/torch/
        compgen -G "/opt/wheels/torch-$torch_version-*.whl" >/dev/null && links=/opt/wheels
        if [[ $tag == cpu ]]; then links=${TORCH_CPU_FIND_LINKS:-$links}; else links=${TORCH_FIND_LINKS:-$links}; fi
        find_links=(--find-links "$links")
    fi
    # --compile-bytecode: every `kit` process imports torch and transformers; without .pyc files (and with
    # PYTHONDONTWRITEBYTECODE, common in images and CI) that costs ~6 s more per process (measured: 11.9 s vs 5-6 s)
    uv pip sync --python "$venv/bin/python" --require-hashes --compile-bytecode "${find_links[@]}" "${locks[@]}"
    uv pip install --python "$venv/bin/python" --require-hashes --no-deps -r "$req/olmo-tokenizer.txt"
fi
if ((kit)); then
    uv pip install --python "$venv/bin/python" --no-deps --no-build-isolation --editable "$root"
fi
