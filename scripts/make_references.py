#!/usr/bin/env python
"""Make a reference file from real runs: train and evaluate one recipe for several seeds, each in a
fresh `kit` process (as a user would run it), then write

    references/<recipe>/<hardware-class>.json              (kwanzaa-kit.reference.v1)
    references/<recipe>/<hardware-class>.checksums.sha256  (the seed run's adapter files)

The recipe's own seed gives the bit-exact part (adapter, train log and eval hashes, metrics, loss
curve); all seeds together give the band (kit.reference). The exact commands are recorded in it.

    python scripts/make_references.py --recipe recipes/tiny.yaml --seeds 42,1,2,3,4 --out references/tiny/
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kit import io
from kit.recipe import load_recipe
from kit.report.scrub import scrub
from kit.verify import reference

REPO = Path(__file__).resolve().parents[1]


def seed_recipe(original: Path, seed: int, folder: Path) -> Path:
    """A copy of the recipe with another seed; its relative paths made absolute so it runs from anywhere."""
    loaded = load_recipe(original)
    raw = yaml.safe_load(original.read_text("utf-8"))
    raw["seed"] = seed
    for key in ("train", "eval"):
        raw["data"][key] = str(loaded.resolve(raw["data"][key]))
    if raw["model"].get("path"):
        raw["model"]["path"] = str(loaded.resolve(raw["model"]["path"]))
    path = folder / f"{original.stem}-seed{seed}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def kit(*args: str, work: Path) -> tuple[str, dict]:
    """Run `python -m kit ARGS --json` in a fresh process; returns the command line (the work
    folder written as $WORK, so no local path is published) and its JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "KWANZAA_KIT_NO_REEXEC")}
    cmd = [sys.executable, "-m", "kit", *args, "--json"]
    shown = "kit " + " ".join(shlex.quote(a) for a in args).replace(str(work), "$WORK")
    print(f"$ {shown}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"`{shown}` exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return shown, json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--seeds", default="42,1,2,3,4", help="comma-separated; must include the recipe's seed")
    parser.add_argument("--out", type=Path, default=None,
                        help="reference JSON file, or a folder for <hardware-class>.json (default references/<recipe>/)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the runs go (default: a temp folder, kept)")
    args = parser.parse_args(argv)

    recipe = args.recipe.resolve()
    own_seed = load_recipe(recipe).recipe.seed
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if own_seed not in seeds:
        parser.error(f"--seeds must include the recipe's own seed {own_seed}")
    if len(set(seeds)) < reference.MIN_SEEDS:
        parser.error(f"a band needs at least {reference.MIN_SEEDS} different seeds")
    seeds = [own_seed] + [s for s in dict.fromkeys(seeds) if s != own_seed]
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="kit-references-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    recipe_arg = os.path.relpath(recipe, REPO) if recipe.is_relative_to(REPO) else str(recipe)

    results, runs = [], []
    began = time.time()
    for seed in seeds:
        recipe_file = recipe_arg if seed == own_seed else str(seed_recipe(recipe, seed, work))
        run = work / f"seed-{seed}"
        train_cmd, _ = kit("train", "--recipe", recipe_file, "--output", str(run), work=work)
        eval_cmd, _ = kit("eval", str(run), work=work)
        results.append(reference.run_results(run))
        runs.append({"seed": seed, "train": train_cmd, "eval": eval_cmd})

    command = "python scripts/make_references.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    # published in the repository: no home path, user or host name, token (kit.report.scrub)
    ref = scrub(reference.build(results, own_seed, recipe_arg, command, runs))
    ref["created"]["seconds"] = round(time.time() - began, 1)
    out = args.out or REPO / "references" / ref["recipe"]["name"]
    if out.suffix != ".json":
        out = out / f"{ref['hardware_class_slug']}.json"
    io.atomic_write_json(out, ref)
    sums = out.with_name(out.stem + ".checksums.sha256")
    io.atomic_write_text(sums, reference.checksums_text(ref["outputs"]["adapter_files"]))
    b = ref["bands"]
    print(f"wrote {out} and {sums.name}: {len(seeds)} seeds, adapter {ref['outputs']['adapter_sha256'][:16]}..., "
          f"eval loss {ref['results']['eval_loss']:.6f} band [{b['eval_loss']['low']:.6f}, {b['eval_loss']['high']:.6f}]; "
          f"runs kept in {work}")


if __name__ == "__main__":
    main()
