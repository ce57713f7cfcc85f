#!/usr/bin/env bash
# H100, session 2, call B: the benchmark again after QLoRA autocast, expandable segments and no
# per-micro-batch sync; then kit qualify for QLoRA (its activations changed) with what is left.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
for s in lora qlora; do
  timeout $((430 - (SECONDS - start))) python3 benchmarks/train_bench.py all --strategy $s --steps 4 --grad-accum 8 \
    --variants 1:padded:2 --out /tmp/bench-$s > "$OUT/bench-$s.log" 2>&1
  cp /tmp/bench-$s/bench-$s.json "$OUT/" 2>/dev/null; tail -3 "$OUT/bench-$s.log"
done
timeout $((585 - (SECONDS - start))) python3 -m kit qualify --recipe recipes/kwanzaa-olmo7b-qlora.yaml \
  --strategy qlora --seq-lens 1024,2048,4096 --steps 6 \
  -o "$OUT/qualify-kwanzaa-olmo7b-qlora.json" > "$OUT/qualify-qlora.log" 2>&1
tail -12 "$OUT/qualify-qlora.log"
echo "call B: $((SECONDS - start)) s"
