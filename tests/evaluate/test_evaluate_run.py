"""`kit eval RUN`: greedy, batched, the same numbers and bytes every time; base vs adapter side by side."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from conftest import kit_here, manifest

pytestmark = pytest.mark.slow


def _hashes(run):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted((run / "eval").glob("*.json*"))
            if f.name != "timing.json"}


def test_a_second_evaluation_elsewhere_gives_identical_bytes_and_adds_only_its_own_fingerprints(evaluated_run,
                                                                                                 run_copy, run_kit):
    """The evaluated run copied to another folder without its machine-local file (as from another
    machine) and evaluated again: the same metrics and responses, byte for byte; the manifest gains
    only the evaluation's fingerprints, the training's stay as they were and still check."""
    before = manifest(run_copy)
    (run_copy / ".local.json").unlink()  # where the recipe was on the machine that trained it
    (run_copy / "eval/metrics.json").unlink()
    proc = run_kit("eval", str(run_copy), "--json", check=True, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert "| peft" in proc.stderr and not re.search(r"\| +bitsandbytes\.", proc.stderr)  # LoRA: not needed
    assert _hashes(run_copy) == _hashes(evaluated_run)
    assert set(_hashes(run_copy)) == {"metrics.json", "responses.jsonl"}
    m = manifest(run_copy)
    assert m["outputs"]["eval_metrics"]["sha256"] == _hashes(run_copy)["metrics.json"]
    assert m["outputs"]["eval_responses"]["sha256"] == _hashes(run_copy)["responses.jsonl"]
    assert {k: m["outputs"][k] for k in ("adapter", "train_log")} == \
        {k: before["outputs"][k] for k in ("adapter", "train_log")}
    assert {k: m[k] for k in ("inputs", "plan", "flags")} == {k: before[k] for k in ("inputs", "plan", "flags")}
    assert kit_here("hash", str(run_copy)).exit_code == 0
    metrics = json.loads((run_copy / "eval/metrics.json").read_text())
    assert metrics["generation"] == {"decoding": "greedy", "batch_size": 4, "cache": "dynamic", "max_new_tokens": 64,
                                     "stop": "eos, or the token that closes the first top-level JSON object",
                                     "rows": 8, "batch_size_rule": "recipe", "merge": None}
    assert metrics["eval_loss"]["label_tokens"] > 0 and metrics["eval_loss"]["loss"] > 0


def test_base_model_and_adapter_are_compared_side_by_side(run_copy, kit_cache, monkeypatch):
    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(kit_cache))  # in this process: its numbers are only compared
    assert kit_here("eval", str(run_copy), "--base-only").exit_code == 0
    base = json.loads((run_copy / "eval-base/metrics.json").read_text())
    adapted = json.loads((run_copy / "eval/metrics.json").read_text())
    assert base["model"] == "base" and adapted["model"] == "base+adapter"
    assert base["eval_loss"]["loss"] != adapted["eval_loss"]["loss"]  # the adapter changed something
    out = json.loads(kit_here("compare", str(run_copy / "eval-base/metrics.json"), str(run_copy), "--json").stdout)
    assert out["labels"] == {"a": "base", "b": "adapter"} and "parse_rate" in out["metrics"]
