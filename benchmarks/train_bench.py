#!/usr/bin/env python3
"""Naive baseline vs the kit's training path, on one GPU, in one go (issue 9).

Both train the OLMo-7B architecture with the same seeded random weights (kit's random-init cache:
saved with save_pretrained, loaded with from_pretrained) on the same rows of the real Kwanzaa
training set, deterministic mode on, for the same number of optimizer steps and rows per step.

  baseline  transformers Trainer + peft + bitsandbytes with the design document's settings:
            every row padded to max_seq_len (2048), batch 1 x grad-accum, gradient checkpointing.
  kit       `python -m kit train` on recipes/olmo7b-random-<strategy>.yaml with the batching
            variant under test, run twice to show that reruns stay bit-identical.

Effective tokens/s counts real (unpadded) tokens only; the first step is left out as warm-up.
MFU uses the 6N convention (kit.qualify.estimate_mfu).

  python benchmarks/train_bench.py all --strategy qlora --out /tmp/bench   # -> bench-qlora.json
  (kit side: recipes/olmo7b-random-qlora.yaml's own batching, twice; --variants tries others)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rows_for(n: int) -> list[dict]:
    from kit.data.rows import read_rows

    return read_rows(REPO / "data/kwanzaa/train.jsonl")[:n]


def baseline(args) -> dict:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments

    from kit import model as kit_model
    from kit.data.rows import encode_messages
    from kit.data.tokenizer import load_default_tokenizer
    from kit.recipe import load_recipe

    recipe = load_recipe(recipe_path(args)).recipe
    path = kit_model.materialize_random(recipe.model)
    tok = load_default_tokenizer()
    n_rows = args.steps * args.grad_accum
    encoded = [encode_messages(tok, r["messages"], r["id"]) for r in rows_for(n_rows)]
    real_tokens = [len(e.input_ids) for e in encoded]
    L = args.max_seq_len
    dataset = [{"input_ids": list(e.input_ids) + [tok.pad_token_id] * (L - len(e.input_ids)),
                "attention_mask": [1] * len(e.input_ids) + [0] * (L - len(e.input_ids)),
                "labels": list(e.labels) + [-100] * (L - len(e.input_ids))} for e in encoded]
    cuda = torch.cuda.is_available()
    kw = {"dtype": getattr(torch, recipe.model.dtype), "use_safetensors": True}
    if cuda:
        kw["device_map"] = {"": 0}
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
            _sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, a, s, c, **kw):
            _sync()
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    targs = TrainingArguments(output_dir=str(Path(args.out) / "baseline-trainer"), per_device_train_batch_size=1,
                              gradient_accumulation_steps=args.grad_accum, max_steps=args.steps, learning_rate=2e-4,
                              lr_scheduler_type="cosine", warmup_steps=0.03, bf16=cuda, gradient_checkpointing=True,
                              gradient_checkpointing_kwargs={"use_reentrant": False},
                              optim="paged_adamw_8bit" if args.strategy == "qlora" else "adamw_torch_fused",  # Trainer default
                              seed=42, full_determinism=True, report_to="none", save_strategy="no", logging_steps=1,
                              dataloader_num_workers=0, remove_unused_columns=False)
    if cuda:  # peak of the training steps, measured as the kit measures its own (kit.train.run_loop)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    Trainer(model=net, args=targs, train_dataset=dataset, callbacks=[timer]).train()
    per_step = [sum(real_tokens[i * args.grad_accum:(i + 1) * args.grad_accum]) for i in range(args.steps)]
    res = summarize(f"baseline (Trainer, padded to {L})", timer.times, per_step, [L * args.grad_accum] * args.steps,
                    torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0, _device_name())
    res["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else 0.0
    return res


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def recipe_path(args) -> Path:
    return Path(args.recipe) if args.recipe else REPO / f"recipes/olmo7b-random-{args.strategy}.yaml"


def summarize(name, times, real_tokens, processed_tokens, peak_gib, gpu) -> dict:
    from kit.hardware import estimate_mfu, peak_flops_for

    t, rt = times[1:], real_tokens[1:]
    tps = sum(rt) / sum(t)
    peak = peak_flops_for(gpu)
    return {"name": name, "step_seconds": times, "real_tokens_per_step": real_tokens,
            "processed_tokens_per_step": processed_tokens, "effective_tokens_per_s": round(tps, 1),
            "padding_waste": round(1 - sum(real_tokens) / sum(processed_tokens), 4),
            "mfu_effective": round(estimate_mfu(tps, 6_888_095_744, peak), 4) if peak else None,
            "peak_reserved_gib": round(peak_gib, 3), "gpu": gpu}


def kit_variant(args, micro_batch: int, batching: str, tag: str, reps: int = 2, tokens: int | None = None) -> dict:
    from variants import write_variant

    from kit import rundir

    def edit(src: dict) -> None:
        # rows per optimizer step = micro_batch_size x grad_accum_steps = args.grad_accum in every variant;
        # with token_budget and packed, micro_batch_size is only a cap on the rows of a micro-batch
        src["training"].update(max_steps=args.steps, grad_accum_steps=args.grad_accum // micro_batch,
                               micro_batch_size=micro_batch, batching=batching, checkpoint_every_steps=0)
        src["training"].pop("micro_batch_tokens", None)
        if tokens:
            src["training"]["micro_batch_tokens"] = tokens
        src["data"]["max_train_rows"] = args.steps * args.grad_accum

    out = Path(args.out)
    recipe = write_variant(recipe_path(args), out / f"kit-{tag}.yaml", edit)
    hashes = []
    for rep in range(1, reps + 1):
        run = out / f"kit-{tag}-{rep}"
        subprocess.run([sys.executable, "-m", "kit", "train", "--recipe", str(recipe), "--output", str(run),
                        "--allow-data-change", "--json", "--strategy", args.strategy], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
        hashes.append(json.loads((run / "manifest.json").read_text())["outputs"]["adapter"]["sha256"])
    timing = rundir.read_jsonl(out / f"kit-{tag}-1" / rundir.TIMING)
    log = rundir.read_jsonl(out / f"kit-{tag}-1" / rundir.TRAIN_LOG)
    budget = f", <= {tokens} tokens" if tokens else ""
    res = summarize(f"kit (micro-batch {micro_batch}, {batching}{budget})", [t["seconds"] for t in timing],
                    [x["tokens"] for x in log], [t["padded_tokens"] for t in timing],
                    max(t.get("peak_reserved_gib", 0.0) for t in timing), _device_name())
    res["peak_allocated_gib"] = max(t.get("peak_allocated_gib", 0.0) for t in timing)
    res["adapter_sha256"] = hashes
    res["bit_identical_rerun"] = hashes[0] == hashes[1] if len(hashes) > 1 else None
    return res


def parse_variant(spec: str, recipe: Path) -> tuple[str, str, str]:
    """(micro_batch, batching[@tokens], reruns) from "MB:BATCHING[@TOKENS][:RERUNS]" or "recipe[:RERUNS]"."""
    parts = spec.split(":")
    if parts[0] == "recipe":
        from kit.recipe import load_recipe

        t = load_recipe(recipe).recipe.training
        budget = f"@{t.micro_batch_tokens}" if t.micro_batch_tokens else ""
        return str(t.micro_batch_size), t.batching + budget, (parts + ["2"])[1]
    mb, batching, reps = (parts + ["2"])[:3]
    return mb, batching, reps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["all", "baseline"])
    p.add_argument("--strategy", choices=["qlora", "lora"], default="qlora")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--max-seq-len", type=int, default=2048)
    p.add_argument("--variants", default="recipe:2",
                   help="micro_batch:batching[@micro_batch_tokens]:reruns, comma-separated (e.g. 8:packed@8192:2); "
                        "recipe[:reruns] is the recipe's own batching (the default: what the committed recipe does)")
    p.add_argument("--out", default="/tmp/bench")
    p.add_argument("--recipe", default=None, help="default: recipes/olmo7b-random-<strategy>.yaml")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.cmd == "baseline":
        print(json.dumps(baseline(args)))
        return
    base = subprocess.run([sys.executable, __file__, "baseline", "--strategy", args.strategy, "--steps", str(args.steps),
                           "--grad-accum", str(args.grad_accum), "--out", args.out, "--max-seq-len", str(args.max_seq_len),
                           *(["--recipe", args.recipe] if args.recipe else [])],
                          check=True, capture_output=True, text=True, cwd=REPO)
    result = {"strategy": args.strategy, "steps": args.steps, "rows_per_step": args.grad_accum, "argv": sys.argv,
              "baseline": json.loads(base.stdout.strip().splitlines()[-1]), "kit": []}
    out = Path(args.out) / f"bench-{args.strategy}.json"
    out.write_text(json.dumps(result, indent=1))  # saved after every part: a time limit loses only the last
    for v in args.variants.split(","):
        mb, batching, reps = parse_variant(v, recipe_path(args))
        batching, _, tokens = batching.partition("@")
        tag = f"{args.strategy}-mb{mb}-{batching}{tokens}"
        k = kit_variant(args, int(mb), batching, tag, int(reps), int(tokens) if tokens else None)
        k["speedup_vs_baseline"] = round(k["effective_tokens_per_s"] / result["baseline"]["effective_tokens_per_s"], 3)
        result["kit"].append(k)
        out.write_text(json.dumps(result, indent=1))
    print(f"{'path':60} {'eff tok/s':>10} {'reserved':>9} {'alloc':>7} {'MFU':>6} {'x base':>7} identical")
    for r in [result["baseline"], *result["kit"]]:
        print(f"{r['name']:60} {r['effective_tokens_per_s']:>10} {r['peak_reserved_gib']:>9} "
              f"{r['peak_allocated_gib']:>7} {r['mfu_effective']!s:>6} "
              f"{r.get('speedup_vs_baseline', 1.0):>7} {r.get('bit_identical_rerun', '')}")


if __name__ == "__main__":
    main()
