"""What each optimizer step trains on: the seeded schedule of rows, and how a step's rows are cut
into micro-batches (padded, length-grouped, token-budget or packed)."""

from __future__ import annotations

import hashlib

from kit.data.rows import EncodedRow


def schedule(n_rows: int, seed: int, epochs: int, rows_per_step: int, max_steps: int | None) -> list[tuple[int, list[int]]]:
    """(epoch, row indices) of every optimizer step, from a seeded generator per epoch."""
    import torch

    steps = []
    for epoch in range(epochs):
        order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 1009 + epoch)).tolist()
        for start in range(0, n_rows, rows_per_step):
            steps.append((epoch, order[start:start + rows_per_step]))
    return steps[:max_steps] if max_steps else steps


def micro_batches(rows: list[EncodedRow], micro_batch_size: int, batching: str,
                  token_budget: int | None = None) -> list[list[EncodedRow]]:
    """Cut one optimizer step's rows into micro-batches (the step's rows and loss are unchanged).

    padded: in schedule order, micro_batch_size rows each.
    length_grouped: sorted by length first, so rows of similar length share a micro-batch.
    token_budget: sorted by length, then as many rows (up to micro_batch_size) as fit in
      token_budget padded tokens: short rows travel together while no micro-batch holds more
      tokens (so no more activation memory) than one full-length row.
    packed: first-fit decreasing into sequences of at most token_budget real tokens (and at most
      micro_batch_size rows), to be concatenated without padding (kit.train.collate_packed): a
      short row rides along with a long one; a row longer than token_budget travels alone.
    """
    if batching == "packed":
        bins: list[list[EncodedRow]] = []
        for r in sorted(rows, key=lambda r: (-len(r.input_ids), r.row_id)):
            fit = next((b for b in bins if len(b) < micro_batch_size
                        and sum(len(x.input_ids) for x in b) + len(r.input_ids) <= token_budget), None)
            if fit is None:
                bins.append([r])
            else:
                fit.append(r)
        return bins
    if batching in ("length_grouped", "token_budget"):
        rows = sorted(rows, key=lambda r: (len(r.input_ids), r.row_id))
    if batching != "token_budget":
        return [rows[i:i + micro_batch_size] for i in range(0, len(rows), micro_batch_size)]
    out: list[list[EncodedRow]] = []
    for r in rows:  # ascending length: the newest row is the longest of its micro-batch
        if out and len(out[-1]) < micro_batch_size and len(r.input_ids) * (len(out[-1]) + 1) <= token_budget:
            out[-1].append(r)
        else:
            out.append([r])
    return out


def batch_sha256(rows: list[EncodedRow]) -> str:
    import numpy as np

    h = hashlib.sha256()
    for r in rows:
        h.update(r.row_id.encode() + b"\0")
        h.update(np.asarray(r.input_ids, dtype=np.int64).tobytes())
        h.update(np.asarray(r.labels, dtype=np.int64).tobytes())
    return h.hexdigest()
