"""The spine: `kit train` on the tiny recipe is deterministic, fingerprinted and self-contained."""

from __future__ import annotations

import json
import re

import pytest

from conftest import TINY, manifest, write_recipe

pytestmark = pytest.mark.slow

# PYTHONPROFILEIMPORTTIME lists every module a process imports (on stderr, kept across kit's re-exec)
IMPORTS = {"PYTHONPROFILEIMPORTTIME": "1"}
BITSANDBYTES_LOADED = re.compile(r"\| +bitsandbytes\.")  # one of its modules: really imported


def test_same_recipe_same_adapter_bytes_qlora(run_kit, tmp_path):
    runs = [tmp_path / "q1", tmp_path / "q2"]
    # two steps (the second after the first update) of two rows
    recipe = write_recipe(tmp_path / "tiny-2-steps.yaml", training__max_steps=2, training__micro_batch_size=1)
    procs = [run_kit("train", "--recipe", str(recipe), "--strategy", "qlora", "--output", str(out), check=True,
                     env=IMPORTS) for out in runs]
    assert BITSANDBYTES_LOADED.search(procs[0].stderr)  # 4-bit weights need it
    a, b = manifest(runs[0]), manifest(runs[1])
    assert a["plan"] == {"strategy": "qlora", "reason": "--strategy qlora given on the command line", "source": "user"}
    assert a["outputs"]["adapter"]["sha256"] == b["outputs"]["adapter"]["sha256"]
    assert (runs[0] / "adapter/adapter_model.safetensors").read_bytes() == \
        (runs[1] / "adapter/adapter_model.safetensors").read_bytes()
    assert json.loads((runs[0] / "recipe.json").read_text())["adapter"]["method"] == "qlora"


def test_different_seed_gives_different_adapter(tiny_run, run_kit, tmp_path):
    recipe = write_recipe(tmp_path / "seed7.yaml", seed=7, training__max_steps=1,  # the LoRA init differs already
                          training__micro_batch_size=1)
    out = tmp_path / "seed7"
    proc = run_kit("train", "--recipe", str(recipe), "--output", str(out), check=True, env=IMPORTS)
    # a LoRA run leaves bitsandbytes (and the compiler its import loads) unimported: a faster start
    assert "| peft" in proc.stderr and not BITSANDBYTES_LOADED.search(proc.stderr)
    assert manifest(out)["outputs"]["adapter"]["sha256"] != manifest(tiny_run)["outputs"]["adapter"]["sha256"]
    assert manifest(out)["inputs"]["recipe"]["sha256"] != manifest(tiny_run)["inputs"]["recipe"]["sha256"]


def test_manifest_fingerprints_every_input_and_output(tiny_run):
    m = manifest(tiny_run)
    assert m["status"] == "complete"
    for key in ("recipe", "dataset", "tokenizer", "base_model", "environment"):
        assert len(m["inputs"][key]["sha256"]) == 64, key
    env = m["inputs"]["environment"]
    assert env["hardware"]["cpu_threads"] == 2 and env["hardware"]["deterministic"] is True
    assert env["software"]["torch"] and env["software"]["transformers"] and env["software"]["peft"]
    assert m["determinism"]["pythonhashseed"] == "0"
    assert m["determinism"]["cublas_workspace_config"] == ":4096:8"
    assert set(m["outputs"]["adapter"]["files"]) == {"adapter_model.safetensors", "adapter_config.json", "README.md"}
    assert len(m["outputs"]["train_log"]["sha256"]) == 64
    # the seven projections of every layer, A and B each
    assert m["outputs"]["adapter"]["tensors"] == 2 * 7 * 2


def test_resolved_recipe_is_saved_and_hashed(tiny_run):
    from kit.io import sha256_json
    from kit.recipe import load_recipe

    saved = json.loads((tiny_run / "recipe.json").read_text())
    assert sha256_json(saved) == manifest(tiny_run)["inputs"]["recipe"]["sha256"]
    assert saved == load_recipe(TINY).resolved_dict()


def test_step_log_records_loss_grad_norm_lr_and_batch_hash(tiny_run):
    lines = [json.loads(x) for x in (tiny_run / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, len(lines) + 1))
    for x in lines:
        assert float.fromhex(x["loss_hex"]) == x["loss"]
        assert x["grad_norm"] > 0 and len(x["batch_sha256"]) == 64 and x["label_tokens"] > 0
    assert len({x["batch_sha256"] for x in lines}) == len(lines)


def test_adapter_files_name_no_local_path(tiny_run, kit_cache):
    config = json.loads((tiny_run / "adapter/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "random-init:olmo:seed0"
    assert config["target_modules"] == sorted(config["target_modules"])
    for f in (tiny_run / "adapter").iterdir():
        text = f.read_bytes().decode("latin-1")
        assert str(kit_cache) not in text and "/root" not in text and "/home" not in text, f.name


def test_kit_hash_recomputes_the_manifest(tiny_run, run_kit):
    proc = run_kit("hash", str(tiny_run), "--json", check=True)
    assert json.loads(proc.stdout)["ok"] is True


def test_kit_hash_names_a_changed_adapter_byte(tiny_run_copy, run_kit):
    weights = tiny_run_copy / "adapter/adapter_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0x01
    weights.write_bytes(bytes(blob))
    proc = run_kit("hash", str(tiny_run_copy), "--json")
    assert proc.returncode == 1
    failed = [c["key"] for c in json.loads(proc.stdout)["checks"] if not c["ok"]]
    assert "outputs.adapter.sha256" in failed
    assert "outputs.adapter.files.adapter_model.safetensors" in failed


def test_output_folder_that_holds_a_run_is_refused(tiny_run, run_kit):
    proc = run_kit("train", "--recipe", str(TINY), "--output", str(tiny_run))
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and "Traceback" not in proc.stderr
