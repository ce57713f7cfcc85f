#!/usr/bin/env python3
"""Claim: generation speed of a trained run with transformers' dynamic vs static KV cache, and
whether both give the same answers.

Loads RUN's base model and adapter as `kit eval` does (kit.evaluate.runner.load_run: the run's
determinism switches, its pinned eval rows, the merge and batch size `kit eval` would use) and
generates greedily for the first --rows eval rows with each cache in turn. Static runs twice: on a
GPU its first pass includes torch.compile's warm-up, the second shows whether it gives the same
bytes again. Records seconds, new tokens/s and a hash of the answers of each pass.

On the GPU machine, from the repository root (setup-image.sh only on an image that is not the
kwanzaa-kit image), after `kit train` has made RUN:

  source benchmarks/setup-image.sh; cd benchmarks
  python eval_speed.py RUN --rows 8 --out OUT      -> OUT/eval-speed-<strategy>.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import command, save, sync

from kit import io


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run directory made by `kit train`")
    p.add_argument("--rows", type=int, default=8, help="eval rows to generate for")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the recipe's")
    p.add_argument("--caches", default="dynamic,static,static", help="caches to time, in order, comma-separated")
    p.add_argument("--out", type=Path, default=Path("/tmp/eval-speed"), help="where the result JSON goes")
    args = p.parse_args()

    from kit.evaluate import runner

    loaded = runner.load_run(args.run)
    rows = loaded.rows[:args.rows]
    batch = loaded.settings["batch_size"]
    max_new = args.max_new_tokens or loaded.recipe.evaluation.max_new_tokens
    results = []
    for cache in args.caches.split(","):
        sync()
        began = time.perf_counter()
        texts, new_tokens = runner.generate(loaded.net, loaded.tok, rows, batch, max_new, loaded.device, cache=cache)
        sync()
        seconds = time.perf_counter() - began
        results.append({"cache": cache, "seconds": round(seconds, 2), "new_tokens": new_tokens,
                        "new_tokens_per_s": round(new_tokens / seconds, 1),
                        "responses_sha256": io.sha256_bytes("\n".join(texts).encode())})
        print(json.dumps(results[-1]), flush=True)
    strategy = loaded.manifest["plan"]["strategy"]
    summary = {"claim": "generation speed, dynamic vs static KV cache", "command": command(), "strategy": strategy,
               "rows": len(rows), "batch_size": batch, "merge": loaded.settings["merge"], "max_new_tokens": max_new,
               "device": loaded.device, "gpu": _gpu(loaded.device), "results": results,
               "identical_responses": len({r["responses_sha256"] for r in results}) == 1}
    save(args.out / f"eval-speed-{strategy}.json", summary)
    print(f"identical responses across {args.caches}: {summary['identical_responses']}")


def _gpu(device: str) -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if device.startswith("cuda") else None


if __name__ == "__main__":
    main()
