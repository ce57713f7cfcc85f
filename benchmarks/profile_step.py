#!/usr/bin/env python3
"""Where does a deterministic training step spend its time? (issue 9)

Profiles the kit's own training loop (kit.train.run_loop) on the 7B architecture with random
weights, one micro-batch per step, and prints the top operators by GPU and by CPU time, with the
wall time of each step. One step warms up; the profiler records the next.

  python benchmarks/profile_step.py --strategy lora --seq 1024 --out /tmp/prof
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", choices=["lora", "qlora"], default="lora")
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--deterministic", type=int, default=1)
    p.add_argument("--fill", type=int, default=0, help="torch.utils.deterministic.fill_uninitialized_memory")
    p.add_argument("--out", default="/tmp/prof")
    args = p.parse_args()

    from torch.profiler import ProfilerActivity, profile

    from kit import determinism, model, qualify, rundir, train
    from kit.recipe import load_recipe, with_overrides

    loaded = qualify.random_variant(load_recipe(f"recipes/kwanzaa-olmo7b-{args.strategy}.yaml"), steps=4)
    loaded = with_overrides(loaded, determinism={"deterministic_algorithms": bool(args.deterministic),
                                                         "fill_uninitialized_memory": bool(args.fill)})
    recipe = loaded.recipe
    determinism.apply(recipe.seed, recipe.determinism)
    net = model.load_for_training(model.materialize_random(recipe.model), recipe, args.strategy, "cuda:0", recipe.seed)
    rows = qualify.synthetic_rows(2, args.seq, 50304)
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: kernels chosen, allocator filled
        train.run_loop(net, rows[:1], recipe, Path(tmp), "cuda:0", 1)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof, \
            tempfile.TemporaryDirectory() as tmp:
        train.run_loop(net, rows[1:], recipe, Path(tmp), "cuda:0", 1)
        times = [t["seconds"] for t in rundir.read_jsonl(Path(tmp) / rundir.TIMING)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.strategy}-seq{args.seq}-det{args.deterministic}-fill{args.fill}"
    by_gpu = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25)
    by_cpu = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    (out / f"profile-{tag}.txt").write_text(f"step seconds {times}\n\nby GPU time\n{by_gpu}\n\nby CPU time\n{by_cpu}\n")
    print(f"== {tag}: step seconds {[round(t, 3) for t in times]}")
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
