"""`kit pin` resolves a hub ref to a commit and weight hashes (the hub is mocked: offline here), and
says in one line, exit 2, when the hub cannot be reached."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
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


def _weights():
    siblings = [SimpleNamespace(rfilename=n, lfs=SimpleNamespace(sha256=h)) for n, h in WEIGHTS.items()]
    return siblings + [SimpleNamespace(rfilename="pytorch_model.bin", lfs=SimpleNamespace(sha256="3" * 64))]


def test_pin_writes_the_commit_and_weight_hashes_into_a_recipe_file_you_own(monkeypatch, tmp_path):
    recipe = tmp_path / "kwanzaa-olmo7b-qlora.yaml"
    shutil.copy(REPO / "recipes/kwanzaa-olmo7b-qlora.yaml", recipe)
    calls = _fake_info(monkeypatch, _weights())
    result = CliRunner().invoke(cli, ["pin", str(recipe), "--write"])
    assert result.exit_code == 0, result.output
    assert calls == [("allenai/OLMo-7B-Instruct-hf", "refs/pr/2", True)]  # the ref the recipe names
    model = load_recipe(recipe).recipe.model
    assert model.revision == SHA and model.files_sha256 == WEIGHTS  # the pickle file is not a weight
    assert "safetensors conversion" in recipe.read_text()  # comments are kept


def test_pin_finds_a_shipped_recipe_by_name_and_prints_the_pins(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _fake_info(monkeypatch, _weights())
    result = CliRunner().invoke(cli, ["pin", "kwanzaa-olmo7b-lora", "--revision", "main"])
    assert result.exit_code == 0, result.output
    assert f"at main is commit {SHA}" in result.output and f"revision: {SHA}" in result.output


def test_pin_never_writes_into_a_read_only_install(monkeypatch, tmp_path):
    import kit.model.pin

    _fake_info(monkeypatch, _weights())
    monkeypatch.setattr(kit.model.pin.os, "access", lambda path, mode: False)  # a root-owned install
    shipped = REPO / "recipes/kwanzaa-olmo7b-lora.yaml"
    before = shipped.read_bytes()
    result = CliRunner().invoke(cli, ["pin", "kwanzaa-olmo7b-lora", "--write"])
    assert result.exit_code == 2 and "read-only" in result.output and "RUN/recipe.json" in result.output
    assert shipped.read_bytes() == before


def test_pin_refuses_a_model_with_only_pickle_weights(monkeypatch):
    _fake_info(monkeypatch, [SimpleNamespace(rfilename="pytorch_model.bin", lfs=SimpleNamespace(sha256="3" * 64))])
    result = CliRunner().invoke(cli, ["pin", str(REPO / "recipes/kwanzaa-olmo7b-lora.yaml"), "--revision", "main"])
    assert result.exit_code == 2 and "no safetensors" in result.output and "refs/pr/N" in result.output


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"},
                                 {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline", "no-network"])
def test_pin_without_the_hub_is_one_line_and_exit_2(run_kit, tmp_path, env):
    proc = run_kit("pin", "kwanzaa-olmo7b-lora", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "cannot read allenai/OLMo-7B-Instruct-hf@refs/pr/2 from the hub" in proc.stderr
