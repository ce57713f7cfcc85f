"""Tensors of a micro-batch: rows padded on the left, or packed into one sequence.

Shared by training and evaluation (the eval loss is computed on the same batches), so the two
always see the same positions, masks and labels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from kit.data.rows import IGNORE_INDEX, EncodedRow


@dataclass(frozen=True)
class Batch:
    input_ids: object
    attention_mask: object
    position_ids: object
    labels: object  # only the last `keep` positions: the ones whose logits are computed
    keep: int


def collate(rows: list[EncodedRow], pad_id: int, device: str) -> Batch:
    """Left-padded batch with explicit position ids (each row counts from 0, as if unpadded).

    Only the tail of each row holds labels (the assistant's answer), so the model computes logits
    for the last `keep` positions alone (transformers' `logits_to_keep`): the 50k-vocabulary
    projection and its cross-entropy skip the prompt, whose labels are ignored anyway.
    """
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    keep = 1
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, width - n:] = torch.tensor(r.input_ids)
        labels[i, width - n:] = torch.tensor(r.labels)
        mask[i, width - n:] = 1
        positions[i, width - n:] = torch.arange(n)
        first = next((j for j, x in enumerate(r.labels) if x != IGNORE_INDEX), n)
        keep = max(keep, n - first + 1)  # + the token whose logits predict the first label
    keep = min(keep, width)
    return Batch(ids.to(device), mask.to(device), positions.to(device), labels[:, width - keep:].to(device), keep)


@dataclass(frozen=True)
class PackedBatch:
    input_ids: object  # (1, total tokens): the rows one after another, no padding
    position_ids: object  # each row counts from 0: transformers keeps attention within each row
    keep: object  # positions whose next token is a label: the only logits computed
    targets: object  # the label each kept position predicts
    cu_seq_lens: object  # int32 (rows + 1,): where each row starts, then the total (varlen attention)
    max_length: int  # the longest row, in tokens


def collate_packed(rows: list[EncodedRow], device: str) -> PackedBatch:
    """One sequence of the rows, for `batching: packed` (transformers' packed-sequence format: no
    attention mask, position ids restarting at each row, so sdpa masks attention across rows)."""
    import torch

    ids = torch.tensor([t for r in rows for t in r.input_ids], dtype=torch.long)
    labels = torch.tensor([t for r in rows for t in r.labels], dtype=torch.long)
    positions = torch.cat([torch.arange(len(r.input_ids)) for r in rows])
    # a row's first label follows its prompt, so no position predicts across a row boundary
    keep = torch.nonzero(labels[1:] != IGNORE_INDEX).flatten()
    lengths = [len(r.input_ids) for r in rows]
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    return PackedBatch(ids[None].to(device), positions[None].to(device), keep.to(device), labels[keep + 1].to(device),
                       cu.to(device), max(lengths))
