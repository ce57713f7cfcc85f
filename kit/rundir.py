"""A run directory: where each file of one run lives, and how a command reads it.

    RUN/recipe.json          the resolved recipe (canonical JSON; its sha256 is inputs.recipe)
    RUN/manifest.json        inputs.* and outputs.* fingerprints, plan, environment, summary
    RUN/train_log.jsonl      one line per optimizer step: loss, grad-norm, lr, tokens, batch sha256
    RUN/adapter/             the PEFT adapter (adapter_model.safetensors, adapter_config.json, README.md)
    RUN/checkpoints/step-N/  resumable training state
    RUN/logs/kit.log         human log of the run; a failed run's traceback ends up here
    RUN/timing.jsonl         seconds per step (not fingerprinted: it is not deterministic)
    RUN/data/                copies of the pinned train/eval JSONL (the run is self-contained)
    RUN/.local.json          where the recipe file was on this machine (never published)
    RUN/.lock                held by the one process working in the run (kit.rundir.RunLock)
    RUN/eval/                responses.jsonl, metrics.json, timing.json
    RUN/report/              report.json, report.md, loss_curve.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit import io
from kit.errors import RunDirError

MANIFEST = "manifest.json"
RECIPE = "recipe.json"
TRAIN_LOG = "train_log.jsonl"
TIMING = "timing.jsonl"
ADAPTER = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINTS = "checkpoints"
LOG = "logs/kit.log"
EVAL = "eval"
DATA = "data"
LOCAL = ".local.json"
LOCK = ".lock"

_FIX_RERUN = "the run directory is damaged: restore it, or train again into a new folder"


def read_json(path: Path, what: str = "run file") -> Any:
    """A JSON file of a run; missing or malformed -> RunDirError (exit 2) naming it."""
    return io.read_json(path, RunDirError, what, _FIX_RERUN, _FIX_RERUN)


def read_jsonl(path: Path, what: str = "run log") -> list[Any]:
    """The records of a JSONL file of a run ([] when it does not exist)."""
    return [obj for _, obj in io.read_jsonl(path, RunDirError, what, fix=_FIX_RERUN, missing_ok=True)]


def read_manifest(run: Path, complete: bool = False) -> dict:
    """A run's manifest; refused when the folder is not a run (or, with complete, not a finished one)."""
    run = Path(run)
    if not run.is_dir():
        raise RunDirError("run directory not found" if not run.exists() else "not a directory", where=str(run),
                          fix="pass a folder written by `kit train`")
    path = run / MANIFEST
    if not path.is_file():
        raise RunDirError("no manifest.json in the run directory", where=str(run),
                          fix="pass a folder written by `kit train`")
    manifest = read_json(path, "manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("status"), str):
        raise RunDirError("manifest.json is not a kit manifest (no `status`)", where=str(path), fix=_FIX_RERUN)
    if complete:
        if manifest["status"] != "complete":
            raise RunDirError(f"the run is not complete (status: {manifest['status']})", where=str(path),
                              fix=f"finish it: `kit train --resume {run}`")
        for key in ("inputs", "outputs", "plan", "determinism", "recipe_name"):
            if not isinstance(manifest.get(key), (dict, str)):
                raise RunDirError(f"manifest.json has no `{key}`", where=str(path), fix=_FIX_RERUN)
    return manifest


class RunLock:
    """An exclusive lock on a run directory for the life of this process (flock on RUN/.lock).

    The kernel drops it when the process ends, however it ends, so a lock is never stale: a
    second `kit train`, `kit eval` or `kit train --resume` into a folder that a live process is
    working in is refused at once instead of interleaving with it.
    """

    def __init__(self, run: Path):
        self.path = Path(run) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError("another kit process is working in this run directory", where=str(self.path.parent),
                              fix="wait for it to finish (or stop it), then run the command again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        import os

        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
