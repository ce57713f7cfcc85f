"""Every bad input a user can give is refused with exit code 2, one specific line, no traceback,
and leaves no run directory behind."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kit.cli import cli

from conftest import REPO, TINY

ROWS = [json.loads(x) for x in (REPO / "data/kwanzaa/train.jsonl").read_text().splitlines()[:3]]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def env(tmp_path, monkeypatch, kit_cache):
    """A working recipe on three real rows, a local copy of the tiny model, and helpers to break them."""
    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(kit_cache))
    mp = monkeypatch
    train, evals = _jsonl(tmp_path / "train.jsonl", ROWS), _jsonl(tmp_path / "eval.jsonl", ROWS[:1])
    recipe = yaml.safe_load(TINY.read_text())
    recipe["data"].update(train=str(train), eval=str(evals), train_sha256=_sha(train), eval_sha256=_sha(evals),
                          max_train_rows=None, max_eval_rows=None)

    class Env:
        root = tmp_path
        out = tmp_path / "run"
        monkeypatch = mp

        def write(self, change=None, name="recipe.yaml") -> Path:
            r = json.loads(json.dumps(recipe))
            if change:
                change(r)
            path = tmp_path / name
            path.write_text(yaml.safe_dump(r, sort_keys=False))
            return path

        def local_model(self) -> Path:
            from kit.model.source import materialize_random
            from kit.recipe import load_recipe

            src = materialize_random(load_recipe(TINY).recipe.model)
            dst = tmp_path / "model"
            if not dst.exists():
                shutil.copytree(src, dst)
            return dst

        def with_local_model(self, mutate=None, **model_fields) -> Path:
            folder = self.local_model()
            if mutate:
                mutate(folder)
            return self.write(lambda r: r.update(model={"source": "local", "path": str(folder), "dtype": "float32",
                                                        **model_fields}))

    return Env()


def _edit_text(env, old: str, new: str) -> Path:
    path = env.write()
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def _train(path):
    return ["train", "--recipe", str(path), "--output", "{out}"]


CASES = {
    # name: (build(env) -> argv, words in the message)
    "malformed_yaml": (lambda e: _train(_edit_text(e, "  r: 16", "  r: [16")), ["malformed YAML", "Fix:"]),
    "unknown_key": (lambda e: _train(e.write(lambda r: r["training"].update(epoches=2))), ["unknown key `training.epoches`"]),
    "unknown_section": (lambda e: _train(e.write(lambda r: r.update(optimiser={}))), ["unknown key `optimiser`"]),
    "wrong_type": (lambda e: _train(e.write(lambda r: r["training"].update(epochs="two"))), ["`training.epochs`"]),
    "missing_field": (lambda e: _train(e.write(lambda r: r.pop("seed"))), ["missing required key `seed`"]),
    "missing_recipe_file": (lambda e: _train(e.root / "nope.yaml"), ["recipe file not found"]),
    "recipe_not_a_mapping": (lambda e: _train(_write(e.root / "list.yaml", "- a\n- b\n")), ["YAML mapping"]),
    "bad_enum": (lambda e: _train(e.write(lambda r: r["adapter"].update(method="full"))), ["`adapter.method`"]),
    "scientific_notation_string": (lambda e: _train(_edit_text(e, "learning_rate: 0.002", "learning_rate: 2e-3")),
                                   ["`training.learning_rate`", "number"]),
    "revision_is_a_short_commit": (lambda e: _train(e.write(lambda r: r.update(
        model={"source": "hub", "id": "a/b", "revision": "5a74619"}))), ["short commit", "40 hex digits"]),
    "hub_ref_unreachable": (lambda e: _offline(e) or _train(e.write(lambda r: r.update(
        model={"source": "hub", "id": "a/b", "revision": "refs/pr/2"}))),
        ["cannot read a/b@refs/pr/2 from the hub", "HF_HUB_OFFLINE"]),
    "data_file_missing": (lambda e: _train(e.write(lambda r: r["data"].update(train=str(e.root / "gone.jsonl")))),
                          ["data file not found"]),
    "data_row_not_json": (lambda e: _bad_rows(e, [ROWS[0], "{not json"]), ["not valid JSON", "train.jsonl:2"]),
    "data_row_without_messages": (lambda e: _bad_rows(e, [{"id": "x"}]), ["no `messages` list", "train.jsonl:1"]),
    "data_row_ends_with_user": (lambda e: _bad_rows(e, [{"messages": ROWS[0]["messages"][:2]}]),
                                ["last message must be the assistant"]),
    "data_row_bad_role": (lambda e: _bad_rows(e, [{"messages": [{"role": "robot", "content": "x"}]}]),
                          ["messages[0] needs a role"]),
    "row_longer_than_max_seq_len": (lambda e: _train(e.write(lambda r: r["data"].update(max_seq_len=64))),
                                    ["longer than max_seq_len 64", "never truncated"]),
    "wrong_dataset_hash": (lambda e: _train(e.write(lambda r: r["data"].update(train_sha256="0" * 64))),
                           ["the recipe pins 000000000000", "--allow-data-change"]),
    "corrupt_safetensors": (lambda e: _train(e.with_local_model(_truncate_weights)), ["corrupt or truncated safetensors"]),
    "local_model_without_config": (lambda e: _train(e.with_local_model(lambda f: (f / "config.json").unlink())),
                                   ["no config.json"]),
    "pickle_weights_only": (lambda e: _train(e.with_local_model(_pickle_only)), ["only pickle weights"]),
    "weights_hash_mismatch": (lambda e: _train(e.with_local_model(files_sha256={"model.safetensors": "1" * 64})),
                              ["model.safetensors has sha256", "not 111111111111... as model.files_sha256 pins it"]),
    "tokenizer_hash_mismatch": (lambda e: _train(e.write(lambda r: r["tokenizer"].update(sha256="2" * 64))),
                                ["tokenizer file sha256", "is not the pinned 222222222222"]),
    "output_folder_not_empty": (lambda e: (e.out.mkdir(), (e.out / "x").write_text("x"), _train(e.write()))[-1],
                                ["output folder is not empty"]),
    "resume_a_folder_that_is_not_a_run": (lambda e: (e.out.mkdir(), ["train", "--resume", "{out}"])[-1],
                                          ["nothing to resume"]),
    "resume_with_a_recipe": (lambda e: ["train", "--resume", str(e.root), "--recipe", str(e.write())],
                             ["--resume takes the run directory alone"]),
    "hash_of_a_folder_that_is_not_a_run": (lambda e: ["hash", str(e.root)], ["no manifest.json"]),
    "eval_of_a_folder_that_is_not_a_run": (lambda e: ["eval", str(e.root)], ["no manifest.json"]),
    "eval_responses_without_data": (lambda e: ["eval", "--responses", str(e.write())], ["go together"]),
    "qualify_without_a_gpu": (lambda e: ["qualify", "--recipe", str(REPO / "recipes/kwanzaa-olmo7b-qlora.yaml")],
                              ["none is visible"]),
    "unknown_strategy": (lambda e: ["train", "--strategy", "full"], ["'full' is not one of"]),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _bad_rows(env, rows) -> list:
    bad = _jsonl(env.root / "train.jsonl", rows)
    return _train(env.write(lambda r: r["data"].update(train=str(bad), train_sha256=_sha(bad))))


def _truncate_weights(folder: Path) -> None:
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def _offline(env) -> None:
    """The hub cannot be reached (as offline, or with no network): set for this test only."""
    env.monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


def _pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


def test_there_are_at_least_25_kinds_of_bad_input():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_its_own_message_and_no_traceback(name, env):
    build, words = CASES[name]
    argv = [a.replace("{out}", str(env.out)) for a in build(env)]
    existed = env.out.exists()
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, (name, result.output, result.exception)
    assert "Traceback" not in result.output
    message = result.output.strip().splitlines()[-1]
    for w in words:
        assert w in result.output, (name, w, message)
    if argv[0] == "train" and not existed:
        assert not env.out.exists(), f"{name}: bad input left a run directory behind"


def test_out_of_gpu_memory_is_a_clear_refusal_that_keeps_the_log_and_the_batch(env, monkeypatch):
    import torch

    import kit.train.loop

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(kit.train.loop, "forward_loss", oom)
    result = CliRunner().invoke(cli, ["train", "--recipe", str(env.write()), "--output", str(env.out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "out of GPU memory" in result.output and "the batch was not changed" in result.output
    assert "kit plan" in result.output
    assert (env.out / "logs/kit.log").is_file()
    assert json.loads((env.out / "manifest.json").read_text())["status"] == "failed"


def test_a_download_that_does_not_fit_on_the_disk_is_refused(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import huggingface_hub

    from kit.errors import ResourceError
    from kit.model.source import _bytes_to_download
    from kit.recipe import ModelSource

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    huge = [SimpleNamespace(rfilename="model.safetensors", size=10**15)]
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", lambda self, *a, **k: SimpleNamespace(siblings=huge))
    spec = ModelSource(source="hub", id="a/b", revision="c" * 40)
    with pytest.raises(ResourceError, match="the download needs"):
        _bytes_to_download(spec)
