#!/usr/bin/env bash
# H100, session 2, call A: naive baseline vs the kit (fill_uninitialized_memory off, fused AdamW
# for LoRA), LoRA then QLoRA; the kit's path run twice each to show reruns stay bit-identical.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$OUT/gpu.txt"
timeout 250 python3 benchmarks/train_bench.py all --strategy lora --steps 4 --grad-accum 8 \
  --variants 1:padded:2 --out /tmp/bench-lora > "$OUT/bench-lora.log" 2>&1
cp /tmp/bench-lora/bench-lora.json "$OUT/" 2>/dev/null; tail -4 "$OUT/bench-lora.log"
left=$((575 - (SECONDS - start)))
timeout $left python3 benchmarks/train_bench.py all --strategy qlora --steps 4 --grad-accum 8 \
  --variants 1:padded:2 --out /tmp/bench-qlora > "$OUT/bench-qlora.log" 2>&1
cp /tmp/bench-qlora/bench-qlora.json "$OUT/" 2>/dev/null; tail -4 "$OUT/bench-qlora.log"
echo "call A: $((SECONDS - start)) s"
