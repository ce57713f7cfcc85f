#!/usr/bin/env bash
# H100 call 1: doctor, qualify (both 7B recipes at seq 1024/2048/4096), GPU determinism (tiny and
# 7B random-weight, LoRA and QLoRA, each twice in fresh processes), naive-vs-kit training benchmark.
source benchmarks/h100/setup.sh
mkdir -p /tmp/r "$OUT"
kit doctor --json > "$OUT/doctor.json"; kit doctor
kit qualify --recipe recipes/kwanzaa-olmo7b-qlora.yaml --strategy qlora --seq-lens 1024,2048,4096 --steps 6 \
  -o "$OUT/qualify-kwanzaa-olmo7b-qlora.json"
kit qualify --recipe recipes/kwanzaa-olmo7b-lora.yaml --strategy lora --seq-lens 1024,2048,4096 --steps 6 \
  -o "$OUT/qualify-kwanzaa-olmo7b-lora.json"
for s in lora qlora; do for i in 1 2; do
  kit train --recipe recipes/tiny.yaml --strategy $s -o /tmp/r/tiny-$s-$i --json --allow-data-change > /tmp/r/tiny-$s-$i.out
done; done
for s in lora qlora; do for i in 1 2; do
  kit train --recipe recipes/olmo7b-random-$s.yaml -o /tmp/r/7b-$s-$i --json --allow-data-change > /tmp/r/7b-$s-$i.out
done; done
python3 - <<'PY' > "$OUT/determinism.json"
import json, glob
out = {}
for m in sorted(glob.glob("/tmp/r/*/manifest.json")):
    d = json.load(open(m)); name = m.split("/")[3]
    out[name] = {"status": d["status"], "adapter_sha256": d.get("outputs", {}).get("adapter", {}).get("sha256"),
                 "train_log_sha256": d.get("outputs", {}).get("train_log", {}).get("sha256"),
                 "losses": [json.loads(x)["loss"] for x in open(m.replace("manifest.json", "train_log.jsonl"))],
                 "hardware": d["inputs"]["environment"]["hardware"], "software": d["inputs"]["environment"]["software"],
                 "base_model_sha256": d["inputs"]["base_model"]["sha256"], "seconds": d.get("summary", {}).get("seconds")}
print(json.dumps(out, indent=1))
PY
python3 -c "
import json; d = json.load(open('$OUT/determinism.json'))
for k in sorted(d): print(k, d[k]['status'], d[k]['adapter_sha256'], d[k]['seconds'])"
python3 benchmarks/train_bench.py all --strategy qlora --out /tmp/bench && cp /tmp/bench/bench-qlora.json "$OUT/"
python3 benchmarks/train_bench.py all --strategy lora --out /tmp/bench && cp /tmp/bench/bench-lora.json "$OUT/"
