#!/usr/bin/env bash
# H100, session 3, call A: QLoRA with the unquantized weights (embeddings, lm_head) kept bf16 instead
# of peft's fp32 upcast (kit/model.py load_for_training): naive baseline vs the kit, packed (4 rows max
# per sequence) then one row per micro-batch, each run twice to show reruns stay bit-identical.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$OUT/gpu.txt"; lscpu | grep -i "model name" >> "$OUT/gpu.txt"
timeout 575 python3 benchmarks/train_bench.py all --strategy qlora --steps 4 --grad-accum 8 \
  --variants 4:packed:2,1:padded:2 --out /tmp/bench-qlora > "$OUT/bench-qlora.log" 2>&1
cp /tmp/bench-qlora/bench-qlora.json "$OUT/" 2>/dev/null; tail -4 "$OUT/bench-qlora.log"
echo "call A: $((SECONDS - start)) s"
