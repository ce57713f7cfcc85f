"""A complete, evaluated run directory made without training (seconds, not minutes): real file
layout, a real safetensors adapter, fingerprints computed by kit.fingerprint. For the tests of
what commands refuse before they load any model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kit import fingerprint, io, rundir
from kit.evaluate.score import METRICS_SCHEMA
from kit.recipe import load_recipe

from conftest import REPO, TINY

ROWS = (REPO / "data/kwanzaa/eval.jsonl").read_text().splitlines()[:2]
HARDWARE = {"device_type": "cpu", "cpu_arch": "x86_64", "cpu_isa": "avx2", "nodes": 1, "world_size": 1,
            "deterministic": True, "cpu_threads": 2}
SOFTWARE = {"python": "3.11", "torch": "2.0", "kwanzaa-kit": "0.1.0"}


def make_run(folder: Path, status: str = "complete", evaluated: bool = True) -> Path:
    """FOLDER as `kit train` (and `kit eval`) would leave it; status other than complete: a run
    stopped after its first step, with a checkpoint folder but no adapter."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    resolved = load_recipe(TINY).resolved_dict()
    io.atomic_write_json(folder / rundir.RECIPE, resolved)
    io.atomic_write_json(folder / rundir.LOCAL, {"recipe_path": str(TINY)})
    for name in ("train.jsonl", "eval.jsonl"):
        io.atomic_write_text(folder / rundir.DATA / name, "\n".join(ROWS) + "\n")
    data_sha = io.sha256_file(folder / rundir.DATA / "eval.jsonl")
    steps = 2 if status == "complete" else 1
    io.atomic_write_text(folder / rundir.TRAIN_LOG, "".join(
        json.dumps({"step": s, "epoch": 0, "loss": 3.0 - s / 10, "grad_norm": 1.0, "lr": 0.002, "rows": 2,
                    "label_tokens": 10, "tokens": 40, "batch_sha256": "c" * 64}) + "\n" for s in range(1, steps + 1)))
    env = {"hardware": dict(HARDWARE), "software": dict(SOFTWARE), "driver": None, "image": None,
           "hardware_sha256": io.sha256_json(HARDWARE), "software_sha256": io.sha256_json(SOFTWARE)}
    env["sha256"] = io.sha256_json({"software": SOFTWARE, "hardware": HARDWARE})
    manifest = {
        "schema": fingerprint.MANIFEST_SCHEMA, "kit_version": "0.1.0", "status": status, "recipe_name": "tiny",
        "plan": {"strategy": "lora", "reason": "the recipe sets adapter.method: lora", "source": "recipe"},
        "flags": {"strategy": None, "allow_data_change": False},
        "determinism": {"seed": 42, "cpu_threads": 2, "deterministic_algorithms": True},
        "inputs": {"recipe": {"sha256": io.sha256_json(resolved), "file": rundir.RECIPE, "origin": "recipes/tiny.yaml"},
                   "dataset": {"train": {"file": "train.jsonl", "sha256": data_sha, "rows": 2},
                               "eval": {"file": "eval.jsonl", "sha256": data_sha}, "allow_data_change": False,
                               "sha256": io.sha256_bytes(f"{data_sha}\n{data_sha}".encode())},
                   "tokenizer": {"sha256": "3" * 64}, "base_model": {"sha256": "4" * 64, "name": "random-init"},
                   "environment": env},
    }
    if status != "complete":
        (folder / rundir.CHECKPOINTS / "step-000001").mkdir(parents=True)
        io.atomic_write_json(folder / rundir.MANIFEST, manifest)
        return folder
    adapter = folder / rundir.ADAPTER
    adapter.mkdir()
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.ones(2, 4),
               "base_model.model.layers.0.q_proj.lora_B.weight": torch.zeros(4, 2)}, str(adapter / rundir.ADAPTER_WEIGHTS))
    io.atomic_write_json(adapter / rundir.ADAPTER_CONFIG, {"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]})
    io.atomic_write_text(adapter / "README.md", "# adapter\n")
    if evaluated:
        ids = [json.loads(r)["id"] for r in ROWS]
        io.atomic_write_text(folder / rundir.EVAL / "responses.jsonl",
                             "".join(json.dumps({"id": i, "response": "{}"}) + "\n" for i in ids))
        io.atomic_write_json(folder / rundir.EVAL / "metrics.json", {
            "schema": METRICS_SCHEMA, "n_rows": 2, "eval_loss": {"loss": 2.5, "label_tokens": 20},
            "metrics": {"parse_rate": {"value": 1.0, "numerator": 2, "denominator": 2, "meets_target": True}}})
    manifest["outputs"] = fingerprint.output_fingerprints(folder)
    manifest["summary"] = {"steps": steps, "final_loss": 2.8, "speed": {}}
    io.atomic_write_json(folder / rundir.MANIFEST, manifest)
    return folder


def edit_json(path: Path, change) -> Path:
    """Load a JSON file, let `change(obj)` edit it (or return a replacement), write it back."""
    obj = json.loads(path.read_text())
    new = change(obj)
    path.write_text(json.dumps(obj if new is None else new))
    return path


def copy_run(run: Path, to: Path) -> Path:
    return Path(shutil.copytree(run, to))
