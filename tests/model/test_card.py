"""The adapter's model card is a proper Hub card: plain base_model id, license, language, pipeline
tag, tags, a usage snippet, the eval results once evaluated; and the same bytes for the same run."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard

from kit.model import card
from kit.recipe import load_recipe, with_overrides

from conftest import REPO

COMMIT = "5a74619" + "0" * 33
METRICS = {"metrics": {"parse_rate": {"value": 0.875, "target": {"op": ">=", "percent": 100}},
                       "citation_coverage": {"value": None}},
           "eval_loss": {"loss": 1.2345}}


def _pinned(name: str):
    loaded = load_recipe(REPO / "recipes" / f"{name}.yaml")
    return with_overrides(loaded, model={"revision": COMMIT, "files_sha256": {"model.safetensors": "f" * 64}}).recipe


def test_the_card_of_a_hub_adapter_names_a_plain_base_model_and_the_hub_fields():
    recipe = _pinned("kwanzaa-olmo7b-qlora")
    text = card.model_card(recipe, "e" * 64, "qlora")
    data = ModelCard(text).data
    assert data.base_model == "allenai/OLMo-7B-Instruct-hf"  # a repo id the Hub resolves; no @revision
    assert data.license == "apache-2.0" and data.language == ["en"] and data.pipeline_tag == "text-generation"
    assert data.library_name == "peft" and {"kwanzaa-kit", "qlora", "lora", "peft"} <= set(data.tags)
    assert data.eval_results is None  # not evaluated yet
    assert f"commit `{COMMIT}`" in text and "e" * 64 in text
    assert "AutoPeftModelForCausalLM.from_pretrained" in text and "BitsAndBytesConfig(load_in_4bit=True" in text
    assert "CC-BY-4.0" in text


def test_the_card_carries_the_eval_results_once_evaluated():
    recipe = _pinned("kwanzaa-olmo7b-lora")
    data = ModelCard(card.model_card(recipe, "e" * 64, "lora", METRICS)).data
    results = {r.metric_type: r.metric_value for r in data.eval_results}
    assert results == {"parse_rate": 0.875, "loss": 1.2345}  # a metric with no value is left out
    assert data.model_name == "kwanzaa-adapter-kwanzaa-olmo7b-lora"
    assert "model-index" in data.to_dict() and "BitsAndBytesConfig" not in card.model_card(recipe, "e" * 64, "lora")


def test_the_same_run_writes_the_same_card_bytes():
    recipe = _pinned("kwanzaa-olmo7b-lora")
    assert card.model_card(recipe, "e" * 64, "lora", METRICS) == card.model_card(recipe, "e" * 64, "lora", METRICS)
    assert card.model_card(recipe, "e" * 64, "lora") != card.model_card(recipe, "d" * 64, "lora")


def test_a_random_init_base_is_described_not_named_as_a_hub_model():
    recipe = load_recipe(REPO / "recipes/tiny.yaml").recipe
    text = card.model_card(recipe, "e" * 64, "lora")
    data = ModelCard(text).data
    assert data.base_model is None and "random-weights" in data.tags and data.license == "apache-2.0"
    assert "seeded random-init OLMO" in text and "PeftModel.from_pretrained(base" in text


def test_the_adapter_config_names_the_base_as_peft_reads_it(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": "/home/someone/.cache/x", "revision": None,
         "target_modules": ["v_proj", "q_proj"]}))
    card.canonicalize_adapter_files(tmp_path, _pinned("kwanzaa-olmo7b-lora"), "e" * 64, "lora")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "allenai/OLMo-7B-Instruct-hf" and config["revision"] == COMMIT
    assert config["target_modules"] == ["q_proj", "v_proj"]
    assert ModelCard.load(tmp_path / "README.md").data.base_model == "allenai/OLMo-7B-Instruct-hf"
