"""`kit pin` resolves a hub revision to a commit and weight hashes (the hub is mocked: offline here)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

from click.testing import CliRunner

from kit.cli import cli
from kit.recipe import load_recipe

from conftest import REPO

SHA = "a" * 40
WEIGHTS = {"model-00001-of-00002.safetensors": "1" * 64, "model-00002-of-00002.safetensors": "2" * 64}


def _fake_info(monkeypatch, siblings):
    calls = []

    def model_info(self, repo_id, revision=None, files_metadata=False):
        calls.append((repo_id, revision, files_metadata))
        return SimpleNamespace(sha=SHA, siblings=siblings)

    monkeypatch.setattr("huggingface_hub.HfApi.model_info", model_info)
    return calls


def test_pin_writes_the_commit_and_weight_hashes_into_the_recipe(monkeypatch, tmp_path):
    recipe = tmp_path / "kwanzaa-olmo7b-qlora.yaml"
    shutil.copy(REPO / "recipes/kwanzaa-olmo7b-qlora.yaml", recipe)
    siblings = [SimpleNamespace(rfilename=n, lfs=SimpleNamespace(sha256=h)) for n, h in WEIGHTS.items()]
    siblings.append(SimpleNamespace(rfilename="pytorch_model.bin", lfs=SimpleNamespace(sha256="3" * 64)))
    calls = _fake_info(monkeypatch, siblings)
    result = CliRunner().invoke(cli, ["pin", str(recipe), "--write"])
    assert result.exit_code == 0, result.output
    assert calls == [("allenai/OLMo-7B-Instruct-hf", "main", True)]
    model = load_recipe(recipe).recipe.model
    assert model.revision == SHA and model.files_sha256 == WEIGHTS
    assert "# Not yet pinned" in recipe.read_text()  # comments are kept


def test_pin_refuses_a_model_with_only_pickle_weights(monkeypatch):
    _fake_info(monkeypatch, [SimpleNamespace(rfilename="pytorch_model.bin", lfs=SimpleNamespace(sha256="3" * 64))])
    result = CliRunner().invoke(cli, ["pin", str(REPO / "recipes/kwanzaa-olmo7b-lora.yaml")])
    assert result.exit_code == 2 and "no safetensors" in result.output


def test_unpinned_hub_model_is_refused_before_any_download(tmp_path):
    from kit.errors import ModelSourceError
    from kit.model.source import resolve_base_model

    spec = load_recipe(REPO / "recipes/kwanzaa-olmo7b-qlora.yaml").recipe.model
    try:
        resolve_base_model(spec, tmp_path)
    except ModelSourceError as e:
        assert "not pinned" in str(e) and "kit pin" in str(e)
    else:
        raise AssertionError("an unpinned hub model was not refused")
