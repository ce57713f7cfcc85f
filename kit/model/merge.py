"""The adapter folded into the base weights for generation (`evaluation.merge_adapter`), and the
generation batch for `evaluation.batch_size: auto`.

A decoding step's time on a GPU is kernel launches, not FLOPs: an unmerged adapter costs three
matmuls per projection (and, for QLoRA, a dequantization of every 4-bit weight at every step).
- LoRA: peft's merge_and_unload (W + s·BA in the model's dtype).
- QLoRA: each 4-bit weight is dequantized to the compute dtype once and s·BA added: the weights the
  adapter was trained against, in bf16 (peft's own 4-bit merge would quantize the sum again, lossy).
  Only when the card's memory holds the bf16 weights; otherwise the adapter stays unmerged.
Both decisions use the device's TOTAL memory (part of its model, so of the hardware class), never
the free memory of the moment: the same class generates with the same settings, so the same bytes.
"""

from __future__ import annotations

from kit.hardware import GiB
from kit.plan import Architecture

MARGIN = 0.10  # of the card's memory, kept for the CUDA context, fragmentation and the prefill


def bf16_weights_gib(recipe) -> float:
    arch = Architecture.from_config(recipe.model.config)
    return (arch.linear_params() + arch.embedding_params()) * 2 / GiB


def kv_gib_per_row(recipe, tokens: int) -> float:
    """The KV cache of one row of `tokens` tokens (keys and values, every layer, bf16)."""
    arch = Architecture.from_config(recipe.model.config)
    return 2 * arch.layers * arch.kv_dim * tokens * 2 / GiB


def merge_how(recipe, strategy: str, device_total_gib: float | None, row_tokens: int) -> str | None:
    """'lora', 'nf4-dequantized' or None (not merged), for this recipe on a card of this size
    (None: no GPU, where memory is the host's)."""
    if not recipe.evaluation.merge_adapter:
        return None
    if strategy == "lora":
        return "lora"
    fits = device_total_gib is None or (bf16_weights_gib(recipe) + kv_gib_per_row(recipe, row_tokens)
                                        <= device_total_gib * (1 - MARGIN))
    return "nf4-dequantized" if fits else None


def auto_batch_size(recipe, weights_gib: float, device_total_gib: float | None, row_tokens: int, rows: int) -> int:
    """The most rows whose KV caches fit beside the weights (at least 1, at most every row); 8 on a CPU."""
    if device_total_gib is None:
        return min(8, rows)
    room = device_total_gib * (1 - MARGIN) - weights_gib
    return max(1, min(rows, int(room // kv_gib_per_row(recipe, row_tokens))))


def merge(net, how: str):
    """The PeftModel `net` with its adapter folded in (see the module docstring); a plain model."""
    if how == "lora":
        return net.merge_and_unload()
    import torch
    from bitsandbytes.functional import dequantize_4bit
    from peft.tuners.lora import LoraLayer

    model = net.get_base_model()
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        base = module.get_base_layer()
        weight = dequantize_4bit(base.weight.data, base.weight.quant_state).to(base.compute_dtype)
        weight += module.get_delta_weight("default").to(weight.dtype)
        plain = torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                                dtype=weight.dtype, device=weight.device)
        plain.weight.data.copy_(weight)
        if base.bias is not None:
            plain.bias.data.copy_(base.bias.data)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, plain)
        del weight
    return model
