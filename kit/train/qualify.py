"""`kit qualify`: run the recipe's real architecture, with seeded random weights, on this GPU.

Nothing is downloaded: the architecture comes from the recipe (`model.config`), the weights are
seeded random, saved with `save_pretrained` and loaded back through the same path as real ones.
Each sequence length trains a few optimizer steps of one micro-batch through the kit's own
training loop (kit.train.run_loop, deterministic switches on), and reports measured peak memory
against the planner's estimate, tokens/s, MFU and the ETA of the whole recipe.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
from pathlib import Path

from kit import container, determinism, hardware, plan, rundir
from kit.data.rows import EncodedRow
from kit.errors import ResourceError
from kit.hardware import GiB
from kit.model import load, source
from kit.recipe import LoadedRecipe, with_overrides
from kit.train.loop import run_loop


def random_variant(loaded: LoadedRecipe, steps: int) -> LoadedRecipe:
    """The recipe with seeded random weights of its architecture, one micro-batch of one row per step."""
    spec = loaded.recipe.model
    return with_overrides(loaded, model={"source": "random", "config": spec.config or {}, "init_seed": 0,
                                         "id": None, "revision": None, "path": None, "files_sha256": {}},
                          training={"grad_accum_steps": 1, "micro_batch_size": 1, "epochs": 1, "max_steps": steps,
                                    "checkpoint_every_steps": 0, "warmup_ratio": 0.0,
                                    "micro_batch_tokens": None})


def synthetic_rows(n: int, seq_len: int, vocab: int, seed: int = 1234) -> list[EncodedRow]:
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, seq_len), generator=g).tolist()
    return [EncodedRow(f"synthetic-{i}", tuple(r), tuple(r)) for i, r in enumerate(ids)]


def qualify(loaded: LoadedRecipe, strategies: list[str], seq_lens: list[int], steps: int, warmup: int,
            total_tokens: int | None, on_result=None) -> dict:
    import torch

    if not torch.cuda.is_available():
        raise ResourceError("kit qualify measures a GPU, and none is visible", fix="run it on a machine with a GPU "
                            "(the tiny recipe trains on the CPU: kit train)")
    machine = hardware.detect()
    gpu = machine.gpus[0]
    variant = random_variant(loaded, steps)
    recipe = variant.recipe
    switches = determinism.apply(recipe.seed, recipe.determinism)
    path = source.materialize_random(recipe.model)
    arch = plan.Architecture.from_config(recipe.model.config)
    n_params = arch.linear_params() + arch.embedding_params()
    peak = hardware.peak_flops_for(gpu.name)
    results = []
    for strategy in strategies:
        recipe = with_overrides(variant, adapter={"method": strategy}).recipe
        net = load.load_for_training(path, recipe, strategy, "cuda:0", recipe.seed)
        for seq in seq_lens:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            rows = synthetic_rows(steps, seq, arch.vocab)
            with tempfile.TemporaryDirectory() as tmp:
                records = run_loop(net, rows, recipe, Path(tmp), "cuda:0", 1)
                times = [t["seconds"] for t in rundir.read_jsonl(Path(tmp) / rundir.TIMING)]
            timed = times[warmup:] or times
            step_s = statistics.median(timed)
            tps = seq / step_s
            est = plan.estimate(recipe, strategy, seq, gpu.total_gib)
            reserved = torch.cuda.max_memory_reserved() / GiB
            free, total = torch.cuda.mem_get_info()
            res = {"strategy": strategy, "seq_len": seq, "steps": steps, "step_seconds": times,
                   "median_step_s": round(step_s, 4), "tokens_per_s": round(tps, 1),
                   "mfu": round(hardware.estimate_mfu(tps, n_params, peak), 4) if peak else None,
                   "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GiB, 3),
                   "peak_reserved_gib": round(reserved, 3), "device_used_gib": round((total - free) / GiB, 3),
                   "planned_peak_gib": est.peak_gib, "planned_components_gib": est.components_gib,
                   "plan_error": round((est.peak_gib - reserved) / reserved, 4),
                   "losses": [x["loss"] for x in records],
                   "eta_full_recipe_s": round(total_tokens / tps) if total_tokens else None}
            results.append(res)
            if on_result:
                on_result(res)
        del net
        gc.collect()
        torch.cuda.empty_cache()
    return {"recipe": loaded.recipe.name, "gpu": gpu.name, "gpu_total_gib": gpu.total_gib, "driver": machine.driver,
            "cuda": machine.cuda, "libraries": container.library_versions(), "determinism": switches,
            "n_params": n_params, "trainable_params": arch.lora_params(recipe.adapter.r, recipe.adapter.target_modules),
            "peak_bf16_flops": peak, "warmup_steps": warmup, "results": results}
