"""The adapter as a published artifact: its model card and canonical adapter files."""

from __future__ import annotations

import json
from pathlib import Path

from kit import io


def model_card(base_name: str, recipe_name: str, recipe_sha256: str, method: str) -> str:
    """The adapter's README: from the recipe alone, so its bytes are the same on every machine
    (peft's own card names the local model path)."""
    return (f"---\nbase_model: {base_name}\nlibrary_name: peft\ntags:\n- kwanzaa-kit\n- {method}\n---\n\n"
            f"# Kwanzaa adapter: recipe `{recipe_name}`\n\n"
            f"A {method.upper()} adapter trained by kwanzaa-kit from recipe `{recipe_name}` "
            f"(resolved recipe sha256 `{recipe_sha256}`) on `{base_name}`.\n\n"
            "It answers with strict answer_json, cites its retrieved sources and refuses when they are not "
            "enough. The run's manifest.json fingerprints every input and output; VERIFY.md in the kit says "
            "how to check a reproduction.\n")


def canonicalize_adapter_files(adapter_dir: Path, base_name: str, recipe_name: str, recipe_sha256: str,
                               method: str) -> None:
    """peft writes the local model path (config and card) and a set-ordered module list: make them canonical."""
    io.atomic_write_text(adapter_dir / "README.md", model_card(base_name, recipe_name, recipe_sha256, method))
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text("utf-8"))
    config["base_model_name_or_path"] = base_name
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config.pop("revision", None)
    io.atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
