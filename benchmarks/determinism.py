#!/usr/bin/env python3
"""Claim: `kit train` run twice in fresh processes gives the same adapter bytes and train log,
for each recipe and method.

For each recipe and strategy: `kit train` twice, each run in a fresh process into its own run
directory; records each run's adapter and train-log hashes (from its manifest), losses, hardware,
software and seconds, and whether the two runs are bit-identical.

On the GPU machine, from the repository root (setup-image.sh only on an image that is not the
kwanzaa-kit image):

  source benchmarks/setup-image.sh; cd benchmarks
  python determinism.py --recipes tiny,olmo7b-random-lora,olmo7b-random-qlora --strategies lora,qlora --out OUT
      -> OUT/determinism.json   (results/h100/2026-11-28-determinism.json)

A recipe whose name ends in -lora or -qlora runs with that method only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import REPO, command, gpu_name, kit, save


def summary(run: Path, seconds: float) -> dict:
    """What one run's manifest and train log say about it."""
    from kit import rundir

    m = rundir.read_manifest(run)
    env = m["inputs"]["environment"]
    return {"status": m["status"], "adapter_sha256": m["outputs"]["adapter"]["sha256"],
            "train_log_sha256": m["outputs"]["train_log"]["sha256"],
            "losses": [x["loss"] for x in rundir.read_jsonl(run / rundir.TRAIN_LOG)],
            "hardware": env["hardware"], "software": env["software"],
            "base_model_sha256": m["inputs"]["base_model"]["sha256"], "wall_seconds": round(seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default="tiny,olmo7b-random-lora,olmo7b-random-qlora",
                   help="shipped recipe names, comma-separated")
    p.add_argument("--strategies", default="lora,qlora", help="methods, comma-separated")
    p.add_argument("--out", type=Path, default=Path("/tmp/determinism"), help="where the result JSON goes")
    p.add_argument("--runs", type=Path, default=None, help="where the runs go (default: --out)")
    args = p.parse_args()
    work = args.runs or args.out
    work.mkdir(parents=True, exist_ok=True)
    result = {"claim": "bit-identical reruns of kit train", "gpu": gpu_name(), "command": command(), "pairs": {}}
    for name in args.recipes.split(","):
        strategies = [s for s in args.strategies.split(",") if not name.endswith(("-lora", "-qlora"))
                      or name.endswith(f"-{s}")]
        for strategy in strategies:
            runs = []
            for rep in (1, 2):
                run = work / f"{name}-{strategy}-{rep}"
                seconds, _ = kit("train", "--recipe", str(REPO / "recipes" / f"{name}.yaml"), "--strategy", strategy,
                                 "--output", str(run), log=work / f"{name}-{strategy}-{rep}.log")
                runs.append(summary(run, seconds))
            same = all(runs[0][k] == runs[1][k] for k in ("adapter_sha256", "train_log_sha256", "losses"))
            result["pairs"][f"{name}-{strategy}"] = {"bit_identical_rerun": same, "runs": runs}
            save(args.out / "determinism.json", result)
            print(f"{name} {strategy}: identical {same} ({runs[0]['adapter_sha256'][:16]})", flush=True)
    print(json.dumps({k: v["bit_identical_rerun"] for k, v in result["pairs"].items()}))


if __name__ == "__main__":
    main()
