"""Training: one recipe in, one run directory out, the same bytes every time.

Features, each with its trade-off:
- Seeded everything (kit.determinism) before the adapter is created; deterministic kernels on
  (measured on an H100: 29-50% slower per step, and the only way to get bit-identical adapters).
- Loss on the assistant's tokens only, normalised over ALL label tokens of an optimizer step
  (`num_items_in_batch`), so micro-batch size, padding and the number of ranks do not change it;
  logits are computed for the answer's positions only (`logits_to_keep`), not the prompt's.
- Data order from a seeded generator per epoch; every step logs the sha256 of its token ids, so
  a different order is visible, not silent.
- `length_grouped` / `token_budget` batching sort the rows *within* one optimizer step by length
  before cutting micro-batches: less padding, the same samples per step, the same normalisation;
  `token_budget` caps a micro-batch at max_seq_len padded tokens, so peak memory does not grow.
- `packed` batching concatenates a step's rows into sequences of <= `micro_batch_tokens` tokens
  (default max_seq_len) with no padding, attention kept within each row (position ids restart):
  fewer micro-batches per step, which is what pays on a host-bound GPU step (benchmarks/README.md).
- Data-parallel when several processes run (kit.distributed): each rank takes every
  world_size-th micro-batch of the step; the effective batch is the recipe's.
- Checkpoints every N steps (kit.checkpoint), resumable to the same final bytes; SIGINT/SIGTERM
  save one and exit.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kit import checkpoint, determinism, rundir
from kit.data import IGNORE_INDEX, EncodedRow

log = logging.getLogger("kit.train")


@dataclass(frozen=True)
class StepRecord:
    step: int
    epoch: int
    loss: float
    grad_norm: float
    lr: float
    rows: int
    label_tokens: int
    tokens: int
    batch_sha256: str

    def as_log(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "loss": self.loss, "loss_hex": float(self.loss).hex(),
                "grad_norm": self.grad_norm, "grad_norm_hex": float(self.grad_norm).hex(), "lr": self.lr,
                "rows": self.rows, "label_tokens": self.label_tokens, "tokens": self.tokens,
                "batch_sha256": self.batch_sha256}


class Interrupted(Exception):
    def __init__(self, step: int, signum: int):
        super().__init__(f"stopped by signal {signum} after step {step}")
        self.step = step
        self.signum = signum


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


def collate_packed(rows: list[EncodedRow], device: str) -> PackedBatch:
    """One sequence of the rows, for `batching: packed` (transformers' packed-sequence format: no
    attention mask, position ids restarting at each row, so sdpa masks attention across rows)."""
    import torch

    ids = torch.tensor([t for r in rows for t in r.input_ids], dtype=torch.long)
    labels = torch.tensor([t for r in rows for t in r.labels], dtype=torch.long)
    positions = torch.cat([torch.arange(len(r.input_ids)) for r in rows])
    # a row's first label follows its prompt, so no position predicts across a row boundary
    keep = torch.nonzero(labels[1:] != IGNORE_INDEX).flatten()
    return PackedBatch(ids[None].to(device), positions[None].to(device), keep.to(device), labels[keep + 1].to(device))


def forward_loss(model, batch, num_items: int, device: str):
    """Sum of the batch's token losses divided by `num_items` (the label tokens of the whole step)."""
    import torch

    if isinstance(batch, PackedBatch):
        logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, logits_to_keep=batch.keep).logits
        # what transformers' causal-LM loss computes, on positions already matched to their labels
        return torch.nn.functional.cross_entropy(logits[0].float(), batch.targets, reduction="sum") / num_items
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                 labels=batch.labels, logits_to_keep=batch.keep,
                 num_items_in_batch=torch.tensor(num_items, device=device)).loss


def make_optimizer(params, training):
    import torch

    if training.optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=training.learning_rate, weight_decay=training.weight_decay)
    if training.optimizer == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=training.learning_rate, weight_decay=training.weight_decay)
    # one fused kernel for all tensors, or the plain per-tensor loop (never the device-dependent default)
    fused = training.optimizer == "adamw_torch_fused"
    return torch.optim.AdamW(params, lr=training.learning_rate, weight_decay=training.weight_decay,
                             foreach=False, fused=fused or None)


def make_scheduler(optimizer, training, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(training.lr_scheduler, optimizer, num_warmup_steps=math.ceil(training.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step, with a checkpoint."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)


def run_loop(model, rows: list[EncodedRow], recipe, run: Path, device: str, pad_id: int, dist=None,
             on_step: Callable[[StepRecord, int], None] | None = None) -> list[dict]:
    """Train `model` in place over the recipe's schedule; resumes from the run's last checkpoint."""
    import torch

    from kit.distributed import Dist

    dist = dist or Dist(1, 0, device)
    t = recipe.training
    world, rank = dist.world, dist.rank
    plan = schedule(len(rows), recipe.seed, t.epochs, t.micro_batch_size * t.grad_accum_steps, t.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, t)
    scheduler = make_scheduler(optimizer, t, len(plan))
    start, records = checkpoint.restore_latest(run, model, optimizer, scheduler, rank)
    if start:
        log.info("resumed from the checkpoint of step %d", start)
    log_path = run / rundir.TRAIN_LOG
    for path in (log_path, run / rundir.TIMING):
        _truncate_log(path, start)
    if device.startswith("cuda"):  # the steps' peak memory, as kit qualify and the planner count it
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model.train()
    with _StopFlag() as stop:
        for step in range(start + 1, len(plan) + 1):
            epoch, indices = plan[step - 1]
            step_rows = [rows[i] for i in indices]
            label_tokens = sum(sum(1 for x in r.labels[1:] if x != IGNORE_INDEX) for r in step_rows)
            began = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync per micro-batch
            padded = 0
            mine = micro_batches(step_rows, t.micro_batch_size, t.batching,
                                 t.micro_batch_tokens or recipe.data.max_seq_len)[rank::world]
            for mb in mine:
                batch = collate_packed(mb, device) if t.batching == "packed" else collate(mb, pad_id, device)
                padded += batch.input_ids.numel()
                # each micro-batch's loss is its share of the step: sum over its tokens / step tokens
                loss = forward_loss(model, batch, label_tokens, device)
                loss.backward()
                loss_sum += loss.detach().double()
            dist.all_reduce_grads(params)
            loss_sum = dist.sum_scalar(float(loss_sum))
            grad_norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            rec = StepRecord(step=step, epoch=epoch, loss=float(loss_sum), grad_norm=float(grad_norm), lr=float(lr),
                             rows=len(step_rows), label_tokens=label_tokens,
                             tokens=sum(len(r.input_ids) for r in step_rows),
                             batch_sha256=batch_sha256(step_rows))
            records.append(rec.as_log())
            if rank == 0:
                rundir.append_jsonl(log_path, rec.as_log())
                rundir.append_jsonl(run / rundir.TIMING, _timing(step, began, padded, len(mine), device))
            if on_step:
                on_step(rec, len(plan))
            last = step == len(plan)
            due = t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0
            stopping = dist.sum_scalar(float(bool(stop.signum))) > 0  # every rank stops at the same step
            if (due or stopping) and not last:
                states = dist.gather(determinism.rng_state())
                if rank == 0:
                    checkpoint.save(run, step, model, optimizer, scheduler, states)
                dist.barrier()
            if stopping and not last:
                raise Interrupted(step, stop.signum or signal.SIGTERM)
    return records


def speed_summary(run: Path, n_params: int, hardware: dict) -> dict:
    """Seconds, tokens/s, MFU and peak memory of the run's training steps (timing.jsonl).

    Tokens are the real (unpadded) tokens of each step; the first step (kernel selection, the
    allocator filling up) is left out of the rate when there are others. After a resume the
    rate mixes two processes' steps (the resumed one's first step included).
    """
    from kit.qualify import estimate_mfu, peak_flops_for

    gpu_name = hardware["device_name"] if hardware["device_type"] == "cuda" else None
    timing = {t["step"]: t for t in rundir.read_jsonl(run / rundir.TIMING)}
    tokens = {r["step"]: r["tokens"] for r in rundir.read_jsonl(run / rundir.TRAIN_LOG)}
    steps = sorted(set(timing) & set(tokens))
    if not steps:
        return {}
    rated = steps[1:] or steps
    seconds = sum(timing[s]["seconds"] for s in rated)
    rate = sum(tokens[s] for s in rated) / seconds if seconds > 0 else None
    peak = peak_flops_for(gpu_name) if gpu_name else None
    padded = sum(timing[s]["padded_tokens"] for s in steps)
    out = {"loop_seconds": round(sum(timing[s]["seconds"] for s in steps), 3),
           "tokens_per_s": round(rate, 1) if rate else None, "rate_steps": f"{rated[0]}-{rated[-1]}",
           "padding_waste": round(1 - sum(tokens[s] for s in steps) / padded, 4) if padded else None,
           "mfu": round(estimate_mfu(rate, n_params, peak), 4) if rate and peak else None,
           "mfu_convention": "6N per real token; N = all parameters; recomputation and attention not counted",
           "gpu": gpu_name, "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF") if gpu_name else None}
    for key in ("peak_reserved_gib", "peak_allocated_gib"):
        if any(key in timing[s] for s in steps):
            out[key] = max(timing[s].get(key, 0.0) for s in steps)
    return out


def _timing(step: int, began: float, padded: int, micro: int, device: str) -> dict:
    """Seconds and memory of one step (kept apart from the fingerprinted log: not deterministic)."""
    import torch

    record = {"step": step, "padded_tokens": padded, "micro_batches": micro}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        record["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
        record["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    record["seconds"] = time.perf_counter() - began
    return record


def _truncate_log(path: Path, keep_through_step: int) -> None:
    """On resume, drop log lines of steps after the checkpoint (they will be redone)."""
    if not path.exists():
        return
    import json

    kept = [line for line in path.read_text("utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= keep_through_step]
    rundir.atomic_write_text(path, "".join(line + "\n" for line in kept))
