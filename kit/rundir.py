"""A run directory: where each file of one run lives, and how files are written (atomically).

    RUN/recipe.json          the resolved recipe (canonical JSON; its sha256 is inputs.recipe)
    RUN/manifest.json        inputs.* and outputs.* fingerprints, plan, environment, summary
    RUN/train_log.jsonl      one line per optimizer step: loss, grad-norm, lr, tokens, batch sha256
    RUN/adapter/             the PEFT adapter (adapter_model.safetensors, adapter_config.json)
    RUN/checkpoints/step-N/  resumable training state
    RUN/logs/kit.log         human log of the run; a failed run's traceback ends up here
    RUN/timing.jsonl         seconds per step (not fingerprinted: it is not deterministic)
    RUN/data/                copies of the pinned train/eval JSONL (the run is self-contained)
    RUN/.local.json          where the recipe file was on this machine (never published)
    RUN/eval/                responses.jsonl, metrics.json
    RUN/report/              report.json, report.md, loss_curve.png
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
RECIPE = "recipe.json"
TRAIN_LOG = "train_log.jsonl"
TIMING = "timing.jsonl"
ADAPTER = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CHECKPOINTS = "checkpoints"
LOG = "logs/kit.log"
EVAL = "eval"
DATA = "data"
LOCAL = ".local.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text("utf-8"))


def read_json_file(path: Path, error: type, what: str, fix_missing: str, fix_broken: str) -> Any:
    """A JSON file a user pointed at: `error` (a KitError type, exit 2) names the file when it is
    missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found", where=str(path), fix=fix_missing)
    try:
        return json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} is not JSON ({e})", where=str(path), fix=fix_broken) from None


def read_manifest(run: Path, complete: bool = False) -> dict:
    """A run's manifest; refused when the folder is not a run (or, with complete, not a finished one)."""
    from kit.errors import RunDirError

    path = Path(run) / MANIFEST
    if not path.is_file():
        raise RunDirError("no manifest.json in the run directory", where=str(run),
                          fix="pass a folder written by `kit train`")
    manifest = read_json(path)
    if complete and manifest.get("status") != "complete":
        raise RunDirError(f"the run is not complete (status: {manifest.get('status')})", where=str(path),
                          fix=f"finish it: `kit train --resume {run}`")
    return manifest


def append_jsonl(path: Path, obj: Any) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[Any]:
    """The records of a JSONL file ([] when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
