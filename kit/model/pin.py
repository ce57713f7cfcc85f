"""Pin a recipe's hub model: the commit a ref points at and the sha256 of each weight file.

The hub reports each safetensors file's LFS sha256, so pinning needs no download. A recipe need not
be pinned to be trained: a run resolves its ref and records the same pins in the run's recipe.json
and manifest (kit.model.source.resolve_hub_revision). `kit pin` writes them into the recipe file
itself, so that every later run starts from the same commit.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from kit import io
from kit.errors import RecipeError
from kit.model.source import hub_pins
from kit.recipe import load_recipe


def write(recipe_path: Path, pinned: dict) -> None:
    """Replace model.revision and model.files_sha256 in the recipe file, keeping its comments."""
    if not os.access(recipe_path, os.W_OK) or not os.access(recipe_path.parent, os.W_OK):
        raise RecipeError("the recipe file is read-only (a recipe shipped in the kit's install)", where=str(recipe_path),
                          fix="leave it: every run records its own pins in RUN/recipe.json; or copy the recipe "
                              "next to its data, pin the copy with --write, and train from it")
    text = recipe_path.read_text("utf-8")
    new, n_rev = re.subn(r"(?m)^(  revision:)[ \t]*[^\s#]*", lambda m: f"{m.group(1)} {pinned['revision']}", text, count=1)
    new, n_files = re.subn(r"(?m)^(  files_sha256:).*$",
                           lambda m: f"{m.group(1)} {json.dumps(pinned['files_sha256'])}", new, count=1)
    if not (n_rev and n_files):
        raise RecipeError("the recipe has no `model.revision` / `model.files_sha256` lines to update",
                          where=str(recipe_path), fix="add both keys under model: (see recipes/kwanzaa-olmo7b-qlora.yaml)")
    io.atomic_write_text(recipe_path, new)
    load_recipe(recipe_path)  # still valid


def pin(recipe_path: Path, revision: str | None, write_back: bool) -> dict:
    """The pins of RECIPE's hub model at `revision` (default: the ref the recipe names, else main)."""
    spec = load_recipe(recipe_path).recipe.model
    if spec.source != "hub":
        raise RecipeError(f"model.source is {spec.source!r}: only hub models are pinned", where=str(recipe_path),
                          fix="pin a recipe whose model.source is hub")
    asked = revision or spec.revision
    pinned = {"id": spec.id, "asked": asked or "main", **hub_pins(spec.id, asked)}
    if write_back:
        write(recipe_path, pinned)
    return pinned
