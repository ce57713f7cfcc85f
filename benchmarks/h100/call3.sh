#!/usr/bin/env bash
# H100 call 3: the naive-vs-kit training benchmark (QLoRA, LoRA) and the tiny recipe's H100
# reference (5 seeds, trained and evaluated in fresh processes). Each part has its own time limit.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"
for s in qlora lora; do
  timeout 190 python3 benchmarks/train_bench.py all --strategy $s --steps 4 --grad-accum 8 \
    --variants 1:padded:1,8:token_budget:2 --out /tmp/bench-$s > "$OUT/bench-$s.log" 2>&1
  cp /tmp/bench-$s/bench-$s.json "$OUT/" 2>/dev/null; tail -4 "$OUT/bench-$s.log"
done
timeout 170 python3 scripts/make_references.py --recipe recipes/tiny.yaml --seeds 42,1,2,3,4 \
  --out "$OUT/ref-tiny/" > "$OUT/ref-tiny.log" 2>&1; tail -3 "$OUT/ref-tiny.log"; ls "$OUT/ref-tiny"
