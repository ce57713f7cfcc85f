#!/usr/bin/env bash
# H100: kit doctor, then kit qualify for both 7B recipes at seq 1024, 2048, 4096 (random weights).
source benchmarks/h100/setup.sh
kit doctor --json > "$OUT/doctor.json"; kit doctor
for m in qlora lora; do
  kit qualify --recipe recipes/kwanzaa-olmo7b-$m.yaml --strategy $m --seq-lens 1024,2048,4096 --steps 6 \
    -o "$OUT/qualify-kwanzaa-olmo7b-$m.json"
done
