"""What the benchmarks share: recipe variants, the effective-speed summary, the GPU, timed `kit` runs,
the command line each result records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLMO_7B_PARAMS = 6_888_095_744


def write_variant(src_path: Path, out_path: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of a recipe YAML with some fields changed, its data paths made absolute."""
    import yaml

    src_path = Path(src_path).resolve()
    recipe = yaml.safe_load(src_path.read_text())
    for k in ("train", "eval"):
        recipe["data"][k] = str((src_path.parent / recipe["data"][k]).resolve())
    edit(recipe)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return out_path


def parse_overrides(spec: str) -> dict:
    """"batching=packed,micro_batch_tokens=8192,attention=varlen" -> training overrides (ints, null)."""
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        out[key] = None if value in ("null", "none") else int(value) if value.isdigit() else value
    return out


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def summarize(name: str, step_seconds: list[float], real_tokens: list[int], processed_tokens: list[int],
              peak_reserved_gib: float, peak_allocated_gib: float) -> dict:
    """Effective tokens/s: real (unpadded) tokens over the seconds of every step but the first (warm-up)."""
    from kit.hardware import estimate_mfu, peak_flops_for

    t, rt = step_seconds[1:] or step_seconds, real_tokens[1:] or real_tokens
    tps = sum(rt) / sum(t)
    peak = peak_flops_for(gpu_name())
    return {"name": name, "step_seconds": [round(s, 4) for s in step_seconds], "real_tokens_per_step": real_tokens,
            "processed_tokens_per_step": processed_tokens, "effective_tokens_per_s": round(tps, 1),
            "padding_waste": round(1 - sum(real_tokens) / sum(processed_tokens), 4),
            "mfu_effective": round(estimate_mfu(tps, OLMO_7B_PARAMS, peak), 4) if peak else None,
            "peak_reserved_gib": round(peak_reserved_gib, 3), "peak_allocated_gib": round(peak_allocated_gib, 3),
            "gpu": gpu_name()}


def kit(*args: str, log: Path | None = None, env: dict | None = None) -> tuple[float, dict]:
    """`python -m kit ARGS --json` in a fresh process, timed; stderr to `log` as it runs."""
    began = time.perf_counter()
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "KWANZAA_KIT_NO_REEXEC")}
    full_env.update(env or {})
    with open(log or os.devnull, "w") as err:
        done = subprocess.run([sys.executable, "-m", "kit", *args, "--json"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=err, text=True, env=full_env)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"kit {' '.join(args)} failed ({done.returncode}): see {log}")
    return seconds, json.loads(done.stdout)


def command() -> str:
    """This script's command line as it was typed, recorded in every result."""
    return " ".join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def save(path: Path, obj: dict) -> None:
    """Written after every part, so a time limit loses only the part it cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")
