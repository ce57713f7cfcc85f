"""Training data: read the chat JSONL, check it is the pinned file, and encode rows.

Each row is rendered with the chat template; the loss is taken on the assistant's tokens only
(the answer_json object and the end-of-text token), never on the system or user turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit import io
from kit.errors import DataError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedRow:
    row_id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def read_rows(path: Path) -> list[dict]:
    """Rows of a chat JSONL file; a row that is not a JSON object with messages is refused."""
    rows = []
    for where, row in io.read_jsonl(path, DataError, "data file",
                                    fix="each line must be one JSON object; run `kit data check` on the file"):
        _check_messages(row, where)
        row.setdefault("id", f"{Path(path).stem}-{where.rsplit(':', 1)[1]}")
        rows.append(row)
    if not rows:
        raise DataError("data file has no rows", where=str(path), fix="point the recipe at a non-empty JSONL file")
    return rows


def _check_messages(row, where: str) -> None:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DataError("row has no `messages` list", where=where, fix='each row needs {"messages": [...]}')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in (
                "system", "user", "assistant"):
            raise DataError(f"messages[{i}] needs a role (system/user/assistant) and string content",
                            where=where, fix="fix that message")
    if messages[-1]["role"] != "assistant":
        raise DataError("the last message must be the assistant's answer", where=where,
                        fix="end each row with the assistant turn (the answer_json)")


def encode_messages(tokenizer, messages: list[dict], row_id: str = "") -> EncodedRow:
    """Prompt = every turn but the last, rendered with the generation prompt; completion = the
    assistant's content + EOS. Tokenized separately and joined, so the label mask is exact."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    completion = messages[-1]["content"] + tokenizer.eos_token
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return EncodedRow(row_id, tuple(prompt_ids + completion_ids),
                      tuple([IGNORE_INDEX] * len(prompt_ids) + completion_ids))


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """The generation prompt of a row (all turns before the assistant's), for evaluation."""
    turns = messages[:-1] if messages[-1]["role"] == "assistant" else messages
    prompt = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def encode_file(tokenizer, path: Path, max_seq_len: int, max_rows: int | None = None) -> list[EncodedRow]:
    rows = read_rows(path)[:max_rows] if max_rows else read_rows(path)
    encoded = []
    for line_no, row in enumerate(rows, start=1):
        enc = encode_messages(tokenizer, row["messages"], str(row["id"]))
        if len(enc.input_ids) > max_seq_len:
            raise DataError(f"row {row['id']} is {len(enc.input_ids)} tokens, longer than max_seq_len "
                            f"{max_seq_len}", where=f"{path}:{line_no}",
                            fix="shorten the row or raise data.max_seq_len in the recipe (rows are never truncated)")
        encoded.append(enc)
    return encoded


def check_pinned(path: Path, expected_sha256: str, allow_change: bool, key: str) -> str:
    """The file's sha256; refused when it is not the one the recipe pins (unless allowed)."""
    if not path.is_file():
        state = "is a directory, not a file" if path.is_dir() else "is not a regular file" if path.exists() \
            else "not found"
        raise DataError(f"data file {state}", where=str(path), fix=f"check {key.split('_')[0]} in the recipe")
    actual = io.sha256_file(path)
    if actual != expected_sha256 and not allow_change:
        raise DataError(f"{path.name} has sha256 {actual[:12]}..., the recipe pins {expected_sha256[:12]}... "
                        f"({key})", where=str(path),
                        fix="use the pinned file, update the recipe's hash on purpose, or pass --allow-data-change "
                            "(recorded in the manifest)")
    return actual
