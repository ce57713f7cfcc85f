"""Summarise the runs under a folder: adapter hash, losses, hardware and timing of each."""
import json
import sys
from pathlib import Path

out = {}
for m in sorted(Path(sys.argv[1]).glob("*/manifest.json")):
    d = json.loads(m.read_text())
    log = m.parent / "train_log.jsonl"
    out[m.parent.name] = {
        "status": d["status"], "error": d.get("error"),
        "adapter_sha256": d.get("outputs", {}).get("adapter", {}).get("sha256"),
        "train_log_sha256": d.get("outputs", {}).get("train_log", {}).get("sha256"),
        "losses": [json.loads(x)["loss"] for x in log.read_text().splitlines()] if log.exists() else [],
        "hardware": d.get("inputs", {}).get("environment", {}).get("hardware"),
        "software": d.get("inputs", {}).get("environment", {}).get("software"),
        "base_model_sha256": d.get("inputs", {}).get("base_model", {}).get("sha256"),
        "seconds": d.get("summary", {}).get("seconds")}
print(json.dumps(out, indent=1))
for k, v in out.items():
    print(k, v["status"], v["adapter_sha256"], v["seconds"], file=sys.stderr)
