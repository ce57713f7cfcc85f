"""Fingerprints: sha256 of every input and output of a run, and `kit hash` to recompute them.

The adapter's fingerprint is canonical: a sha256 over each tensor's name, dtype, shape and bytes
in name order, so it does not depend on how safetensors laid out the file. The environment's
fingerprint holds versions and the hardware class, never host names, user names or paths.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from kit import container, hardware, io, rundir
from kit.errors import RunDirError

MANIFEST_SCHEMA = "kwanzaa-kit.manifest.v1"


def adapter_tensor_sha256(weights: Path) -> dict:
    """Canonical hash of a safetensors file's tensors (names, dtypes, shapes, bytes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunDirError(f"cannot read the adapter weights ({str(e).splitlines()[0]})", where=str(weights),
                          fix="the file is corrupt or incomplete: re-run `kit train`, or restore it") from None
    h = hashlib.sha256()
    n_params = 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}\0{str(t.dtype).removeprefix('torch.')}\0{list(t.shape)}\0".encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes())
        n_params += t.numel()
    return {"sha256": h.hexdigest(), "tensors": len(tensors), "parameters": n_params}


def environment(hardware_class: dict) -> dict:
    """Software + hardware fingerprint of the machine running now (no secrets, no paths)."""
    import torch

    software = container.library_versions()
    software["cuda"] = torch.version.cuda
    software["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    software["platform"] = f"{platform.system()}-{platform.machine()}"
    software["lock_sha256"] = container.installed_lock_sha256(container.lock_kind_for(torch.version.cuda))
    driver = hardware.nvidia_driver() if hardware_class["device_type"] == "cuda" else None
    env = {"software": software, "hardware": hardware_class, "driver": driver, "image": container.image_fingerprint()}
    env["software_sha256"] = io.sha256_json(software)
    env["hardware_sha256"] = io.sha256_json(hardware_class)
    env["sha256"] = io.sha256_json({"software": software, "hardware": hardware_class})
    return env


def output_fingerprints(run: Path) -> dict:
    """Recompute every output fingerprint from the files in a run directory."""
    adapter_dir = run / rundir.ADAPTER
    weights = adapter_dir / rundir.ADAPTER_WEIGHTS
    if not weights.is_file():
        raise RunDirError("the run has no adapter", where=str(weights),
                          fix="the run did not finish: see logs/kit.log, then `kit train --resume`")
    outputs = {"adapter": {**adapter_tensor_sha256(weights),
                           "files": {p.name: io.sha256_file(p) for p in sorted(adapter_dir.iterdir()) if p.is_file()}}}
    log = run / rundir.TRAIN_LOG
    if log.is_file():
        outputs["train_log"] = {"file": rundir.TRAIN_LOG, "sha256": io.sha256_file(log)}
    for name in ("responses.jsonl", "metrics.json"):
        p = run / rundir.EVAL / name
        if p.is_file():
            outputs[f"eval_{p.stem}"] = {"file": f"{rundir.EVAL}/{name}", "sha256": io.sha256_file(p)}
    return outputs


def rehash(run: Path) -> dict:
    """`kit hash`: recompute the fingerprints and compare them with what the manifest says."""
    manifest = rundir.read_manifest(run)
    recomputed = output_fingerprints(run)
    recipe_file = run / rundir.RECIPE
    recipe_sha = io.sha256_json(rundir.read_json(recipe_file, "recipe.json")) if recipe_file.is_file() else None
    checks = [_check("inputs.recipe.sha256", manifest["inputs"]["recipe"]["sha256"], recipe_sha)]
    for key, value in sorted(recomputed.items()):
        recorded = manifest.get("outputs", {}).get(key, {})
        checks.append(_check(f"outputs.{key}.sha256", recorded.get("sha256"), value["sha256"]))
        for fname, digest in sorted(value.get("files", {}).items()):
            checks.append(_check(f"outputs.{key}.files.{fname}", recorded.get("files", {}).get(fname), digest))
    return {"run": str(run), "ok": all(c["ok"] for c in checks), "checks": checks}


def _check(key: str, recorded, recomputed) -> dict:
    return {"key": key, "recorded": recorded, "recomputed": recomputed, "ok": recorded == recomputed}

