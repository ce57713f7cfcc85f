"""Loading the base model (bf16/fp32 or 4-bit) and wrapping it with a fresh, seeded LoRA adapter;
the loss of one micro-batch. Secure by default: safetensors only, no remote code.
"""

from __future__ import annotations

from pathlib import Path

from kit.data.batches import PackedBatch
from kit.errors import ModelSourceError
from kit.model import attention as attention_impl


class _Without:
    """sys.meta_path's PathFinder, blind to some top-level packages: importlib.util.find_spec says they
    are not installed and importing them fails as for a missing package. Everything else, package
    metadata (importlib.metadata) included, is found as before."""

    def __init__(self, finder, hidden: frozenset[str]):
        self.finder, self.hidden = finder, hidden

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.hidden:
            return None
        return self.finder.find_spec(fullname, path, target)

    def __getattr__(self, name):  # find_distributions, invalidate_caches
        return getattr(self.finder, name)


# Set by the `kit` entry point: this process does one command's work, so a library it will not need can
# stay unimported for the rest of it. Not in a process that calls kit's functions for other work too.
ONE_COMMAND_PROCESS = False


def skip_bitsandbytes(method: str, optimizer: str | None = None) -> bool:
    """For a `kit` process whose run needs no bitsandbytes (LoRA, not QLoRA; no 8-bit optimizer): keep
    it unimported. peft imports it whenever it is installed, and its import loads torch's compiler
    (about 2.5 s on a CPU, in every `kit train` and `kit eval` of a LoRA run) for nothing. Only where it
    has not been imported yet and peft has not looked for it. Returns whether it is now hidden."""
    import importlib.machinery
    import sys

    needed = method != "lora" or optimizer in ("adamw_8bit", "paged_adamw_8bit")
    if needed or not ONE_COMMAND_PROCESS or any(m in sys.modules for m in ("bitsandbytes", "peft")):
        return False
    for i, finder in enumerate(sys.meta_path):
        if isinstance(finder, _Without):
            return True
        if finder is importlib.machinery.PathFinder:
            sys.meta_path[i] = _Without(finder, frozenset({"bitsandbytes"}))
            return True
    return False


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_base(path: Path, recipe, method: str, device: str, attention: str = "sdpa"):
    """The base model as the recipe trains it: bf16/fp32 for lora, nf4 (+ double quant) for qlora;
    safetensors only, no remote code. Used by training and by evaluation alike; `attention` is the
    recipe's training.attention (varlen: kit.model.attention), evaluation always generates with sdpa."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": getattr(torch, recipe.model.dtype), "use_safetensors": True, "trust_remote_code": False,
              "attn_implementation": attention_impl.register() if attention == "varlen" else "sdpa"}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        q = recipe.adapter.quantization
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=q.quant_type, bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype))
    if device.startswith("cuda"):
        kwargs["device_map"] = {"": torch.device(device).index or 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"cannot load the base model: {str(e).splitlines()[0]}", where=str(path),
                               fix="check that the safetensors files are complete (re-download if not)") from None
    if not device.startswith("cuda"):  # on CUDA, device_map already placed it
        model.to(device)
    return model


def load_for_training(path: Path, recipe, method: str, device: str, seed: int):
    """The base model with a fresh, seeded LoRA adapter on it.

    QLoRA is prepared as LoRA is: frozen, non-reentrant checkpointing, and the weights that are not
    quantized (embeddings, lm_head) kept in the recipe's model.dtype. peft's
    prepare_model_for_kbit_training would upcast those to fp32; OLMo's layer norms have no weights, so
    all that upcast does is make the residual stream and attention fp32 and add about 0.8 GiB (the
    planner counts it; `kit qualify` measures it), and packed QLoRA is faster kept bf16. Evaluation
    loads the same bf16 weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    adapter, gc = recipe.adapter, recipe.training.gradient_checkpointing
    model = load_base(path, recipe, method, device, recipe.training.attention)
    model.config.use_cache = False
    model.requires_grad_(False)
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(seed)  # the LoRA init must be seeded, and seeded here
    config = LoraConfig(r=adapter.r, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                        target_modules=sorted(adapter.target_modules), task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(model, config)
    if not device.startswith("cuda"):
        model.to(device)  # the new adapter weights
    if getattr(torch, recipe.model.dtype) != torch.float32:
        # mixed precision: the adapter's weights (and their gradients and optimizer state) stay float32,
        # its matmuls run in the model's dtype under training_precision's autocast. peft would otherwise
        # copy every projection's input to float32 and keep the whole LoRA path in float32.
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    return model


def training_precision(recipe, device: str):
    """The autocast a training forward runs under: the model's dtype when it is narrower than float32
    (the frozen weights are already in it; the float32 adapter weights are cast per matmul), none for a
    float32 model. Gradient checkpointing recomputes under the same autocast."""
    import contextlib

    import torch

    dtype = getattr(torch, recipe.model.dtype)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def forward_loss(model, batch, num_items: int, device: str, logits_chunk: int | None = None):
    """Sum of the batch's token losses divided by `num_items` (the label tokens of the whole step).

    logits_chunk (packed batches): compute the answer positions' logits and loss that many positions
    at a time, each chunk recomputed in the backward pass (checkpointed), so the [answer tokens x
    vocabulary] logits and their gradient never exist at once: memory for a larger pack."""
    import torch

    if isinstance(batch, PackedBatch):
        # where each row starts: varlen attention uses it, sdpa's block mask comes from the position ids
        rows = {"position_ids": batch.position_ids, "cu_seq_lens_q": batch.cu_seq_lens,
                "cu_seq_lens_k": batch.cu_seq_lens, "max_length_q": batch.max_length, "max_length_k": batch.max_length}
        if logits_chunk:
            return _chunked_loss(model, batch, rows, logits_chunk) / num_items
        logits = model(input_ids=batch.input_ids, logits_to_keep=batch.keep, **rows).logits
        # what transformers' causal-LM loss computes, on positions already matched to their labels
        return torch.nn.functional.cross_entropy(logits[0].float(), batch.targets, reduction="sum") / num_items
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                 labels=batch.labels, logits_to_keep=batch.keep,
                 num_items_in_batch=torch.tensor(num_items, device=device)).loss


def _chunked_loss(model, batch, rows: dict, chunk: int):
    import torch
    from torch.utils.checkpoint import checkpoint

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.model(input_ids=batch.input_ids, **rows).last_hidden_state[0, batch.keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        total = total + checkpoint(_loss_of, causal.lm_head, hidden[start:start + chunk],
                                   batch.targets[start:start + chunk], use_reentrant=False)
    return total


def _loss_of(lm_head, hidden, targets):
    import torch

    return torch.nn.functional.cross_entropy(lm_head(hidden).float(), targets, reduction="sum")


def check_base_model(path: Path, target_modules: list[str], where: str) -> None:
    """Before a run directory exists: the model that config.json describes is built on the meta
    device (no weights read, no memory used); its weight files must hold tensors of the shapes it
    needs, and every LoRA target must be a layer of it that LoRA can wrap (matched as peft matches a
    list: the module's name, or its last dotted parts)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    from kit.errors import RecipeError

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except Exception as e:  # any way a config can fail to describe a model
        raise ModelSourceError(f"config.json does not describe a model this kit can build: "
                               f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e) else ''}",
                               where=str(Path(path) / "config.json"),
                               fix="point the recipe at a model folder saved with save_pretrained") from None
    needed = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {}
    for weights in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as f:
            for name in f.keys():
                found[name] = (weights.name, tuple(f.get_slice(name).get_shape()))
    for name, (file, shape) in found.items():
        if name in needed and needed[name] != shape:
            raise ModelSourceError(f"{name} is {list(shape)} in {file}, but config.json needs {list(needed[name])}",
                                   where=str(Path(path) / file), fix="use the weights that belong to this config.json")
    if found and sum(1 for n in needed if n in found) < len(needed) / 2:
        raise ModelSourceError("the weight files hold few of the tensors config.json describes", where=str(path),
                               fix="use the weights that belong to this config.json")
    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)
    modules = dict(model.named_modules())
    wrappable = sorted({name.rsplit(".", 1)[-1] for name, m in modules.items() if isinstance(m, kinds)})
    for key in target_modules:
        matched = [m for name, m in modules.items() if name == key or name.endswith(f".{key}")]
        if not matched or not all(isinstance(m, kinds) for m in matched):
            what = "is not a module of the base model" if not matched else "is not a layer LoRA can wrap"
            raise RecipeError(f"{key!r} {what}", where=where, fix=f"use some of: {', '.join(wrappable)}")
