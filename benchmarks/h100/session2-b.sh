#!/usr/bin/env bash
# H100, session 2, call B: the whole LoRA recipe (train + eval, random weights standing in), the
# eval cache comparison on that run, and the tiny recipe's H100 reference regenerated.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
timeout 330 python3 benchmarks/whole_recipe.py --strategy lora --out /tmp/whole > "$OUT/whole-lora.log" 2>&1
cp /tmp/whole/whole-*.json "$OUT/" 2>/dev/null; tail -3 "$OUT/whole-lora.log"
timeout 100 python3 benchmarks/eval_speed.py /tmp/whole/run-lora-recipe --rows 8 --max-new-tokens 256 \
  --out /tmp/es > "$OUT/eval-speed.log" 2>&1; cp /tmp/es/*.json "$OUT/" 2>/dev/null; tail -5 "$OUT/eval-speed.log"
left=$((580 - (SECONDS - start)))
timeout $left python3 scripts/make_references.py --recipe recipes/tiny.yaml --seeds 42,1,2,3,4 \
  --out references/tiny/ > "$OUT/ref-tiny.log" 2>&1; tail -3 "$OUT/ref-tiny.log"
cp references/tiny/cuda-* "$OUT/" 2>/dev/null; ls "$OUT"
echo "call B: $((SECONDS - start)) s"
