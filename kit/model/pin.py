"""Pin a recipe's hub model: the commit sha of a revision and the sha256 of each weight file.

The hub reports each safetensors file's LFS sha256, so pinning needs no download; after a
download, kit.model.fingerprint_base_model checks the files against these hashes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kit.errors import ModelSourceError, RecipeError
from kit.recipe import load_recipe


def lookup(repo_id: str, revision: str = "main") -> dict:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelSourceError(f"cannot read {repo_id}@{revision} from the hub: {str(e).splitlines()[0]}",
                               where="model.id", fix="check the id, your network, and HF_TOKEN if the model is gated") from None
    files = {s.rfilename: s.lfs.sha256 for s in info.siblings or []
             if s.rfilename.endswith(".safetensors") and getattr(s, "lfs", None)}
    if not files:
        raise ModelSourceError(f"{repo_id}@{revision} has no safetensors weights", where="model.id",
                               fix="use a model published as safetensors (the kit never loads pickle weights)")
    return {"id": repo_id, "revision": info.sha, "files_sha256": dict(sorted(files.items()))}


def write(recipe_path: Path, pinned: dict) -> None:
    """Replace model.revision and model.files_sha256 in the recipe file, keeping its comments."""
    text = recipe_path.read_text("utf-8")
    new, n_rev = re.subn(r"(?m)^(  revision:).*$", lambda m: f"{m.group(1)} {pinned['revision']}", text, count=1)
    new, n_files = re.subn(r"(?m)^(  files_sha256:).*$",
                           lambda m: f"{m.group(1)} {json.dumps(pinned['files_sha256'])}", new, count=1)
    if not (n_rev and n_files):
        raise RecipeError("the recipe has no `model.revision` / `model.files_sha256` lines to update",
                          where=str(recipe_path), fix="add both keys under model: (see recipes/kwanzaa-olmo7b-qlora.yaml)")
    recipe_path.write_text(new, "utf-8")
    load_recipe(recipe_path)  # still valid


def pin(recipe_path: Path, revision: str, write_back: bool) -> dict:
    spec = load_recipe(recipe_path).recipe.model
    if spec.source != "hub":
        raise RecipeError(f"model.source is {spec.source!r}: only hub models are pinned", where=str(recipe_path),
                          fix="pin a recipe whose model.source is hub")
    pinned = lookup(spec.id, revision)
    if write_back:
        write(recipe_path, pinned)
    return pinned
