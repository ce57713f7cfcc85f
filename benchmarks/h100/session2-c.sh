#!/usr/bin/env bash
# H100, session 2, call C: the benchmark with packed batching (the 7B recipes' new default), LoRA
# then QLoRA, kit path twice each; then the tiny recipe's GPU reference regenerated.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$OUT/gpu.txt"; lscpu | grep -i "model name" >> "$OUT/gpu.txt"
for s in lora qlora; do
  timeout $((440 - (SECONDS - start))) python3 benchmarks/train_bench.py all --strategy $s --steps 4 --grad-accum 8 \
    --variants 4:packed:2 --out /tmp/bench-$s > "$OUT/bench-$s.log" 2>&1
  cp /tmp/bench-$s/bench-$s.json "$OUT/" 2>/dev/null; tail -3 "$OUT/bench-$s.log"
done
timeout $((590 - (SECONDS - start))) python3 scripts/make_references.py --recipe recipes/tiny.yaml --seeds 42,1,2,3,4 \
  --out references/tiny/ > "$OUT/ref-tiny.log" 2>&1; tail -3 "$OUT/ref-tiny.log"
cp references/tiny/cuda-* "$OUT/" 2>/dev/null
echo "call C: $((SECONDS - start)) s"
