"""A run directory: where each file of one run lives, and how a command reads it.

    RUN/recipe.json          the resolved recipe (canonical JSON; its sha256 is inputs.recipe)
    RUN/manifest.json        inputs.* and outputs.* fingerprints, plan, flags, environment, summary
    RUN/train_log.jsonl      one line per optimizer step: loss, grad-norm, lr, tokens, batch sha256
    RUN/adapter/             the PEFT adapter (adapter_model.safetensors, adapter_config.json, README.md)
    RUN/checkpoints/step-N/  resumable training state
    RUN/logs/kit.log         human log of the run; a failed run's traceback ends up here
    RUN/timing.jsonl         seconds per step (not fingerprinted: it is not deterministic)
    RUN/data/                copies of the pinned train/eval JSONL (the run is self-contained)
    RUN/.local.json          where the recipe file was on this machine (never published)
    RUN/eval/                responses.jsonl, metrics.json, timing.json
    RUN/report/              report.json, report.md, loss_curve.png

Every reader here turns a missing, malformed or wrongly shaped file into one RunDirError (exit 2)
naming the file and the key. The one process working in a run holds its lock (RunLock, an
flock on the folder itself, so it leaves no file behind); a folder holding a whole output (the
adapter, eval/) is written beside its place under a `.tmp-` name and renamed in when complete.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kit import io
from kit.errors import ResourceError, RunDirError

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
TEMP_PREFIX = ".tmp-"  # folders being written; io's atomic files are `.<name>.<random>.tmp`
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # can run code when loaded

_FIX_RERUN = "the run directory is damaged: restore it, or train again into a new folder"
_SHA = "a sha256"


def read_json(path: Path, what: str = "run file") -> Any:
    """A JSON file of a run; missing or malformed -> RunDirError (exit 2) naming it."""
    return io.read_json(path, RunDirError, what, _FIX_RERUN, _FIX_RERUN)


def read_jsonl(path: Path, what: str = "run log") -> list[Any]:
    """The records of a JSONL file of a run ([] when it does not exist)."""
    return [obj for _, obj in io.read_jsonl(path, RunDirError, what, fix=_FIX_RERUN, missing_ok=True)]


# ---- shapes ----------------------------------------------------------------------------------

def _kind_ok(value: Any, kind) -> bool:
    if kind == _SHA:
        return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(kind, tuple) and all(isinstance(k, str) for k in kind):
        return value in kind
    if isinstance(kind, tuple):
        return any(_kind_ok(value, k) for k in kind)
    if kind is None:
        return value is None
    return isinstance(value, kind)


def _name(kind) -> str:
    if kind is None:
        return "null"
    if isinstance(kind, tuple):
        return " or ".join(repr(k) if isinstance(k, str) and k != _SHA else _name(k) for k in kind)
    return kind if isinstance(kind, str) else {int: "an integer", float: "a finite number", str: "a string",
                                               dict: "an object", list: "a list", bool: "true/false"}[kind]


def require(obj: Any, shape: dict[str, Any], where: str, what: str, fix: str = _FIX_RERUN,
            error: type = RunDirError) -> None:
    """Check that every `a.b.c` key of `shape` is there with its kind (type, tuple of choices, _SHA);
    a key ending in `?` may be absent or null."""
    for dotted, kind in shape.items():
        optional, key = dotted.endswith("?"), dotted.rstrip("?")
        node, present = obj, True
        for part in key.split("."):
            present = isinstance(node, dict) and part in node
            node = node.get(part) if present else None
        if optional and node is None:
            continue
        if not present or not _kind_ok(node, kind):
            problem = (f"`{key}` is missing (it should be {_name(kind)})" if not present
                       else f"`{key}` should be {_name(kind)}, not {type(node).__name__} {str(node)[:40]!r}")
            raise error(f"{what}: {problem}", where=where, fix=fix)


_MANIFEST = {"schema": str, "status": str, "recipe_name?": str, "plan?": dict, "inputs?": dict, "outputs?": dict,
             "flags?": dict, "determinism?": dict, "summary?": dict, "eval?": dict, "error?": str}
_STARTED = {"recipe_name": str, "plan.strategy": ("lora", "qlora"), "plan.reason": str, "plan.source": str,
            "determinism": dict, "determinism.seed": int,
            "inputs.recipe.sha256": _SHA, "inputs.dataset.sha256": _SHA, "inputs.dataset.train.sha256": _SHA,
            "inputs.dataset.eval.sha256": _SHA, "inputs.dataset.allow_data_change?": bool,
            "inputs.tokenizer.sha256": _SHA, "inputs.base_model.sha256": _SHA,
            "inputs.environment.sha256": _SHA, "inputs.environment.hardware_sha256": _SHA,
            "inputs.environment.software_sha256": _SHA, "inputs.environment.software": dict,
            "inputs.environment.hardware.device_type": str, "inputs.environment.hardware.world_size": int,
            "inputs.environment.hardware.cpu_threads": int, "inputs.environment.hardware.deterministic": bool,
            "flags.strategy?": ("lora", "qlora"), "flags.allow_data_change?": bool}
_COMPLETE = {"outputs": dict, "outputs.adapter.sha256": _SHA, "outputs.adapter.files": dict,
             "summary.speed?": dict}


def read_manifest(run: Path, complete: bool = False, started: bool = False) -> dict:
    """A run's manifest, its shape checked; refused when the folder is not a run, or (started) one
    whose inputs were never recorded, or (complete) not a finished one."""
    run = Path(run)
    if not run.is_dir():
        raise RunDirError("run directory not found" if not run.exists() else "not a directory (a run is a folder)",
                          where=str(run), fix="pass a folder written by `kit train`")
    path = run / MANIFEST
    if not path.is_file():
        raise RunDirError("no manifest.json in the run directory", where=str(run),
                          fix="pass a folder written by `kit train`")
    manifest = read_json(path, "manifest")
    if not isinstance(manifest, dict):
        raise RunDirError("manifest.json is not a kit manifest (not a JSON object)", where=str(path), fix=_FIX_RERUN)
    require(manifest, _MANIFEST, str(path), "manifest.json")
    if complete and manifest["status"] != "complete":
        raise RunDirError(f"the run is not complete (status: {manifest['status']})", where=str(path),
                          fix=f"finish it: `kit train --resume {run}`")
    if complete or started:
        require(manifest, _STARTED, str(path), "manifest.json")
    if complete:
        require(manifest, _COMPLETE, str(path), "manifest.json")
        for key, entry in manifest["outputs"].items():
            require(entry, {"sha256": _SHA, "files?": dict}, str(path), f"manifest.json outputs.{key}")
            for name, digest in (entry.get("files") or {}).items():
                require({"d": digest}, {"d": _SHA}, str(path), f"manifest.json outputs.{key}.files.{name}")
    return manifest


_STEP = {"step": int, "loss": float, "tokens?": int, "label_tokens?": int, "rows?": int}
_TIMING = {"step": int, "seconds": float, "padded_tokens": int}


def read_step_log(path: Path, timing: bool = False, partial_ok: bool = False) -> list[dict]:
    """train_log.jsonl (or timing.jsonl): one record per step, steps 1, 2, 3... in order.
    partial_ok: a last line without its newline (a kill mid-write; resume drops it) is left out."""
    if partial_ok and path.is_file() and not path.read_bytes().endswith(b"\n"):
        text = io.read_text(path, RunDirError, path.name, _FIX_RERUN)
        records = []
        for n, line in enumerate(text.splitlines()[:-1], start=1):
            try:
                records += [(f"{path}:{n}", io.loads(line))] if line.strip() else []
            except io.JsonProblem as e:
                raise RunDirError(f"line is not valid JSON ({e})", where=f"{path}:{n}", fix=_FIX_RERUN) from None
    else:
        records = io.read_jsonl(path, RunDirError, path.name, fix=_FIX_RERUN, missing_ok=True)
    for i, (where, record) in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise RunDirError("a step record is not a JSON object", where=where, fix=_FIX_RERUN)
        require(record, _TIMING if timing else _STEP, where, path.name)
        if record["step"] != i:
            raise RunDirError(f"step {record['step']} where step {i} belongs (a log of one run counts 1, 2, 3...)",
                              where=where, fix=_FIX_RERUN)
    return [record for _, record in records]


def drop_partial_line(path: Path) -> None:
    """Cut a log's last line when it has no newline: what a kill or a full disk leaves mid-write."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        io.atomic_write_bytes(path, data[: data.rfind(b"\n") + 1])


_METRIC = {"value?": float, "numerator?": int, "denominator?": int, "meets_target?": bool, "target?": dict}


def read_metrics(path: Path) -> dict:
    """An eval metrics file (kit eval): an object whose metrics are fractions."""
    scored = read_json(path, path.name)
    if not isinstance(scored, dict):
        raise RunDirError("metrics file is not a JSON object", where=str(path), fix=_FIX_RERUN)
    require(scored, {"metrics": dict, "eval_loss?": dict, "eval_loss.loss?": float}, str(path), path.name)
    for name, m in scored["metrics"].items():
        if not isinstance(m, dict):
            raise RunDirError(f"metrics.{name} is not an object", where=str(path), fix=_FIX_RERUN)
        require(m, _METRIC, str(path), f"{path.name} metrics.{name}")
    return scored


def read_local(run: Path) -> dict:
    """RUN/.local.json ({} when absent: a run copied from another machine has none)."""
    path = Path(run) / LOCAL
    if not path.is_file():
        return {}
    local = read_json(path, LOCAL)
    if not isinstance(local, dict):
        raise RunDirError(f"{LOCAL} is not a JSON object", where=str(path), fix=f"delete {LOCAL} (it is optional)")
    require(local, {"recipe_path?": str}, str(path), LOCAL, fix=f"delete {LOCAL} (it is optional)")
    return local


# ---- writing safely --------------------------------------------------------------------------

def check_output_path(path: Path, what: str, folder: bool) -> None:
    """Refuse, before any work, an output path that cannot be one: a file where a folder must be (or
    the reverse), or a path that runs through a file."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise RunDirError(f"{what} is {kind}, not {'a folder' if folder else 'a file'}", where=str(path),
                          fix=f"choose another path for the {what}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{what} lies under {parent}, which is a file", where=str(path),
                                  fix=f"choose another path for the {what}")
            break


def check_writable(folder: Path, what: str, need_bytes: int = 64 << 20) -> None:
    """Before long work: a file can be created in FOLDER (or in its nearest existing parent) and at
    least need_bytes are free there. Refused with one line, instead of failing at the end."""
    folder = Path(folder)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not probe.is_dir():
        raise RunDirError(f"{what} lies under {probe}, which is a file", where=str(folder),
                          fix=f"choose another path for the {what}")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".kit-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ResourceError(f"cannot write the {what} there ({e.strerror})", where=str(folder),
                            fix="choose a folder you can write to (or make this one writable)") from None
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise ResourceError(f"only {free / 2**20:.0f} MiB free for the {what} (needs about "
                            f"{need_bytes / 2**20:.0f} MiB)", where=str(folder),
                            fix="free some disk space, then run the command again")


def temp_dir(final: Path) -> Path:
    """An empty folder beside FINAL to write a whole output into before `publish_dir`."""
    return io.make_temp_dir(final.parent, f"{TEMP_PREFIX}{final.name}-")


def publish_dir(tmp: Path, final: Path) -> None:
    """Put a completely written folder in FINAL's place (the old one, if any, goes last)."""
    old = None
    if final.exists():
        old = final.parent / f"{TEMP_PREFIX}{final.name}-old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_temp(run: Path) -> list[str]:
    """Remove what an interrupted write left behind (`.tmp-*` folders, `.*.tmp` files); call it only
    while holding the run's lock, so no live writer's file is taken away."""
    removed = []
    for p in sorted(Path(run).rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        if p.name.startswith(TEMP_PREFIX) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith(".tmp") and (p.is_file() or p.is_symlink()):
            p.unlink(missing_ok=True)
        else:
            continue
        removed.append(str(p.relative_to(run)))
    return removed


# ---- the lock --------------------------------------------------------------------------------

_HELD: dict[str, list] = {}  # realpath -> [fd, count]: one flock per folder per process, re-entrant


class RunLock:
    """An exclusive lock on a run directory for the life of this process: flock on the folder.

    The kernel drops it when the process ends, however it ends, so a lock is never stale and no
    lock file is left behind. A second `kit train`, `kit train --resume`, `kit eval` or `kit report`
    in a folder that a live process is working in is refused at once instead of interleaving with
    it. Re-entrant within one process (kit reproduce trains, evaluates and reports under one).
    """

    def __init__(self, run: Path):
        self.run = Path(run)
        self._key: str | None = None

    def acquire(self) -> RunLock:
        import fcntl

        key = os.path.realpath(self.run)
        if key in _HELD:
            _HELD[key][1] += 1
            self._key = key
            return self
        try:
            fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise RunDirError(f"cannot open the run directory ({e.strerror})", where=str(self.run),
                              fix="pass a folder written by `kit train`") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError("another kit process is working in this run directory", where=str(self.run),
                              fix="wait for it to finish (or stop it), then run the command again") from None
        _HELD[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None or self._key not in _HELD:
            return
        held = _HELD[self._key]
        held[1] -= 1
        if held[1] == 0:
            os.close(held[0])
            del _HELD[self._key]
        self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(run: Path) -> bool:
    """Whether another process holds RUN's lock (this process's own lock does not count)."""
    import fcntl

    if not Path(run).is_dir() or os.path.realpath(run) in _HELD:
        return False
    try:
        fd = os.open(os.path.realpath(run), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
