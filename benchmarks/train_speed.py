#!/usr/bin/env python3
"""Claim: deterministic training tokens/s of the kit against the competent peer, on one GPU.

Both sides train the OLMo-7B architecture with the same seeded random weights (the kit's random-init
cache, saved and loaded back like real weights) on the same rows of the real Kwanzaa training set,
answer tokens only, deterministic mode on, the same rows per optimizer step and steps.

  peer    what a competent user runs instead: transformers Trainer + peft, batch 1 (so no padding),
          gradient accumulation to the same rows per step, gradient checkpointing, bf16,
          full_determinism; QLoRA: prepare_model_for_kbit_training + paged_adamw_8bit, LoRA: fused AdamW.
  padded  an extra, labelled row only: the same Trainer with every row padded to 2048 tokens.
  kit     `kit train` on recipes/olmo7b-random-<strategy>.yaml with the variant's training settings,
          in fresh processes, twice: the reruns must give the same adapter bytes.

Effective tokens/s counts real tokens only, over every step (the first included, on both sides); peak memory is
torch's peak reserved over the training steps, measured the same way on both sides.

`sweep` runs kit variants in ONE process on one loaded model (LoRA weights carry over): it is for
choosing a recipe's batching; claims come from `claim` only.

On the GPU machine, from the repository root (setup-image.sh only on an image that is not the
kwanzaa-kit image):

  source benchmarks/setup-image.sh; cd benchmarks
  python train_speed.py claim --strategy lora --variant recipe --out OUT
  python train_speed.py claim --strategy qlora --variant recipe --out OUT
      -> OUT/train-speed-<strategy>.json   (results/h200/2026-12-01-train-speed-{lora,qlora}.json)
  python train_speed.py sweep --strategy qlora --out OUT \
      --variant batching=packed,attention=varlen,micro_batch_tokens=4096 \
      --variant batching=packed,attention=varlen,micro_batch_tokens=8192,logits_chunk=1024
      -> OUT/sweep-<strategy>.json          (results/h200/2026-12-01-train-speed-sweep-{lora,qlora}.json)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, command, gpu_name, kit, parse_overrides, save, summarize, sync, write_variant

sys.path.insert(0, str(REPO))


def recipe_path(args) -> Path:
    return Path(args.recipe) if args.recipe else REPO / f"recipes/olmo7b-random-{args.strategy}.yaml"


def device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def encoded_rows(n: int):
    from kit.data.rows import encode_messages, read_rows
    from kit.data.tokenizer import load_default_tokenizer

    tok = load_default_tokenizer()
    return tok, [encode_messages(tok, r["messages"], r["id"]) for r in read_rows(REPO / "data/kwanzaa/train.jsonl")[:n]]


def peer(args) -> dict:
    """The competent peer (or, with --padded, the naive padded recipe), in this process."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments

    from kit.model.source import materialize_random
    from kit.recipe import load_recipe

    recipe = load_recipe(recipe_path(args)).recipe
    path = materialize_random(recipe.model)
    tok, encoded = encoded_rows(args.steps * args.rows_per_step)
    width = 2048 if args.padded else None
    dataset = [{"input_ids": list(e.input_ids) + [tok.pad_token_id] * ((width or 0) - len(e.input_ids)),
                "attention_mask": [1] * len(e.input_ids) + [0] * ((width or 0) - len(e.input_ids)),
                "labels": list(e.labels) + [-100] * ((width or 0) - len(e.input_ids))} for e in encoded]
    cuda = device().startswith("cuda")
    kw = {"dtype": getattr(torch, recipe.model.dtype), "use_safetensors": True, "attn_implementation": "sdpa",
          **({"device_map": {"": 0}} if cuda else {})}
    if args.strategy == "qlora":
        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True,
                                                       bnb_4bit_compute_dtype=getattr(
                                                           torch, recipe.adapter.quantization.compute_dtype))
    net = AutoModelForCausalLM.from_pretrained(path, **kw)
    net.config.use_cache = False
    if args.strategy == "qlora":
        net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=True)
    net = get_peft_model(net, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"]))

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], 0.0

        def on_step_begin(self, a, s, c, **kw):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, a, s, c, **kw):
            sync()
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    targs = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=1,
                              gradient_accumulation_steps=args.rows_per_step, max_steps=args.steps, learning_rate=2e-4,
                              lr_scheduler_type="cosine", warmup_steps=0.03, bf16=cuda, gradient_checkpointing=True,
                              gradient_checkpointing_kwargs={"use_reentrant": False},
                              optim="paged_adamw_8bit" if args.strategy == "qlora" else "adamw_torch_fused",
                              seed=42, full_determinism=True, report_to="none", save_strategy="no", logging_steps=1,
                              dataloader_num_workers=0, remove_unused_columns=False)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    Trainer(model=net, args=targs, train_dataset=dataset, callbacks=[timer]).train()
    # the Trainer shuffles with its own seed: the real tokens of each step are not known, so the
    # rate is over the whole run's real tokens, every step timed (each step holds rows_per_step rows)
    real = sum(len(e.input_ids) for e in encoded)
    per_step = [real // args.steps] * args.steps
    name = "padded naive recipe (Trainer, every row padded to 2048)" if args.padded else \
        "competent peer (Trainer + peft, batch 1, no padding)"
    res = summarize(name, timer.times, per_step, [width * args.rows_per_step] * args.steps if width else per_step,
                    *_peaks())
    res["effective_tokens_per_s"] = round(real / sum(timer.times), 1)  # all steps: tokens per step are not known
    res["rate_rule"] = "all steps (the Trainer's own row order)"
    return res


def kit_claim(args, spec: str, out: Path) -> dict:
    """`kit train` twice in fresh processes with the variant's training settings."""
    from kit import rundir

    overrides = {} if spec == "recipe" else parse_overrides(spec)

    def edit(src: dict) -> None:
        # rows per step = args.rows_per_step in every variant; the recipe's micro_batch_size (a pack's
        # row cap when packed) is kept
        cap = overrides.get("micro_batch_size", src["training"]["micro_batch_size"])
        src["training"].update(max_steps=args.steps, epochs=1, grad_accum_steps=max(1, args.rows_per_step // cap),
                               checkpoint_every_steps=0, **overrides)
        src["data"]["max_train_rows"] = args.steps * args.rows_per_step

    tag = f"{args.strategy}-" + ("recipe" if spec == "recipe" else "-".join(f"{k}{v}" for k, v in overrides.items()))
    out = args.runs or out
    recipe = write_variant(recipe_path(args), out / f"{tag}.yaml", edit)
    hashes = []
    for rep in (1, 2):
        run = out / f"{tag}-{rep}"
        kit("train", "--recipe", str(recipe), "--output", str(run), "--allow-data-change", "--strategy", args.strategy,
            log=out / f"{tag}-{rep}.log")
        hashes.append(rundir.read_manifest(run)["outputs"]["adapter"]["sha256"])
    timing = rundir.read_jsonl(out / f"{tag}-1" / rundir.TIMING)
    log = rundir.read_jsonl(out / f"{tag}-1" / rundir.TRAIN_LOG)
    res = summarize(f"kit ({spec})", [t["seconds"] for t in timing], [x["tokens"] for x in log],
                    [t["padded_tokens"] for t in timing], max(t.get("peak_reserved_gib", 0.0) for t in timing),
                    max(t.get("peak_allocated_gib", 0.0) for t in timing))
    res["effective_tokens_per_s"] = round(sum(x["tokens"] for x in log) / sum(t["seconds"] for t in timing), 1)
    res["rate_rule"] = "all steps (as the peer's)"
    res.update(training_overrides=overrides, adapter_sha256=hashes, bit_identical_rerun=hashes[0] == hashes[1])
    return res


def sweep(args, out: Path) -> dict:
    """Kit variants in this process, on one loaded model (LoRA weights carry over: speed only)."""
    import torch

    from kit import determinism, rundir
    from kit.model import attention, load
    from kit.model.source import materialize_random
    from kit.recipe import load_recipe, with_overrides
    from kit.train.loop import run_loop

    base = load_recipe(recipe_path(args))
    tok, rows = encoded_rows(args.steps * args.rows_per_step)
    results = []
    net = None
    for spec in args.variant:
        overrides = {} if spec == "recipe" else parse_overrides(spec)
        variant = with_overrides(base, training={"max_steps": args.steps, "epochs": 1, "grad_accum_steps": 1,
                                                 "micro_batch_size": args.rows_per_step, "checkpoint_every_steps": 0,
                                                 **overrides}).recipe
        determinism.apply(variant.seed, variant.determinism)
        if net is None:
            net = load.load_for_training(materialize_random(variant.model), variant, args.strategy, device(),
                                         variant.seed)
        impl = attention.register() if variant.training.attention == "varlen" else "sdpa"
        net.get_base_model().set_attn_implementation(impl)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp:
            records = run_loop(net, rows, variant, Path(tmp), device(), tok.pad_token_id)
            timing = rundir.read_jsonl(Path(tmp) / rundir.TIMING)
        res = summarize(f"kit sweep ({spec})", [t["seconds"] for t in timing], [x["tokens"] for x in records],
                        [t["padded_tokens"] for t in timing], *_peaks())
        res["training_overrides"] = overrides
        res["micro_batches_per_step"] = [t["micro_batches"] for t in timing]
        results.append(res)
        print(json.dumps({k: res[k] for k in ("name", "effective_tokens_per_s", "peak_reserved_gib", "step_seconds")}),
              flush=True)
        save(out / f"sweep-{args.strategy}.json", {"claim": "kit batching variants, one process (to choose)",
                                                  "strategy": args.strategy, "gpu": gpu_name(), "command": command(),
                                                  "results": results})
    return {"strategy": args.strategy, "gpu": gpu_name(), "results": results}


def _peaks() -> tuple[float, float]:
    import torch

    if not torch.cuda.is_available():
        return 0.0, 0.0
    return torch.cuda.max_memory_reserved() / 2**30, torch.cuda.max_memory_allocated() / 2**30


def run_peer(args, padded: bool) -> dict:
    done = subprocess.run([sys.executable, __file__, "peer", "--strategy", args.strategy, "--steps", str(args.steps),
                           "--rows-per-step", str(args.rows_per_step), *(["--padded"] if padded else []),
                           *(["--recipe", str(args.recipe)] if args.recipe else [])],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"peer failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def claim(args, out: Path) -> dict:
    result = {"claim": "training speed vs the competent peer", "strategy": args.strategy, "gpu": gpu_name(),
              "steps": args.steps, "rows_per_step": args.rows_per_step,
              "command": command()}
    path = out / f"train-speed-{args.strategy}.json"
    result["peer"] = run_peer(args, padded=False)
    save(path, result)
    if args.with_padded:
        result["padded_extra_row"] = run_peer(args, padded=True)
        save(path, result)
    result["kit"] = []
    for spec in args.variant:
        k = kit_claim(args, spec, out)
        k["speedup_vs_competent_baseline"] = round(k["effective_tokens_per_s"] / result["peer"]["effective_tokens_per_s"], 3)
        peer_peak = result["peer"]["peak_reserved_gib"]
        k["peak_reserved_gib_vs_baseline"] = round(k["peak_reserved_gib"] / peer_peak, 3) if peer_peak else None
        result["kit"].append(k)
        save(path, result)
    # the fastest variant that needs no more memory than the peer (else the fastest, and it says so)
    within = [k for k in result["kit"] if (k["peak_reserved_gib_vs_baseline"] or 0) <= 1.0] or result["kit"]
    best = max(within, key=lambda k: k["speedup_vs_competent_baseline"])
    result.update(speedup_vs_competent_baseline=best["speedup_vs_competent_baseline"],
                  bit_identical_rerun=best["bit_identical_rerun"],
                  peak_reserved_gib_vs_baseline=best["peak_reserved_gib_vs_baseline"], best_variant=best["name"])
    save(path, result)
    for r in [result["peer"], *([result["padded_extra_row"]] if args.with_padded else []), *result["kit"]]:
        print(f"{r['name'][:70]:70} {r['effective_tokens_per_s']:>9} tok/s {r['peak_reserved_gib']:>7} GiB "
              f"x{r.get('speedup_vs_competent_baseline', 1.0)} {r.get('bit_identical_rerun', '')}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["claim", "sweep", "peer"],
                   help="claim: the peer and the kit in fresh processes; sweep: variants in one process; peer: the peer only")
    p.add_argument("--strategy", choices=["lora", "qlora"], default="lora")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rows-per-step", type=int, default=8)
    p.add_argument("--variant", action="append", default=None,
                   help='"recipe", or training overrides "key=value,..." (repeat for several)')
    p.add_argument("--padded", action="store_true", help="peer: pad every row to 2048 (the naive recipe)")
    p.add_argument("--with-padded", action="store_true", help="claim: add the padded naive recipe as an extra row")
    p.add_argument("--out", type=Path, default=Path("/tmp/train-speed"))
    p.add_argument("--recipe", type=Path, default=None, help="default: recipes/olmo7b-random-<strategy>.yaml")
    p.add_argument("--runs", type=Path, default=None, help="claim: where the kit's runs go (default: --out)")
    args = p.parse_args()
    args.variant = args.variant or ["recipe"]
    args.recipe = args.recipe.resolve() if args.recipe else None
    if args.cmd == "peer":
        print(json.dumps(peer(args)))
    elif args.cmd == "sweep":
        sweep(args, args.out)
    else:
        claim(args, args.out)


if __name__ == "__main__":
    main()
