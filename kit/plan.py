"""Will it fit, which method, how long: peak GPU memory by component, and the LoRA/QLoRA choice.

Parameter-bound components are computed exactly from the architecture (OlmoConfig) and the
adapter; the activation term (what gradient checkpointing keeps, the recomputed layer, the fp32
logits and their gradient, allocator slack) is linear in tokens per micro-batch, fitted on peak
*reserved* memory that the kit's own `kit qualify` measured (benchmarks/results/*/*-peak-memory-*.json).
What `peak_gib` estimates is torch's peak reserved memory, the figure `kit qualify` measures;
`device_gib` adds the CUDA context, and is what must fit.

Rule: LoRA (bf16) when its device_gib fits in the free memory less a 10% margin, else QLoRA
(nf4), else a refusal that names the longest sequence that would fit, or the card that would.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from kit.hardware import DENSE_BF16_TFLOPS, H100_TFLOPS, GiB

MARGIN = 0.10           # keep 10% of the free memory for fragmentation and other processes
CUDA_CONTEXT_GIB = 0.85  # device memory used outside torch's allocator (measured: 0.75-0.86 GiB)

# Activation GiB per token of a micro-batch, and a constant, through the peak reserved memory that
# `kit qualify` measured at seq 1024 and 4096 (gradient checkpointing on, one row, every token a label,
# so full-vocabulary logits: an upper bound for answer-only training; benchmarks/results/). Peak memory
# grows a little faster than linearly with the tokens, so this chord over-estimates in between: seq 2048
# was held out and is over-estimated by 1.2% (LoRA) and 2.9% (QLoRA), never under. Without checkpointing
# only one seq-2048 point exists (an H100 measurement of 2026-11-28, before the adapter's mixed
# precision), so it is a ratio.
ACTIVATION_FIT = {
    ("lora", True): {"per_token_gib": 3.9290e-4, "const_gib": 0.725,
                     "source": "kit qualify, H200, 2026-12-01 (fit 1024+4096, 2048 held out: +1.2%)"},
    ("qlora", True): {"per_token_gib": 3.8770e-4, "const_gib": 0.897,
                      "source": "kit qualify, H200, 2026-12-01 (fit 1024+4096, 2048 held out: +2.9%)"},
    ("lora", False): {"per_token_gib": 1.046e-2, "const_gib": 0.0, "source": "H100, 2026-11-28 (seq 2048 only)"},
    ("qlora", False): {"per_token_gib": 1.379e-2, "const_gib": 0.0, "source": "H100, 2026-11-28 (seq 2048 only)"},
}

# Deterministic-mode training throughput of one seq-2048 row per micro-batch (checkpointing, `kit
# qualify`, an H200, 2026-12-01; the H100 SXM shares its dense bf16 peak, 989 TFLOP/s), scaled to
# other GPUs by their dense bf16 peak (an estimate: only the H200 is measured). A GPU not in the
# table gets no time estimate.
H100_TOKENS_PER_S = {"lora": 3204.1, "qlora": 2836.9}
# Data-parallel speed-up of tokens/s, N GPUs over one, measured with `kit train --nproc N`
# (benchmarks/README.md); a (strategy, N) not listed is estimated as linear, and says so.
DP_SCALING: dict[tuple[str, int], dict] = {}
# transformers' default OlmoConfig, which is OLMo-7B (a test checks it against transformers); here
# so that planning needs no transformers import
OLMO_7B = {"vocab_size": 50304, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 2048,
           "tie_word_embeddings": False}


@dataclass(frozen=True)
class Architecture:
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int

    @classmethod
    def from_config(cls, config: dict | None) -> Architecture:
        c = {**OLMO_7B, **(config or {})}
        return cls(c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"], c["vocab_size"],
                   c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"])

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def linear_params(self) -> int:
        h, i = self.hidden, self.intermediate
        return self.layers * (2 * h * h + 2 * h * self.kv_dim + 3 * h * i)

    def embedding_params(self) -> int:
        return 2 * self.vocab * self.hidden  # input embeddings + untied lm_head

    def lora_params(self, r: int, modules: list[str]) -> int:
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                  "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        return self.layers * sum(r * (a + b) for m, (a, b) in shapes.items() if m in modules)


@dataclass(frozen=True)
class Estimate:
    strategy: str
    seq_len: int
    components_gib: dict
    peak_gib: float      # torch peak reserved
    device_gib: float    # + CUDA context: what must fit on the card
    fits: bool | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    strategy: str | None
    reason: str
    estimates: dict
    gpu_memory_gib: float | None


def estimate(recipe, strategy: str, seq_len: int, gpu_memory_gib: float | None) -> Estimate:
    """Peak memory of `recipe` trained with `strategy`, with the recipe's own optimizer (training
    never swaps it, so neither does the estimate)."""
    arch = Architecture.from_config(recipe.model.config)
    a, t = recipe.adapter, recipe.training
    n_lora = arch.lora_params(a.r, a.target_modules)
    if strategy == "qlora":
        # embeddings and lm_head are not quantized and stay in the model's dtype (kit.model.load_for_training)
        unquantized = 2 if recipe.model.dtype == "bfloat16" else 4
        weights = {"base_weights_nf4": arch.linear_params() * (0.5 + 1 / 64 + 4 / (64 * 256)) / GiB,
                   f"embeddings_{recipe.model.dtype}": arch.embedding_params() * unquantized / GiB}
    else:
        weights = {"base_weights_bf16": (arch.linear_params() + arch.embedding_params()) * 2 / GiB}
    optimizer_bytes = {"adamw_torch": 8, "adamw_torch_fused": 8, "adamw_8bit": 2, "paged_adamw_8bit": 0}[t.optimizer]
    fit = ACTIVATION_FIT[(strategy, t.gradient_checkpointing)]
    components = {
        **weights,
        "adapter_fp32": n_lora * 4 / GiB,
        "gradients_fp32": n_lora * 4 / GiB,
        # paged 8-bit states live in CUDA managed memory, outside torch's reserved pool
        "optimizer_states": n_lora * optimizer_bytes / GiB,
        "activations": fit["const_gib"] + fit["per_token_gib"] * t.token_budget(seq_len),
    }
    peak = sum(components.values())
    device = peak + CUDA_CONTEXT_GIB + (n_lora * 2 / GiB if t.optimizer == "paged_adamw_8bit" else 0)
    fits = None if gpu_memory_gib is None else device <= gpu_memory_gib * (1 - MARGIN)
    return Estimate(strategy, seq_len, {k: round(v, 3) for k, v in components.items()}, round(peak, 2),
                    round(device, 2), fits)


def decide(recipe, gpu_memory_gib: float | None, seq_len: int | None = None) -> Decision:
    seq = seq_len or recipe.data.max_seq_len
    est = {s: estimate(recipe, s, seq, gpu_memory_gib) for s in ("lora", "qlora")}
    as_dicts = {s: e.as_dict() for s, e in est.items()}
    if gpu_memory_gib is None:
        return Decision(None, "no GPU memory known: pass --gpu-memory GIB to plan for a card", as_dicts, None)
    budget = gpu_memory_gib * (1 - MARGIN)
    if est["lora"].fits:
        why = (f"bf16 LoRA needs ~{est['lora'].device_gib:.1f} GiB at seq {seq}, within {budget:.1f} GiB "
               f"({gpu_memory_gib:g} GiB less a {MARGIN:.0%} margin): the faster, unquantized method")
        return Decision("lora", why, as_dicts, gpu_memory_gib)
    if est["qlora"].fits:
        why = (f"bf16 LoRA needs ~{est['lora'].device_gib:.1f} GiB, more than {budget:.1f} GiB; 4-bit QLoRA "
               f"needs ~{est['qlora'].device_gib:.1f} GiB at seq {seq}")
        return Decision("qlora", why, as_dicts, gpu_memory_gib)
    one_row = one_row_per_micro_batch(recipe)
    single = estimate(one_row, "qlora", seq, gpu_memory_gib)
    longest = longest_fitting_seq(one_row, gpu_memory_gib)
    if one_row is not recipe and single.fits:
        alt = (f"with `training.micro_batch_tokens: null` (one row of <= {seq} tokens per micro-batch, not "
               f"{recipe.training.micro_batch_tokens} packed) QLoRA needs ~{single.device_gib:.1f} GiB and fits")
    elif longest:
        alt = (f"sequences up to {longest} tokens would fit with QLoRA, one row per micro-batch (the data's "
               f"rows must be that short)")
    else:
        alt = "no sequence length fits"
    why = (f"neither fits: 4-bit QLoRA needs ~{est['qlora'].device_gib:.1f} GiB at seq {seq}, more than "
           f"{budget:.1f} GiB; {alt}; a card with at least {math.ceil(est['qlora'].device_gib / (1 - MARGIN))} GiB "
           f"free runs this recipe")
    return Decision(None, why, as_dicts, gpu_memory_gib)


def one_row_per_micro_batch(recipe):
    """The recipe without its packing budget (micro_batch_tokens), or the recipe itself if it has none."""
    if not recipe.training.micro_batch_tokens:
        return recipe
    return recipe.model_copy(update={"training": recipe.training.model_copy(update={"micro_batch_tokens": None})})


def longest_fitting_seq(recipe, gpu_memory_gib: float) -> int | None:
    for seq in (1792, 1536, 1280, 1024, 768, 512, 256):
        if seq < recipe.data.max_seq_len and estimate(recipe, "qlora", seq, gpu_memory_gib).fits:
            return seq
    return None


def tokens_per_s(strategy: str, gpu_name: str | None) -> tuple[float | None, str]:
    if not gpu_name:
        return None, "no GPU named"
    for key, tflops in DENSE_BF16_TFLOPS.items():
        if key.lower() in gpu_name.lower():
            if tflops == H100_TFLOPS:  # H100 SXM and H200: one bf16 peak, where the table was measured
                how = "measured on an H200, which shares this GPU's bf16 peak"
            else:
                how = f"scaled from the H100/H200 measurement by bf16 peak {tflops}/{H100_TFLOPS} TFLOP/s"
            return H100_TOKENS_PER_S[strategy] * tflops / H100_TFLOPS, how
    return None, f"{gpu_name} is not in the speed table: run `kit qualify` to measure it"


def eta(strategy: str, gpu_name: str | None, total_tokens: int | None, steps: int | None, nproc: int = 1) -> dict:
    """The whole recipe's training time; with nproc GPUs, at the measured data-parallel scaling
    (DP_SCALING, tokens/s of N GPUs over one) where there is one, else linear (said so)."""
    rate, how = tokens_per_s(strategy, gpu_name)
    if rate is not None and nproc > 1:
        measured = DP_SCALING.get((strategy, nproc))
        rate *= measured["speedup"] if measured else nproc
        how += (f"; x{measured['speedup']:.2f} on {nproc} GPUs, measured ({measured['source']})" if measured
                else f"; x{nproc} on {nproc} GPUs assumes linear scaling (not measured)")
    if rate is None or not total_tokens:
        return {"tokens_per_s": rate, "basis": how, "total_tokens": total_tokens, "seconds": None}
    return {"tokens_per_s": round(rate), "basis": how, "total_tokens": total_tokens,
            "seconds": round(total_tokens / rate), "seconds_per_step": round(total_tokens / rate / steps, 2) if steps else None}


# ---- which Kwanzaa recipe to run -------------------------------------------------------------

# What `kit train` runs when no recipe is given, best first: bf16 LoRA where it fits, else QLoRA.
KWANZAA_RECIPES = ("kwanzaa-olmo7b-lora", "kwanzaa-olmo7b-qlora")
CPU_RECIPE = "tiny"


@dataclass(frozen=True)
class RecipeChoice:
    name: str | None          # None: nothing fits
    reason: str
    gpu_memory_gib: float | None
    estimates: dict           # recipe name -> Estimate (as a dict) of that recipe's own method


def choose_recipe(recipes: dict, gpu_memory_gib: float | None) -> RecipeChoice:
    """The Kwanzaa recipe for a card with this much free memory (recipes: name -> Recipe, the
    KWANZAA_RECIPES), each estimated with its own method and batching; no GPU: the tiny recipe."""
    if gpu_memory_gib is None:
        return RecipeChoice(CPU_RECIPE, "no GPU: the tiny recipe (a seeded random-init OLMo with the real tokenizer "
                                        "and data) runs on the CPU; the 7B Kwanzaa recipes need a GPU", None, {})
    est = {name: estimate(r, r.adapter.method, r.data.max_seq_len, gpu_memory_gib) for name, r in recipes.items()}
    budget = f"{gpu_memory_gib * (1 - MARGIN):.1f} GiB ({gpu_memory_gib:g} GiB free less a {MARGIN:.0%} margin)"
    lora, qlora = KWANZAA_RECIPES
    as_dicts = {name: e.as_dict() for name, e in est.items()}
    if est[lora].fits:
        return RecipeChoice(lora, f"bf16 LoRA ({lora}) needs ~{est[lora].device_gib:.1f} GiB, within {budget}: "
                                  "the faster, unquantized method", gpu_memory_gib, as_dicts)
    if est[qlora].fits:
        return RecipeChoice(qlora, f"bf16 LoRA ({lora}) needs ~{est[lora].device_gib:.1f} GiB, more than {budget}; "
                                   f"4-bit QLoRA ({qlora}) needs ~{est[qlora].device_gib:.1f} GiB", gpu_memory_gib,
                            as_dicts)
    return RecipeChoice(None, decide(recipes[qlora], gpu_memory_gib).reason, gpu_memory_gib, as_dicts)
