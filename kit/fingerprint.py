"""Fingerprints: sha256 of every input and output of a run, and `kit hash` to recompute them.

The adapter's fingerprint is canonical: a sha256 over each tensor's name, dtype, shape and bytes
in name order, so it does not depend on how safetensors laid out the file. The environment's
fingerprint holds versions and the hardware class, never host names, user names or paths.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

from kit import __version__, rundir
from kit.data import sha256_file
from kit.errors import RunDirError
from kit.recipe import canonical_json

MANIFEST_SCHEMA = "kwanzaa-kit.manifest.v1"
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors", "tokenizers",
             "huggingface-hub", "numpy")


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


def library_versions() -> dict[str, str | None]:
    out = {"python": platform.python_version(), "kwanzaa-kit": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_class(device: str, world_size: int, deterministic: bool, cpu_threads: int) -> dict:
    """What must match for bit-exact results: device model (GPU or CPU), count, mode, threads."""
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return {"device_type": "cuda", "device_name": props.name,
                "compute_capability": f"{props.major}.{props.minor}", "world_size": world_size,
                "deterministic": deterministic, "cpu_threads": cpu_threads}
    return {"device_type": "cpu", "device_name": cpu_model(), "compute_capability": None,
            "world_size": world_size, "deterministic": deterministic, "cpu_threads": cpu_threads}


def environment(hardware: dict) -> dict:
    """Software + hardware fingerprint of the machine running now (no secrets, no paths)."""
    import torch

    software = library_versions()
    software["cuda"] = torch.version.cuda
    software["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    software["platform"] = f"{platform.system()}-{platform.machine()}"
    software["lock_sha256"] = _lock_sha256(torch.version.cuda)
    driver = None
    if hardware["device_type"] == "cuda":
        driver = nvidia_driver()
    image = installed_image()
    env = {"software": software, "hardware": hardware, "driver": driver, "image": image}
    env["software_sha256"] = hashlib.sha256(canonical_json(software)).hexdigest()
    env["hardware_sha256"] = hashlib.sha256(canonical_json(hardware)).hexdigest()
    env["sha256"] = hashlib.sha256(canonical_json({"software": software, "hardware": hardware})).hexdigest()
    return env


def _lock_sha256(cuda: str | None) -> str | None:
    from kit import container

    return container.installed_lock_sha256("cuda" if cuda else "cpu")


def installed_image() -> dict | None:
    from kit import container

    return container.image_fingerprint()


def nvidia_driver() -> str | None:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def output_fingerprints(run: Path) -> dict:
    """Recompute every output fingerprint from the files in a run directory."""
    adapter_dir = run / rundir.ADAPTER
    weights = adapter_dir / rundir.ADAPTER_WEIGHTS
    if not weights.is_file():
        raise RunDirError("the run has no adapter", where=str(weights),
                          fix="the run did not finish: see logs/kit.log, then `kit train --resume`")
    outputs = {"adapter": {**adapter_tensor_sha256(weights),
                           "files": {p.name: sha256_file(p) for p in sorted(adapter_dir.iterdir()) if p.is_file()}}}
    log = run / rundir.TRAIN_LOG
    if log.is_file():
        outputs["train_log"] = {"file": rundir.TRAIN_LOG, "sha256": sha256_file(log)}
    for name in ("responses.jsonl", "metrics.json"):
        p = run / rundir.EVAL / name
        if p.is_file():
            outputs[f"eval_{p.stem}"] = {"file": f"{rundir.EVAL}/{name}", "sha256": sha256_file(p)}
    return outputs


def rehash(run: Path) -> dict:
    """`kit hash`: recompute the fingerprints and compare them with what the manifest says."""
    manifest = rundir.read_manifest(run)
    recomputed = output_fingerprints(run)
    recipe_file = run / rundir.RECIPE
    recipe_sha = hashlib.sha256(canonical_json(rundir.read_json(recipe_file))).hexdigest() if recipe_file.is_file() else None
    checks = [_check("inputs.recipe.sha256", manifest["inputs"]["recipe"]["sha256"], recipe_sha)]
    for key, value in sorted(recomputed.items()):
        recorded = manifest.get("outputs", {}).get(key, {})
        checks.append(_check(f"outputs.{key}.sha256", recorded.get("sha256"), value["sha256"]))
        for fname, digest in sorted(value.get("files", {}).items()):
            checks.append(_check(f"outputs.{key}.files.{fname}", recorded.get("files", {}).get(fname), digest))
    return {"run": str(run), "ok": all(c["ok"] for c in checks), "checks": checks}


def _check(key: str, recorded, recomputed) -> dict:
    return {"key": key, "recorded": recorded, "recomputed": recomputed, "ok": recorded == recomputed}

