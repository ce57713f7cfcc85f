"""The base model's source: resolve it to a local folder (hub download, local folder, or seeded
random weights), and fingerprint and check its files before anything loads them.

Secure by default: no remote code, safetensors only (pickle weights are refused), hub revisions
pinned to a commit and file hashes checked when the recipe lists them. A seeded random-init model
is saved with `save_pretrained` and loaded back through the same `from_pretrained` path as a real
one, so tests and benchmarks exercise the real loading code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from kit import io
from kit.errors import ModelSourceError, ResourceError
from kit.recipe import ModelSource

WEIGHT_GLOBS = ("*.safetensors",)
PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
HUB_ALLOW = ["*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def cache_dir() -> Path:
    root = os.environ.get("KWANZAA_KIT_CACHE") or Path.home() / ".cache" / "kwanzaa-kit"
    return Path(root)


def resolve_base_model(spec: ModelSource, recipe_dir: Path) -> Path:
    """A local folder holding config.json + safetensors for the recipe's base model."""
    if spec.source == "random":
        return materialize_random(spec)
    if spec.source == "local":
        path = Path(spec.path)
        path = path if path.is_absolute() else (recipe_dir / path).resolve()
        if not (path / "config.json").is_file():
            raise ModelSourceError("no config.json in the local model folder", where=str(path),
                                   fix="point model.path at a folder saved with save_pretrained")
        return path
    return _download(spec)


def _download(spec: ModelSource) -> Path:
    if spec.revision is None:
        raise ModelSourceError(f"base model revision is not pinned ({spec.id})", where="model.revision",
                               fix="run `kit pin RECIPE` (needs the hub) and commit the sha it prints, or set "
                                   "revision to a 40-hex commit from the model page's history")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    _check_disk_for_download(spec)
    try:
        # The token, if any, comes from HF_TOKEN or `huggingface-cli login`, never from a recipe.
        # Several processes of one run download once: the others wait, then find the files.
        with shared_build(cache_dir() / "downloads" / spec.id.replace("/", "--")):
            return Path(snapshot_download(spec.id, revision=spec.revision, allow_patterns=HUB_ALLOW))
    except LocalEntryNotFoundError:
        raise ModelSourceError(f"{spec.id}@{spec.revision[:12]} is not in the local Hugging Face cache and the hub "
                               "cannot be reached", where="model",
                               fix="connect to the internet once, or unset HF_HUB_OFFLINE, or use source: local") from None
    except HfHubHTTPError as e:
        raise ModelSourceError(f"the hub refused {spec.id}@{spec.revision[:12]}: {str(e).splitlines()[0]}",
                               where="model", fix="check the id and the pinned revision, and HF_TOKEN if gated") from None


def _check_disk_for_download(spec: ModelSource) -> None:
    """Refuse a download that cannot fit in the Hugging Face cache (skipped offline)."""
    import fnmatch

    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(spec.id, "config.json", revision=spec.revision),
                                              str):
        return
    try:
        info = HfApi().model_info(spec.id, revision=spec.revision, files_metadata=True)
    except Exception:
        return
    needed = sum(s.size or 0 for s in info.siblings or [] if any(fnmatch.fnmatch(s.rfilename, p) for p in HUB_ALLOW))
    cache = Path(constants.HF_HUB_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if free < needed * 1.05:
        raise ResourceError(f"the download needs {needed / 2**30:.1f} GiB and only {free / 2**30:.1f} GiB is free",
                            where=str(cache), fix="free disk space, or point HF_HOME at a larger disk")


def materialize_random(spec: ModelSource) -> Path:
    """Build the seeded random model once, save it as safetensors in the cache, return its folder."""
    import torch

    # Initialised on the run's device type: seconds for a 7B on a GPU instead of minutes on CPUs.
    # CPU and CUDA generators draw different numbers, so the device is part of the weights' identity
    # (and the base_model fingerprint, a hash of the saved files, shows it).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    key = io.sha256_json({"config": spec.config, "init_seed": spec.init_seed, "dtype": spec.dtype,
                          "torch": torch.__version__.split("+")[0], "device": device})[:16]
    target = cache_dir() / "random-models" / f"{spec.architecture}-{device}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with shared_build(target):  # N processes of one run start at once: one builds, the others wait
        if (target / "config.json").is_file():
            return target
        _build_random(spec, device, target)
    return target


def shared_build(target: Path):
    """An inter-process lock beside `target` (filelock): held while one process builds a shared,
    first-time file (random weights, a download), so the others wait and then find it complete."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(target.parent / f".{target.name}.lock"))


def _build_random(spec: ModelSource, device: str, target: Path) -> None:
    import torch
    from safetensors.torch import save_model
    from transformers import OlmoConfig, OlmoForCausalLM

    config = OlmoConfig(**spec.config)
    generator_state = torch.get_rng_state()
    torch.manual_seed(spec.init_seed)
    with torch.device(device):
        model = OlmoForCausalLM._from_config(config, dtype=getattr(torch, spec.dtype))
    model = model.to("cpu")
    torch.set_rng_state(generator_state)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        # Written with safetensors itself: under torch.distributed, save_pretrained writes the weights
        # on global rank 0 only, and the rank that holds the lock may be another one.
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for path in (tmp, *tmp.iterdir()):  # a shared cache: readable by the other users of it
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.rename(target)  # complete or absent: never half a folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fingerprint_base_model(path: Path, spec: ModelSource) -> dict:
    """sha256 of every weight file and config.json; refuses pickle-only folders and hash mismatches."""
    weights = sorted(p for g in WEIGHT_GLOBS for p in path.glob(g))
    if not weights:
        pickles = sorted(p.name for g in PICKLE_GLOBS for p in path.glob(g))
        why = f"only pickle weights ({', '.join(pickles[:3])})" if pickles else "no *.safetensors files"
        raise ModelSourceError(f"refusing to load the base model: {why}", where=str(path),
                               fix="use a model published as safetensors (pickle files can run code when loaded)")
    for w in weights:
        _check_safetensors(w)
    files = {p.name: io.sha256_file(p) for p in [path / "config.json", *weights]}
    for name, expected in spec.files_sha256.items():
        if files.get(name) != expected:
            raise ModelSourceError(f"{name} has sha256 {str(files.get(name))[:12]}..., the recipe pins "
                                   f"{expected[:12]}...", where=str(path / name),
                                   fix="delete the corrupt download and fetch it again, or correct model.files_sha256")
    identity = {"source": spec.source, "id": spec.id, "revision": spec.revision}
    if spec.source == "random":
        identity.update(config=spec.config, init_seed=spec.init_seed)
    combined = io.sha256_json({"files": files})
    return {"sha256": combined, "files": files, **{k: v for k, v in identity.items() if v is not None}}


def _check_safetensors(path: Path) -> None:
    """Read the header and check the data length: a truncated or garbled file is refused here."""
    import struct

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n)) if 0 < n <= size - 8 else None
        ends = [v["data_offsets"][1] for k, v in (header or {}).items() if k != "__metadata__"]
        ok = header is not None and 8 + n + max(ends, default=0) == size
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        ok = False
    if not ok:
        raise ModelSourceError("corrupt or truncated safetensors file", where=str(path),
                               fix="delete it and download (or save) the model again")


def public_name(spec: ModelSource) -> str:
    """How the base model is named in files we publish: never a local path."""
    if spec.source == "hub":
        return f"{spec.id}@{spec.revision}"
    if spec.source == "random":
        return f"random-init:{spec.architecture}:seed{spec.init_seed}"
    return f"local:{Path(spec.path).name}"


