"""OLMo architecture defaults without importing transformers (for fast planning)."""

from __future__ import annotations


def olmo_defaults() -> dict:
    """transformers' default OlmoConfig, which is OLMo-7B (checked against transformers in tests)."""
    return {"vocab_size": 50304, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 2048,
            "tie_word_embeddings": False}
