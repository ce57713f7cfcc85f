"""Resumable training state: adapter, optimizer, scheduler, RNG, step.

A checkpoint is written into a temporary folder and renamed into place, with a `checkpoint.json`
listing each file's sha256; a checkpoint whose files do not match is skipped (with a warning) and
the previous one is used. The two newest are kept. The data position needs no file: the order of
every step follows from the seed, so the step number is the position.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from kit import determinism, io, rundir
from kit.errors import KitError, ResourceError

log = logging.getLogger("kit.checkpoint")
KEEP = 2
FILES = ("adapter.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt")


def _dir(run: Path) -> Path:
    return run / rundir.CHECKPOINTS


def save(run: Path, step: int, model, optimizer, scheduler, rng_states: list | None = None) -> Path:
    """rng_states: the RNG state of every rank, in rank order (default: this process's)."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    root = _dir(run)
    root.mkdir(parents=True, exist_ok=True)
    check_disk(root, model)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
        save_file(state, str(tmp / "adapter.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_states or [determinism.rng_state()], tmp / "rng.pt")
        meta = {"step": step, "files": {name: io.sha256_file(tmp / name) for name in FILES}}
        io.atomic_write_json(tmp / "checkpoint.json", meta)
        final = root / f"step-{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint saved at step %d", step)
    return final


def check_disk(root: Path, model) -> None:
    """Refuse to start (or to write a checkpoint) without room for one: adapter and optimizer state."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    needed = trainable * 4 * 4 + (64 << 20)  # fp32 adapter + 2 optimizer moments + 1 spare copy + 64 MiB
    free = shutil.disk_usage(root if root.exists() else root.parent).free
    if free < needed:
        raise ResourceError(f"only {free / 2**30:.2f} GiB free for a checkpoint of about {needed / 2**30:.2f} GiB; "
                            "the last good checkpoint is kept", where=str(root),
                            fix="free some disk space, then `kit train --resume` this run")


def valid(ckpt: Path) -> bool:
    meta_path = ckpt / "checkpoint.json"
    try:
        meta = rundir.read_json(meta_path)
        if not isinstance(meta["step"], int) or isinstance(meta["step"], bool) or set(meta["files"]) != set(FILES):
            return False
        return all(io.sha256_file(ckpt / name) == digest for name, digest in meta["files"].items())
    except (OSError, ValueError, KeyError, TypeError, KitError):
        return False


def restore_latest(run: Path, model, optimizer, scheduler, rank: int = 0) -> tuple[int, list[dict]]:
    """Load the newest valid checkpoint; returns (its step, the log lines up to it), or (0, [])."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    for ckpt in sorted(_dir(run).glob("step-*"), reverse=True):
        if not valid(ckpt):
            log.warning("checkpoint %s is corrupt (a file does not match its sha256); trying the previous one",
                        ckpt.name)
            continue
        step = rundir.read_json(ckpt / "checkpoint.json")["step"]
        device = next(p.device for p in model.parameters() if p.requires_grad)
        set_peft_model_state_dict(model, {k: v.to(device) for k, v in load_file(str(ckpt / "adapter.safetensors")).items()})
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        determinism.set_rng_state(torch.load(ckpt / "rng.pt", weights_only=True)[rank])
        return step, _log_lines(run, step)
    return 0, []


def _log_lines(run: Path, through_step: int) -> list[dict]:
    return [x for x in rundir.read_step_log(run / rundir.TRAIN_LOG) if x["step"] <= through_step]
