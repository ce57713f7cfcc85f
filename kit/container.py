"""What the software under a run is: the image's fingerprint and the lock a venv was installed from.

The image build writes /etc/kwanzaa-kit/image.json once (`python -m kit.container`, see the
Dockerfile): the kit version, which lock was installed and its sha256, the base image reference
and digest, the Python version and the source revision. A run's manifest can then name the exact
software it ran on, and `verify` can tell "same image" from "same code, other environment".
Standard library only, so `kit --help` stays instant.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors", "tokenizers",
             "huggingface-hub", "numpy")
IMAGE_JSON = Path("/etc/kwanzaa-kit/image.json")
IMAGE_JSON_ENV = "KWANZAA_KIT_IMAGE_JSON"  # tests point this at a fake image.json
# An image cannot know its own digest (the digest covers the image); `make reproduce` and the docs'
# `docker run` pass it in this variable, and the record then carries it.
IMAGE_ID_ENV = "KWANZAA_KIT_IMAGE_ID"
# cuda: CUDA 13.0 (torch from PyPI, drivers R580+); cuda-12.6: torch's CUDA 12.6 build (drivers R525+)
LOCK_KINDS = ("cpu", "cuda", "cuda-12.6")
CUDA_LOCKS = {"13": "cuda", "12": "cuda-12.6"}  # torch.version.cuda's major -> the lock it comes from
# The kit is installed editable (scripts/install-locked.sh), in the image too, so the checkout
# with its requirements/ lies next to the package.
REQUIREMENTS_DIR = Path(__file__).resolve().parent.parent / "requirements"
_PINNED_REFERENCE = re.compile(r"^(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")


def library_versions() -> dict[str, str | None]:
    """Python, the kit and every library whose version can change a result."""
    from kit import __version__

    out = {"python": platform.python_version(), "kwanzaa-kit": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cublas_version() -> str | None:
    """The cuBLAS that torch loads, from its wheel (nvidia-cublas*; None in a CPU build)."""
    for name in ("nvidia-cublas", "nvidia-cublas-cu13", "nvidia-cublas-cu12", "nvidia-cublas-cu11"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def image_fingerprint() -> dict | None:
    """The image's build record, or None when not running inside the kwanzaa-kit image."""
    path = Path(os.environ.get(IMAGE_JSON_ENV) or IMAGE_JSON)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    image_id = os.environ.get(IMAGE_ID_ENV, "")
    if re.fullmatch(r"sha256:[0-9a-f]{64}", image_id):
        record["image_id"] = image_id
    return record


def lock_kind_for(torch_cuda: str | None) -> str:
    """The lock a torch build comes from: its CUDA major version, or cpu."""
    return CUDA_LOCKS.get(torch_cuda.split(".")[0], "cuda") if torch_cuda else "cpu"


def kit_revision() -> str | None:
    """The kit's source commit: the image's record, else the checkout's `git rev-parse HEAD` (with
    -dirty when it has uncommitted changes), else None."""
    import subprocess

    record = image_fingerprint()
    if record and record.get("revision") not in (None, "", "unknown"):
        return record["revision"]
    root = REQUIREMENTS_DIR.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", head.stdout.strip()):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def lock_path(kind: str) -> Path:
    """requirements/<kind>.txt: `cpu` for CI and laptops, `cuda` and `cuda-12.6` for the images."""
    if kind not in LOCK_KINDS:
        raise ValueError(f"lock kind must be one of {LOCK_KINDS}, not {kind!r}")
    return REQUIREMENTS_DIR / f"{kind}.txt"


def lock_sha256(kind: str) -> str:
    """sha256 of the lock file that `scripts/install-locked.sh <kind>` installs."""
    return hashlib.sha256(lock_path(kind).read_bytes()).hexdigest()


def lock_pins(kind: str) -> dict[str, str]:
    """name -> version of every package the lock pins."""
    pins = {}
    for line in lock_path(kind).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            pins[m[1].lower().replace("_", "-")] = m[2]
    return pins


def lock_mismatches(kind: str) -> list[str]:
    """Packages whose installed version is not the lock's ('name lock -> installed'); [] = in sync."""
    out = []
    for name, pinned in sorted(lock_pins(kind).items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or installed.split("+")[0] != pinned.split("+")[0]:
            out.append(f"{name} {pinned} -> {installed or 'missing'}")
    return out


def installed_lock_sha256(kind: str) -> str | None:
    """The lock's sha256 when this environment is exactly what it pins, else None: a lock hash
    in a manifest means "installed from this lock", never just "a lock file was nearby"."""
    try:
        return None if lock_mismatches(kind) else lock_sha256(kind)
    except OSError:
        return None


def build_image_record(base_image: str, lock_kind: str, revision: str) -> dict:
    """The image.json content, from the environment the build just installed."""
    match = _PINNED_REFERENCE.match(base_image)
    if not match:
        raise ValueError(f"base image {base_image!r} is not pinned as NAME:TAG@sha256:<64 hex>")
    return {
        "schema_version": 1,
        "kit_version": metadata.version("kwanzaa-kit"),
        "lock": f"requirements/{lock_kind}.txt",
        "lock_sha256": lock_sha256(lock_kind),
        "base_image": match["name"],
        "base_image_digest": match["digest"],
        "python_version": platform.python_version(),
        "torch_version": metadata.version("torch"),
        "revision": revision,
    }


def main(argv: list[str] | None = None) -> None:
    """Build-time hook: write image.json, refusing labels that disagree with what was installed."""
    parser = argparse.ArgumentParser(prog="python -m kit.container", description=main.__doc__)
    parser.add_argument("--base-image", required=True, help="NAME:TAG@sha256:DIGEST")
    parser.add_argument("--lock", choices=LOCK_KINDS, default="cuda")
    parser.add_argument("--revision", default="unknown")
    parser.add_argument("--expect-lock-sha256", default="", help="the image label's value")
    parser.add_argument("--expect-version", default="", help="the image label's value")
    parser.add_argument("--out", type=Path, default=IMAGE_JSON)
    args = parser.parse_args(argv)

    record = build_image_record(args.base_image, args.lock, args.revision)
    for label, key in ((args.expect_lock_sha256, "lock_sha256"), (args.expect_version, "kit_version")):
        if label and label != record[key]:
            parser.error(f"label says {key}={label} but the build installed {record[key]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
