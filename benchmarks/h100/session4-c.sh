#!/usr/bin/env bash
# Session 4, call C (H200): the whole LoRA recipe again, now with evaluation.merge_adapter: true (call B's
# eval, the adapter unmerged, did not finish 45 rows in the ~390 s left of the call). kit train, then
# kit eval, each a fresh process, timed; then, if time is left, kit eval once more on a copy of the
# run to show that the GPU gives the same responses twice.
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$OUT/gpu.txt"
timeout 540 python3 benchmarks/whole_recipe.py --strategy lora --out /tmp/whole > "$OUT/whole-lora.log" 2>&1
echo "whole rc $? at $((SECONDS - start)) s"; cp /tmp/whole/whole-*.json /tmp/whole/kit-*.log "$OUT/" 2>/dev/null; tail -3 "$OUT/whole-lora.log"
run=$(ls -d /tmp/whole/run-* | head -1)
for f in timing.jsonl train_log.jsonl manifest.json eval/metrics.json eval/timing.json eval/responses.jsonl; do cp "$run/$f" "$OUT/whole-lora-${f//\//-}" 2>/dev/null; done
left=$((575 - (SECONDS - start)))
if [ -f "$run/eval/timing.json" ] && [ "$left" -gt 60 ]; then
  cp -r "$run" /tmp/whole/rerun && rm -rf /tmp/whole/rerun/eval
  timeout $left python3 -m kit eval /tmp/whole/rerun --json > "$OUT/eval-rerun.json" 2> "$OUT/eval-rerun.log"
  echo "eval rerun rc $?"; tail -2 "$OUT/eval-rerun.log"
  cmp "$run/eval/responses.jsonl" /tmp/whole/rerun/eval/responses.jsonl && echo "eval rerun: identical responses" | tee "$OUT/eval-rerun-identical.txt"
fi
echo "call C: $((SECONDS - start)) s"
