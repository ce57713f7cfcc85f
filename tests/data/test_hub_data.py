"""data.hub: a recipe's rows from a Hub dataset at a pinned commit, read with `datasets`,
fingerprinted by the canonical rows (not the files' bytes). Tested offline against a local dataset
folder laid out as the Hugging Face cache holds a download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from kit import io
from kit.data import hub
from kit.errors import DataError, RecipeError
from kit.recipe import load_recipe

from conftest import REPO, TINY, manifest

SHIPPED = REPO / "data" / "kwanzaa"
REPO_ID = "kwanzaa-kit/kwanzaa-chat"
REVISION = "0123456789abcdef0123456789abcdef01234567"
PARQUET = {"train": "data/train-00000-of-00001.parquet", "eval": "data/eval-00000-of-00001.parquet"}


def local_hub_dataset(cache: Path, files: dict[str, str] = PARQUET) -> Path:
    """The shipped train/eval rows as a Hub dataset repo at REVISION, in the Hugging Face cache
    layout (what `hf download` leaves), written by `datasets` in the format each name says."""
    import datasets

    snapshot = cache / f"datasets--{REPO_ID.replace('/', '--')}" / "snapshots" / REVISION
    for split, name in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".parquet"):
            datasets.load_dataset("json", data_files=str(SHIPPED / f"{split}.jsonl"), split="train",
                                  cache_dir=str(cache.parent / "ds-build")).to_parquet(str(target))
        else:
            shutil.copyfile(SHIPPED / f"{split}.jsonl", target)
    return snapshot


def hub_recipe(path: Path, files: dict[str, str] = PARQUET, **data) -> Path:
    """recipes/tiny.yaml with its data from REPO_ID@REVISION instead of the local JSONL."""
    recipe = yaml.safe_load(TINY.read_text())
    recipe["data"].update({"train": None, "eval": None, "hub": {"repo": REPO_ID, "revision": REVISION,
                                                                "files": dict(files)}, **data})
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """HF_HUB_OFFLINE with the Hugging Face cache (and datasets' cache) in tmp_path."""
    import datasets
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")
    return cache


def test_the_shipped_jsonl_is_already_canonical_so_its_fingerprint_is_its_sha256():
    for split in ("train", "eval"):
        path = SHIPPED / f"{split}.jsonl"
        rows = [row for _, row in io.read_jsonl(path, DataError)]
        assert hub.rows_sha256(rows) == io.sha256_file(path)


def test_parquet_on_the_hub_gives_the_same_fingerprint_as_the_local_jsonl(offline_hub, tmp_path):
    snapshot = local_hub_dataset(offline_hub)
    loaded = load_recipe(hub_recipe(tmp_path / "hub.yaml"))
    local = load_recipe(TINY)
    train, eval_ = hub.split_paths(loaded.recipe.data, loaded.resolve, tmp_path / "kit-cache")
    assert (io.sha256_file(train), io.sha256_file(eval_)) == (local.recipe.data.train_sha256,
                                                               local.recipe.data.eval_sha256)
    assert train.read_bytes() == (SHIPPED / "train.jsonl").read_bytes()  # the run's copy: canonical JSONL
    parquet = snapshot / PARQUET["train"]
    assert io.sha256_file(parquet) != local.recipe.data.train_sha256  # not the parquet bytes


def test_a_glob_of_jsonl_files_reads_in_order(offline_hub, tmp_path):
    local_hub_dataset(offline_hub, {"train": "train.jsonl", "eval": "eval.jsonl"})
    loaded = load_recipe(hub_recipe(tmp_path / "hub.yaml", {"train": "train*.jsonl", "eval": "eval.jsonl"}))
    path = hub.split_path(loaded.recipe.data, "train", loaded.resolve, tmp_path / "kit-cache")
    assert io.sha256_file(path) == load_recipe(TINY).recipe.data.train_sha256


def test_a_split_may_come_from_the_hub_and_the_other_from_a_local_file(offline_hub, tmp_path):
    local_hub_dataset(offline_hub)
    loaded = load_recipe(hub_recipe(tmp_path / "hub.yaml", {"train": PARQUET["train"]},
                                    eval=str(SHIPPED / "eval.jsonl")))
    train, eval_ = hub.split_paths(loaded.recipe.data, loaded.resolve, tmp_path / "kit-cache")
    assert eval_ == SHIPPED / "eval.jsonl" and train.name == "train.jsonl"


def test_not_in_the_cache_while_offline_names_the_fix(offline_hub, tmp_path):
    loaded = load_recipe(hub_recipe(tmp_path / "hub.yaml"))
    with pytest.raises(DataError, match="not in the local Hugging Face cache") as e:
        hub.split_paths(loaded.recipe.data, loaded.resolve, tmp_path / "kit-cache")
    assert e.value.exit_code == 2 and "data.hub" in str(e.value)


def test_a_file_name_that_matches_nothing_is_refused(offline_hub, tmp_path):
    local_hub_dataset(offline_hub)
    loaded = load_recipe(hub_recipe(tmp_path / "hub.yaml", {"train": "data/nope.parquet", "eval": PARQUET["eval"]}))
    with pytest.raises(DataError, match="no file matches 'data/nope.parquet'"):
        hub.split_paths(loaded.recipe.data, loaded.resolve, tmp_path / "kit-cache")


@pytest.mark.parametrize(("change", "message"), [
    ({"train": "../data/kwanzaa/train.jsonl"}, "split 'train' needs exactly one source"),
    ({"hub": {"repo": REPO_ID, "revision": REVISION, "files": {"train": "t.jsonl"}}}, "split 'eval' needs exactly one"),
    ({"hub": {"repo": REPO_ID, "revision": "main", "files": PARQUET}}, "40-hex commit"),
    ({"hub": {"repo": "not a repo", "revision": REVISION, "files": PARQUET}}, "data.hub.repo"),
])
def test_the_recipe_refuses_an_unclear_data_source(tmp_path, change, message):
    path = hub_recipe(tmp_path / "hub.yaml")
    recipe = yaml.safe_load(path.read_text())
    recipe["data"].update(change)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.raises(RecipeError, match=message) as e:
        load_recipe(path)
    assert e.value.exit_code == 2 and str(path) in str(e.value)


def test_a_local_recipe_has_no_hub_section():
    assert load_recipe(TINY).resolved_dict()["data"]["hub"] is None


@pytest.mark.slow
def test_a_hub_recipe_trains_offline_with_the_same_data_fingerprint_and_adapter(tiny_run, run_kit, tmp_path):
    cache = tmp_path / "hf-hub-cache"
    local_hub_dataset(cache)
    recipe = hub_recipe(tmp_path / "hub.yaml")
    out = tmp_path / "run"
    run_kit("train", "--recipe", str(recipe), "--output", str(out), "--json", check=True,
            env={"HF_HUB_CACHE": str(cache), "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets-cache")})
    ours, local = manifest(out), manifest(tiny_run)
    assert ours["inputs"]["dataset"]["sha256"] == local["inputs"]["dataset"]["sha256"]
    assert ours["inputs"]["recipe"]["sha256"] != local["inputs"]["recipe"]["sha256"]  # data.hub is in the recipe
    assert (out / "data" / "train.jsonl").read_bytes() == (SHIPPED / "train.jsonl").read_bytes()
    assert ours["outputs"]["adapter"]["sha256"] == local["outputs"]["adapter"]["sha256"]  # the same weights
    assert json.loads((out / "recipe.json").read_text())["data"]["hub"]["revision"] == REVISION
