#!/usr/bin/env bash
# Session 4, call B (H200): the whole LoRA recipe as committed (recipes/kwanzaa-olmo7b-lora.yaml, only
# model: swapped for the same architecture's seeded random weights): kit train, then kit eval of the
# 45 eval rows, each a fresh process, timed (issue 9: train + eval under 10 minutes).
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$OUT/gpu.txt"
timeout 570 python3 benchmarks/whole_recipe.py --strategy lora --out /tmp/whole > "$OUT/whole-lora.log" 2>&1
echo "rc $?"; cp /tmp/whole/whole-*.json "$OUT/" 2>/dev/null; tail -5 "$OUT/whole-lora.log"
for f in timing.jsonl train_log.jsonl manifest.json; do cp /tmp/whole/run-*/$f "$OUT/whole-lora-$f" 2>/dev/null; done
echo "call B: $((SECONDS - start)) s"
