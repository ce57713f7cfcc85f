#!/usr/bin/env python3
"""Generation speed of a trained run: transformers' dynamic vs static KV cache (issue 9).

Loads RUN's base model and adapter as `kit eval` does (kit.evaluate.load_run), with the run's
determinism switches, and generates greedily for the first --rows eval rows with each cache in
turn (static is run twice: its first call includes torch.compile's warm-up on a GPU, the second
shows whether it gives the same bytes again). Prints seconds, new tokens/s and whether the answers are identical.

  python benchmarks/eval_speed.py RUN --rows 8 --max-new-tokens 800 --out /tmp/eval-speed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the recipe's")
    p.add_argument("--caches", default="dynamic,static,static")
    p.add_argument("--out", default="/tmp/eval-speed")
    args = p.parse_args()

    import torch

    from kit import evaluate

    loaded = evaluate.load_run(args.run)  # as `kit eval` loads it: switches, pinned eval rows, base + adapter
    manifest, recipe, device, tok, net = loaded.manifest, loaded.recipe, loaded.device, loaded.tok, loaded.net
    rows = loaded.rows[:args.rows]
    max_new = args.max_new_tokens or recipe.evaluation.max_new_tokens
    results = []
    for cache in args.caches.split(","):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        began = time.perf_counter()
        texts, new_tokens = evaluate.generate(net, tok, rows, recipe.evaluation.batch_size, max_new, device,
                                              cache=cache)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - began
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
        results.append({"cache": cache, "seconds": round(seconds, 2), "new_tokens": new_tokens,
                        "new_tokens_per_s": round(new_tokens / seconds, 1), "responses_sha256": digest})
        print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"run": str(args.run), "strategy": manifest["plan"]["strategy"], "rows": len(rows),
               "batch_size": recipe.evaluation.batch_size, "max_new_tokens": max_new, "device": device,
               "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None, "results": results,
               "identical_responses": len({r["responses_sha256"] for r in results}) == 1}
    (out / f"eval-speed-{manifest['plan']['strategy']}.json").write_text(json.dumps(summary, indent=1))
    print(f"identical responses across {args.caches}: {summary['identical_responses']}")


if __name__ == "__main__":
    main()
