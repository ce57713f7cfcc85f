#!/usr/bin/env bash
# H100 call 2: GPU determinism (tiny and 7B random-weight, LoRA and QLoRA, twice each in fresh
# processes), a profile of one deterministic step, and the naive-vs-kit training benchmark.
source benchmarks/h100/setup.sh
mkdir -p /tmp/r "$OUT"
for s in lora qlora; do for i in 1 2; do
  kit train --recipe recipes/tiny.yaml --strategy $s -o /tmp/r/tiny-$s-$i --json --allow-data-change > /dev/null || echo "FAILED tiny $s $i"
done; done
for s in lora qlora; do for i in 1 2; do
  kit train --recipe recipes/olmo7b-random-$s.yaml -o /tmp/r/7b-$s-$i --json --allow-data-change > /dev/null || echo "FAILED 7b $s $i"
done; done
python3 benchmarks/h100/collect_determinism.py /tmp/r > "$OUT/determinism.json"
python3 benchmarks/profile_step.py --strategy lora --seq 1024 --out "$OUT" 2>&1 | grep -v "^\s*$" | head -40
python3 benchmarks/train_bench.py all --strategy qlora --steps 5 --grad-accum 8 --out /tmp/bench && cp /tmp/bench/bench-qlora.json "$OUT/"
python3 benchmarks/train_bench.py all --strategy lora --steps 5 --grad-accum 8 --out /tmp/bench && cp /tmp/bench/bench-lora.json "$OUT/"
