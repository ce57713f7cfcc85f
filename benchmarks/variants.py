"""A recipe variant for a benchmark: a copy of a recipe YAML with some fields changed, its data
paths made absolute (they are relative to the source recipe), written where the benchmark runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def write_variant(src_path: Path, out_path: Path, edit: Callable[[dict], None]) -> Path:
    import yaml

    src_path = Path(src_path).resolve()
    recipe = yaml.safe_load(src_path.read_text())
    for k in ("train", "eval"):
        recipe["data"][k] = str((src_path.parent / recipe["data"][k]).resolve())
    edit(recipe)
    out_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return out_path
