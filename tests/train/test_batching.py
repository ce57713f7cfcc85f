"""Pure parts of the spine: label masking, data order, canonical hashes, lazy imports."""

from __future__ import annotations

import subprocess
import sys

from kit.data.rows import IGNORE_INDEX, EncodedRow, encode_messages
from kit.train.batching import batch_sha256, micro_batches, schedule

MESSAGES = [{"role": "system", "content": "You are an educator."},
            {"role": "user", "content": "Retrieved Documents:\n[1] A\n\nQuery: When is Kwanzaa?"},
            {"role": "assistant", "content": '{"answer": {"text": "Dec 26 to Jan 1 [1]"}}'}]


def test_loss_is_taken_on_the_assistant_tokens_only():
    from kit.data.tokenizer import load_default_tokenizer

    tok = load_default_tokenizer()
    row = encode_messages(tok, MESSAGES)
    learned = [t for t, label in zip(row.input_ids, row.labels) if label != IGNORE_INDEX]
    assert tok.decode(learned) == MESSAGES[-1]["content"] + tok.eos_token
    prompt = tok.decode([t for t, label in zip(row.input_ids, row.labels) if label == IGNORE_INDEX])
    assert prompt.endswith("<|assistant|>\n") and "<|system|>\nYou are an educator." in prompt


def test_data_order_follows_the_seed():
    assert schedule(10, 1, 2, 3, None) == schedule(10, 1, 2, 3, None)
    assert schedule(10, 1, 2, 3, None) != schedule(10, 2, 2, 3, None)
    steps = schedule(10, 1, 2, 3, None)
    assert len(steps) == 8 and sorted(i for e, idx in steps if e == 0 for i in idx) == list(range(10))
    assert len(schedule(10, 1, 2, 3, 5)) == 5


def test_length_grouping_keeps_the_rows_of_a_step():
    rows = [EncodedRow(str(i), tuple(range(n)), tuple(range(n))) for i, n in enumerate([5, 2, 9, 3])]
    grouped = micro_batches(rows, 2, "length_grouped")
    assert [len(r.input_ids) for mb in grouped for r in mb] == [2, 3, 5, 9]
    assert batch_sha256(rows) != batch_sha256(list(reversed(rows)))


def test_cli_help_imports_no_heavy_library():
    code = ("import sys; from kit.cli import cli; "
            "print(sorted(m for m in ('torch','transformers','peft','numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_token_budget_batches_short_rows_together_within_the_budget():
    rows = [EncodedRow(str(i), tuple(range(n)), tuple(range(n))) for i, n in enumerate([500, 2000, 600, 700, 1000])]
    batches = micro_batches(rows, 8, "token_budget", 2048)
    assert sorted(r.row_id for mb in batches for r in mb) == sorted(r.row_id for r in rows)
    assert all(len(mb) * max(len(r.input_ids) for r in mb) <= 2048 for mb in batches)
    assert [len(mb) for mb in batches] == [2, 2, 1]  # (500, 600), (700, 1000), (2000)
