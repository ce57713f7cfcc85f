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
    software["cublas"] = container.cublas_version() if torch.version.cuda else None
    software["platform"] = f"{platform.system()}-{platform.machine()}"
    software["lock_sha256"] = container.installed_lock_sha256(container.lock_kind_for(torch.version.cuda))
    driver = hardware.nvidia_driver() if hardware_class["device_type"] == "cuda" else None
    # the CPU's model (vendor, family) for the record: at one pinned instruction-set level it runs the
    # same kernels, so it is not in the class (kit.hardware.hardware_class)
    env = {"software": software, "hardware": hardware_class, "driver": driver, "cpu": hardware.cpu_model(),
           "image": container.image_fingerprint()}
    env["software_sha256"] = io.sha256_json(software)
    env["hardware_sha256"] = io.sha256_json(hardware_class)
    env["sha256"] = io.sha256_json({"software": software, "hardware": hardware_class})
    return env


OUTPUT_FILES = {"train_log": rundir.TRAIN_LOG, "eval_responses": f"{rundir.EVAL}/responses.jsonl",
                "eval_metrics": f"{rundir.EVAL}/metrics.json"}  # and "adapter": the adapter folder
TRAINED = ("adapter", "train_log")  # what `kit train` makes; `kit eval` adds the eval_* ones


def output_fingerprints(run: Path, keys: tuple[str, ...] | None = None) -> dict:
    """Compute the output fingerprints (all of them, or `keys`) from the files in a run directory.
    Each output is fingerprinted once, by the command that makes it."""
    outputs = {}
    if keys is None or "adapter" in keys:
        adapter_dir = run / rundir.ADAPTER
        weights = adapter_dir / rundir.ADAPTER_WEIGHTS
        if not weights.is_file():
            raise RunDirError("the run has no adapter", where=str(weights),
                              fix="the run did not finish: see logs/kit.log, then `kit train --resume`")
        outputs["adapter"] = {**adapter_tensor_sha256(weights),
                              "files": {p.name: io.sha256_file(p) for p in sorted(adapter_dir.iterdir()) if p.is_file()}}
    for key, name in OUTPUT_FILES.items():
        if (keys is None or key in keys) and (run / name).is_file():
            outputs[key] = {"file": name, "sha256": io.sha256_file(run / name)}
    return outputs


def rehash(run: Path) -> dict:
    """`kit hash`: recompute the fingerprints and compare them with what the manifest says: every
    output the manifest records (a file gone is a difference) and every output file there is (a
    file the manifest does not know is one too)."""
    run = Path(run)
    manifest = rundir.read_manifest(run)
    recorded_outputs = manifest.get("outputs") or {}
    recomputed = output_fingerprints(run)
    recipe_file = run / rundir.RECIPE
    recipe_sha = io.sha256_json(rundir.read_json(recipe_file, "recipe.json")) if recipe_file.is_file() else None
    checks = [_check("inputs.recipe.sha256", _get(manifest, "inputs", "recipe", "sha256"), recipe_sha)]
    for key in sorted(set(recomputed) | set(recorded_outputs)):
        recorded, value = _dict(recorded_outputs.get(key)), recomputed.get(key, {})
        checks.append(_check(f"outputs.{key}.sha256", recorded.get("sha256"), value.get("sha256")))
        files = _dict(recorded.get("files"))
        for fname in sorted(set(files) | set(value.get("files", {}))):
            checks.append(_check(f"outputs.{key}.files.{fname}", files.get(fname), value.get("files", {}).get(fname)))
    return {"run": str(run), "ok": all(c["ok"] for c in checks), "checks": checks}


def check_outputs(run: Path, keys: tuple[str, ...] | None = None) -> None:
    """Verify before reading: refuse (exit 2, naming the file) a run whose files no longer match the
    fingerprints its manifest recorded (all of them, or those of `keys` and the recipe)."""
    checks = sorted(rehash(run)["checks"], key=lambda c: ".files." not in c["key"])  # a file's name first
    for c in checks:
        key = c["key"].split(".")[1]
        if c["ok"] or (keys is not None and c["key"] != "inputs.recipe.sha256" and key not in keys):
            continue
        if c["key"] == "inputs.recipe.sha256":
            name = rundir.RECIPE
        elif ".files." in c["key"]:
            name = f"{rundir.ADAPTER}/{c['key'].split('.files.', 1)[1]}"
        else:
            name = rundir.ADAPTER if key == "adapter" else OUTPUT_FILES.get(key, key)
        state = ("is gone" if c["recomputed"] is None else "is not in the manifest" if c["recorded"] is None
                 else "does not match the sha256 its manifest recorded")
        raise RunDirError(f"{name} {state}: the run's files changed after it was made, so it cannot vouch for them",
                          where=str(Path(run) / name),
                          fix=f"restore the run's files (`kit hash {run}` lists what differs), or train again")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _get(obj, *keys):
    for k in keys:
        obj = _dict(obj).get(k)
    return obj


def _check(key: str, recorded, recomputed) -> dict:
    return {"key": key, "recorded": recorded, "recomputed": recomputed, "ok": recorded == recomputed}
