#!/usr/bin/env bash
# H100 call 4 (short): the QLoRA naive-vs-kit benchmark, then a profile of one deterministic LoRA step.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"
timeout 200 python3 benchmarks/train_bench.py all --strategy qlora --steps 4 --grad-accum 8 \
  --variants 1:padded:2 --out /tmp/bench-qlora > "$OUT/bench-qlora.log" 2>&1
cp /tmp/bench-qlora/bench-qlora.json "$OUT/" 2>/dev/null; tail -4 "$OUT/bench-qlora.log"
timeout 80 python3 benchmarks/profile_step.py --strategy lora --seq 2048 --out "$OUT" 2>&1 | grep -vE "^\s*$|Loading|Writing" | head -30
