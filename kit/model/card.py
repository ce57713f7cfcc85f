"""The adapter as a Hub artifact: its model card and canonical adapter files.

The card is built with huggingface_hub's ModelCard/ModelCardData: base_model a plain repo id (its
commit is in adapter_config.json's `revision`, where peft reads it), license, datasets, language,
pipeline tag, tags, a usage snippet, and the eval results once the run is evaluated. It is a pure
function of the run's resolved recipe, its sha256, the method and the metrics (no date, path or
host), so a rerun writes the same bytes.

The card is not in the bit-exact set: `kit verify`'s verdict compares what training computed (the
adapter's tensors, the train log, the eval responses and metrics), never the card, which is
documentation: the kit may reword it while the weights stay the same, and evaluation adds its
results after training. Like every file of the run it is fingerprinted in the manifest, so
`kit hash` notices an edit.
"""

from __future__ import annotations

import json
from pathlib import Path

from kit import io
from kit.model.source import public_name
from kit.recipe import Recipe

LICENSE = "apache-2.0"  # the adapter's: the kit's, and OLMo-7B-Instruct's own
DATA_LICENSE = "CC-BY-4.0"  # the Kwanzaa dataset's (data/kwanzaa/README.md)
README = "README.md"
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA"}


def dataset_ids(recipe: Recipe) -> list[str]:
    """The Hub dataset the recipe's data is published as, when the recipe names one (data.hub)."""
    hub = getattr(recipe.data, "hub", None)
    hub_id = hub if isinstance(hub, str) else getattr(hub, "id", None) or getattr(hub, "repo", None)
    return [hub_id] if hub_id else []


def model_card(recipe: Recipe, recipe_sha256: str, method: str, metrics: dict | None = None) -> str:
    """README.md of the adapter folder (metrics: the run's eval/metrics.json, once evaluated)."""
    from huggingface_hub import ModelCard, ModelCardData

    spec, datasets, shown = recipe.model, dataset_ids(recipe), METHOD_NAMES.get(method, method)
    tags = ["kwanzaa-kit", "kwanzaa", "peft", "lora"] + (["qlora"] if method == "qlora" else []) + \
        ["rag", "citations", "answer-json"] + (["random-weights"] if spec.source == "random" else [])
    data = ModelCardData(base_model=spec.id if spec.source == "hub" else None, library_name="peft",
                         license=LICENSE, datasets=datasets or None, language=["en"], pipeline_tag="text-generation",
                         tags=tags, model_name=f"kwanzaa-adapter-{recipe.name}",
                         eval_results=_eval_results(metrics, datasets) if metrics else None)
    body = "\n".join([
        f"# Kwanzaa adapter ({shown}, recipe `{recipe.name}`)", "",
        f"A {shown} adapter (r={recipe.adapter.r}, alpha={recipe.adapter.alpha}, on "
        f"{', '.join(sorted(recipe.adapter.target_modules))}) trained by kwanzaa-kit from recipe `{recipe.name}` "
        f"(resolved recipe sha256 `{recipe_sha256}`) on {_base_text(recipe)}.", "",
        "It answers a retrieval-augmented question with one strict `answer_json` object (`kwanzaa.answer.v1`), "
        "cites the retrieved documents it uses with `[n]`, and refuses when they are not enough. Trained on the "
        f"Kwanzaa dataset (written for kwanzaa-kit, {DATA_LICENSE}); the run's manifest.json fingerprints every input "
        "and output, and VERIFY.md in the kit says how to check a reproduction.", "",
        "## Use", "", "```python", *_usage(recipe, method), "```", "",
        "Prompts follow the Tulu chat format of OLMo-Instruct (the kit's `olmo-tulu` template), with the retrieved "
        "documents in the user turn.", "",
        *(_results_table(metrics) if metrics else []),
        "## Reproduce", "", f"`kit reproduce --recipe {recipe.name}` (kwanzaa-kit) trains, evaluates and verifies "
        "this recipe and writes a report.", ""])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def _base_text(recipe: Recipe) -> str:
    spec = recipe.model
    if spec.source == "hub":
        return f"`{spec.id}` at commit `{spec.revision}`"
    if spec.source == "random":
        return (f"a seeded random-init {spec.architecture.upper()} (`model.config` and `init_seed: {spec.init_seed}` "
                "of the recipe; not on the Hub: `kit train` rebuilds it)")
    return f"a local base model folder (`{Path(spec.path).name}`)"


def _usage(recipe: Recipe, method: str) -> list[str]:
    spec = recipe.model
    quant = ["# trained on the 4-bit base: load it the same way",
             "kwargs = {\"quantization_config\": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\", "
             "bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)}"] if method == "qlora" else \
        ["kwargs = {}"]
    if spec.source == "hub":
        return ["import torch", "from peft import AutoPeftModelForCausalLM",
                "from transformers import AutoTokenizer" + (", BitsAndBytesConfig" if method == "qlora" else ""), "",
                *quant,
                f"# reads {spec.id} at the commit in adapter_config.json (`revision`)",
                "model = AutoPeftModelForCausalLM.from_pretrained(\"PATH_OR_REPO_OF_THIS_ADAPTER\", "
                "dtype=torch.bfloat16, **kwargs)",
                f"tokenizer = AutoTokenizer.from_pretrained(\"{spec.id}\", revision=\"{spec.revision}\")"]
    return ["import torch", "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM" + (", BitsAndBytesConfig" if method == "qlora" else ""), "",
            *quant,
            "base = AutoModelForCausalLM.from_pretrained(\"BASE_MODEL_FOLDER\", **kwargs)",
            "model = PeftModel.from_pretrained(base, \"PATH_OF_THIS_ADAPTER\")"]


def _eval_results(metrics: dict, datasets: list[str]) -> list:
    from huggingface_hub import EvalResult

    common = {"task_type": "text-generation", "dataset_type": datasets[0] if datasets else "json",
              "dataset_name": "Kwanzaa eval set", "dataset_split": "eval"}
    out = [EvalResult(**common, metric_type=name, metric_name=name, metric_value=m["value"])
           for name, m in sorted((metrics.get("metrics") or {}).items()) if m.get("value") is not None]
    loss = (metrics.get("eval_loss") or {}).get("loss")
    if loss is not None:
        out.append(EvalResult(**common, metric_type="loss", metric_name="eval_loss", metric_value=loss))
    return out


def _results_table(metrics: dict) -> list[str]:
    def target(t) -> str:
        return f"{t.get('op', '')} {t.get('percent', '')}%" if isinstance(t, dict) else ""

    rows = [f"| {name} | {m['value']:.4g} | {target(m.get('target'))} |"
            for name, m in sorted((metrics.get("metrics") or {}).items()) if m.get("value") is not None]
    loss = (metrics.get("eval_loss") or {}).get("loss")
    return ["## Evaluation (greedy decoding on the Kwanzaa eval set)", "", "| metric | value | target |",
            "|---|---|---|", *rows, *([f"| eval_loss | {loss:.4g} | |"] if loss is not None else []), ""]


def write_card(adapter_dir: Path, recipe: Recipe, recipe_sha256: str, method: str, metrics: dict | None = None) -> None:
    io.atomic_write_text(adapter_dir / README, model_card(recipe, recipe_sha256, method, metrics))


def canonicalize_adapter_files(adapter_dir: Path, recipe: Recipe, recipe_sha256: str, method: str) -> None:
    """peft writes the local model path (config and card) and a set-ordered module list: make them
    canonical, with the base model as the Hub knows it (plain repo id + commit in `revision`)."""
    write_card(adapter_dir, recipe, recipe_sha256, method)
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text("utf-8"))
    config["base_model_name_or_path"] = public_name(recipe.model)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config.pop("revision", None)
    if recipe.model.source == "hub":
        config["revision"] = recipe.model.revision
    io.atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
