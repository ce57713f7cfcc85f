"""Attention over packed sequences by document: `training.attention: varlen`.

A packed micro-batch is several rows laid end to end in one sequence. transformers' sdpa path keeps
attention inside each row with a block-diagonal mask over the whole pack: time and memory grow with
the square of the pack, and in deterministic mode the masked kernels are the slow ones. `varlen`
attends within each row only, given where the rows start (cumulative lengths, computed once on the
host by kit.data.batches.collate_packed): on a GPU with PyTorch's variable-length flash attention
(`torch.nn.attention.varlen.varlen_attn`, deterministic under `torch.use_deterministic_algorithms`),
elsewhere one causal sdpa call per row. Registered with transformers' attention and mask interfaces
under the name below, so the model code is unchanged.
"""

from __future__ import annotations

NAME = "kit_varlen"


def register() -> str:
    """Make `attn_implementation="kit_varlen"` known to transformers (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, flash_attention_mask)  # no 4D mask: None when unpadded
    return NAME


def _causal(varlen) -> dict:
    """Causal masking in either form torch's varlen_attn has taken (is_causal, or a window (-1, 0))."""
    import inspect

    return {"window_size": (-1, 0)} if "window_size" in inspect.signature(varlen).parameters else {"is_causal": True}


def _flash_varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                     cu_seq_lens_q=None, max_length_q=None, **kwargs):
    """transformers attention function: query/key/value (1, heads, tokens, head_dim) of one packed
    sequence; returns (1, tokens, heads, head_dim). Without cu_seq_lens_q the whole sequence is one row."""
    import torch

    if query.shape[0] != 1 or attention_mask is not None:
        raise ValueError("kit_varlen attention takes one packed, unpadded sequence (batching: packed)")
    if dropout:
        raise ValueError("kit_varlen attention has no attention dropout")
    tokens = query.shape[2]
    if cu_seq_lens_q is None:
        cu_seq_lens_q = torch.tensor([0, tokens], dtype=torch.int32, device=query.device)
        max_length_q = tokens
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (tokens, heads, head_dim)
    varlen = _flash_varlen() if query.is_cuda and key.shape[1] == query.shape[1] else None
    if varlen is not None:
        out = varlen(q.contiguous(), k.contiguous(), v.contiguous(), cu_seq_lens_q, cu_seq_lens_q, int(max_length_q),
                     int(max_length_q), scale=scaling, **_causal(varlen))
        return out[None], None
    bounds = cu_seq_lens_q.tolist()
    parts = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        parts.append(torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], is_causal=True, scale=scaling,
            enable_gqa=key.shape[1] != query.shape[1]))
    return torch.cat(parts, dim=2).transpose(1, 2), None
