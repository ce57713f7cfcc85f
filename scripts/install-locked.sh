#!/usr/bin/env bash
# Install kwanzaa-kit and exactly its locked dependencies into a virtual environment.
#
#   scripts/install-locked.sh cpu --with-test   # `make venv`, hence CI: .venv, Python 3.11
#   scripts/install-locked.sh cuda --venv /opt/venv   # the Dockerfile: Python 3.12
#
# The image and CI run this same script, so a green CI proves the install path the image uses.
# Every download is checked against a sha256 from requirements/: pip installs the pinned uv from
# uv.txt with --require-hashes, then uv syncs the venv to the lock (--require-hashes: removes what
# the lock does not list, installs nothing it does not list), then ai2-olmo --no-deps from its own
# lock, then the kit itself, editable, --no-deps, built with the locked setuptools (no download).
#
# Environment: PYTHON (interpreter for a new venv, default python3), KIT_VENV (default .venv),
# TORCH_CPU_FIND_LINKS (where torch's CPU wheel is: /opt/wheels here, else the PyTorch CPU index).
set -euo pipefail

usage() { echo "usage: $0 cpu|cuda [--with-test] [--venv DIR]" >&2; }
die() { echo "install-locked: $*" >&2; exit 1; }

kind="" with_test=0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KIT_VENV:-$root/.venv}
while (($#)); do
    case $1 in
        cpu | cuda) kind=$1 ;;
        --with-test) with_test=1 ;;
        --venv) venv=${2:?--venv needs a directory}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
    shift
done
[[ -n $kind ]] || { usage; exit 2; }

req=$root/requirements
lock=$req/$kind.txt
[[ -f $lock ]] || die "$lock is missing; run \`make lock\`."
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
locks=("$lock" "$req/uv.txt")
((with_test)) && locks+=("$req/test.txt")
find_links=()
if [[ $kind == cpu ]]; then
    links=${TORCH_CPU_FIND_LINKS:-https://download.pytorch.org/whl/cpu/torch/}
    torch_cpu=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$lock")
    compgen -G "/opt/wheels/torch-$torch_cpu-*.whl" >/dev/null && links=${TORCH_CPU_FIND_LINKS:-/opt/wheels}
    find_links=(--find-links "$links")
fi

# --compile-bytecode: every `kit` process imports torch and transformers; without .pyc files (and with
# PYTHONDONTWRITEBYTECODE, common in images and CI) that costs ~6 s more per process (measured: 11.9 s vs 5-6 s)
uv pip sync --python "$venv/bin/python" --require-hashes --compile-bytecode "${find_links[@]}" "${locks[@]}"
uv pip install --python "$venv/bin/python" --require-hashes --no-deps -r "$req/olmo-tokenizer.txt"
uv pip install --python "$venv/bin/python" --no-deps --no-build-isolation --editable "$root"
