#!/usr/bin/env bash
# H100, session 2, call D: QLoRA benchmark again without autocast (packed), kit path twice; then
# the whole LoRA recipe with what is left (its training part is saved as soon as it ends).
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
timeout 220 python3 benchmarks/train_bench.py all --strategy qlora --steps 4 --grad-accum 8 \
  --variants 4:packed:2 --out /tmp/bench-qlora > "$OUT/bench-qlora.log" 2>&1
cp /tmp/bench-qlora/bench-qlora.json "$OUT/" 2>/dev/null; tail -3 "$OUT/bench-qlora.log"
timeout $((370 - (SECONDS - start))) python3 benchmarks/whole_recipe.py --strategy lora --out /tmp/whole > "$OUT/whole-lora.log" 2>&1
cp /tmp/whole/whole-*.json "$OUT/" 2>/dev/null; tail -3 "$OUT/whole-lora.log"; ls /tmp/whole/run-*/ 2>/dev/null
cp /tmp/whole/run-*/timing.jsonl "$OUT/whole-lora-timing.jsonl" 2>/dev/null
echo "call D: $((SECONDS - start)) s"
