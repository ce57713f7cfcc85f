"""Training speed of a run: tokens/s, MFU and peak memory, from its timing and step logs."""

from __future__ import annotations

import os
from pathlib import Path

from kit import hardware, rundir


def speed_summary(run: Path, n_params: int, hardware_class: dict) -> dict:
    """Seconds, tokens/s, MFU and peak memory of the run's training steps (timing.jsonl).

    Tokens are the real (unpadded) tokens of each step; the first step (kernel selection, the
    allocator filling up) is left out of the rate when there are others. After a resume the
    rate mixes two processes' steps (the resumed one's first step included).
    """
    gpu_name = hardware_class["device_name"] if hardware_class["device_type"] == "cuda" else None
    timing = {t["step"]: t for t in rundir.read_jsonl(run / rundir.TIMING)}
    tokens = {r["step"]: r["tokens"] for r in rundir.read_jsonl(run / rundir.TRAIN_LOG)}
    steps = sorted(set(timing) & set(tokens))
    if not steps:
        return {}
    rated = steps[1:] or steps
    seconds = sum(timing[s]["seconds"] for s in rated)
    rate = sum(tokens[s] for s in rated) / seconds if seconds > 0 else None
    peak = hardware.peak_flops_for(gpu_name) if gpu_name else None
    padded = sum(timing[s]["padded_tokens"] for s in steps)
    out = {"loop_seconds": round(sum(timing[s]["seconds"] for s in steps), 3),
           "tokens_per_s": round(rate, 1) if rate else None, "rate_steps": f"{rated[0]}-{rated[-1]}",
           "padding_waste": round(1 - sum(tokens[s] for s in steps) / padded, 4) if padded else None,
           # per GPU: the run's tokens/s over its processes
           "mfu": round(hardware.estimate_mfu(rate / (hardware_class.get("world_size") or 1), n_params, peak), 4)
           if rate and peak else None,
           "mfu_convention": "6N per real token; N = all parameters; recomputation and attention not counted; "
                             "per GPU",
           "gpu": gpu_name, "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF") if gpu_name else None}
    for key in ("peak_reserved_gib", "peak_allocated_gib"):
        if any(key in timing[s] for s in steps):
            out[key] = max(timing[s].get(key, 0.0) for s in steps)
    return out
