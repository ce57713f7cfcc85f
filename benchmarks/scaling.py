#!/usr/bin/env python3
"""Claim: `kit train --nproc N` trains every shipped recipe on N GPUs, from an empty cache, with
bit-identical reruns, and scales its tokens/s against the same recipe on one GPU.

For each recipe: `kit train --nproc N` twice (the first with an empty kit cache, so every rank
starts at once and finds no random weights: one builds, the others wait; the second with the cache
the first left, unless --empty-cache-every-run), then `kit train` on one GPU. Tokens/s are the
runs' own (manifest summary.speed: real tokens over every step but the first).

Scaling is tokens/s of the first N-GPU run (empty cache) over the one-GPU run's.

On the GPU machine (N GPUs), from the repository root (setup-image.sh only on an image that is
not the kwanzaa-kit image):

  source benchmarks/setup-image.sh; cd benchmarks
  python scaling.py --nproc 2 --recipes olmo7b-random-lora,olmo7b-random-qlora --out OUT
      -> OUT/scaling-nproc2.json   (results/h200/2026-12-01-scaling-2gpu.json)
  python scaling.py --nproc 2 --recipes tiny --empty-cache-every-run --out OUT
      -> OUT/scaling-nproc2.json   (results/h200/2026-12-01-scaling-2gpu-tiny.json)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from common import REPO, command, gpu_name, kit, save

sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=int, default=2, help="GPUs for the data-parallel runs")
    p.add_argument("--recipes", default="tiny,olmo7b-random-lora,olmo7b-random-qlora",
                   help="shipped recipe names, comma-separated")
    p.add_argument("--empty-cache-every-run", action="store_true", help="the second N-GPU run starts from an empty cache too")
    p.add_argument("--out", type=Path, default=Path("/tmp/scaling"), help="where the result JSON goes")
    p.add_argument("--runs", type=Path, default=None, help="where the runs and caches go (default: --out)")
    args = p.parse_args()
    work = args.runs or args.out
    work.mkdir(parents=True, exist_ok=True)
    result = {"claim": "data-parallel training on several GPUs", "nproc": args.nproc, "gpu": gpu_name(),
              "command": command(), "recipes": {}}
    path = args.out / f"scaling-nproc{args.nproc}.json"
    for name in args.recipes.split(","):
        recipe = REPO / "recipes" / f"{name}.yaml"
        runs = []
        for rep in (1, 2):
            cache = work / f"cache-{name}-{rep if args.empty_cache_every_run else 1}"
            if rep == 1 or args.empty_cache_every_run:
                shutil.rmtree(cache, ignore_errors=True)
            run = work / f"{name}-n{args.nproc}-{rep}"
            seconds, summary = kit("train", "--recipe", str(recipe), "--output", str(run), "--nproc", str(args.nproc),
                                   log=work / f"{name}-n{args.nproc}-{rep}.log", env={"KWANZAA_KIT_CACHE": str(cache)})
            runs.append({"wall_seconds": round(seconds, 1), "empty_cache": rep == 1 or args.empty_cache_every_run,
                         "adapter_sha256": summary["adapter_sha256"], "speed": summary["summary"]["speed"]})
        one_seconds, one = kit("train", "--recipe", str(recipe), "--output", str(work / f"{name}-n1"),
                               log=work / f"{name}-n1.log", env={"KWANZAA_KIT_CACHE": str(work / f"cache-{name}-1")})
        rate_n, rate_1 = runs[0]["speed"]["tokens_per_s"], one["summary"]["speed"]["tokens_per_s"]
        result["recipes"][name] = {
            "world_size": args.nproc, "bit_identical_rerun": runs[0]["adapter_sha256"] == runs[1]["adapter_sha256"],
            "scaling_vs_1_gpu": round(rate_n / rate_1, 3) if rate_n and rate_1 else None,
            "tokens_per_s": {"n_gpus": rate_n, "1_gpu": rate_1}, "runs": runs,
            "one_gpu": {"wall_seconds": round(one_seconds, 1), "adapter_sha256": one["adapter_sha256"],
                        "speed": one["summary"]["speed"]},
            "steps": one["summary"]["steps"], "recorded": time.strftime("%Y-%m-%d")}
        save(path, result)
        r = result["recipes"][name]
        print(f"{name}: world {args.nproc}, identical {r['bit_identical_rerun']}, x{r['scaling_vs_1_gpu']} vs 1 GPU "
              f"({rate_n} vs {rate_1} tok/s)", flush=True)


if __name__ == "__main__":
    main()
