#!/usr/bin/env bash
# Session 4, call A (the lent GPU is an H200 this session: no H100 kind was lent): QLoRA with the
# unquantized weights kept bf16 (no prepare_model_for_kbit_training) and larger packed micro-batches
# (training.micro_batch_tokens 4096 / 8192: 3 / 2 micro-batches per 8-row step instead of ~6-8);
# naive baseline vs the kit, each variant twice in fresh processes; then kit qualify for the QLoRA
# recipe (the planner's QLoRA activation fit was made with the old fp32 embeddings).
source benchmarks/h100/setup.sh
mkdir -p "$OUT"; start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$OUT/gpu.txt"; lscpu | grep -i "model name" >> "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft, bitsandbytes; print(torch.__version__, transformers.__version__, peft.__version__, bitsandbytes.__version__)" >> "$OUT/gpu.txt"
cat "$OUT/gpu.txt"
timeout 430 python3 benchmarks/train_bench.py all --strategy qlora --steps 4 --grad-accum 8 \
  --variants 8:packed@4096:2,8:packed@8192:2 --out /tmp/bench-qlora > "$OUT/bench-qlora.log" 2>&1
cp /tmp/bench-qlora/bench-qlora.json "$OUT/" 2>/dev/null; tail -4 "$OUT/bench-qlora.log"
echo "bench: $((SECONDS - start)) s"
timeout $((575 - (SECONDS - start))) python3 -m kit qualify --recipe recipes/kwanzaa-olmo7b-qlora.yaml --strategy qlora \
  --seq-lens 1024,2048,4096 --steps 6 -o "$OUT/qualify-kwanzaa-olmo7b-qlora.json" > "$OUT/qualify-qlora.log" 2>&1
tail -8 "$OUT/qualify-qlora.log"
echo "call A: $((SECONDS - start)) s"
