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
- Data-parallel when several processes run (kit.train.distributed): each rank takes its equal share
  of the step's rows (split_rows) and cuts it into micro-batches; the effective batch is the recipe's.
- Checkpoints every N steps (kit.checkpoint), resumable to the same final bytes; SIGINT/SIGTERM
  save one and exit.
- A non-finite loss or gradient norm stops the run (status `failed`) before the optimizer takes
  the step: NaN weights are never trained on, saved or reported as complete.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kit import determinism, io, rundir
from kit.data.batches import collate, collate_packed
from kit.data.rows import IGNORE_INDEX, EncodedRow
from kit.errors import TrainingError
from kit.model.load import forward_loss, training_precision
from kit.train import checkpoint
from kit.train.batching import batch_sha256, micro_batches, schedule
from kit.train.distributed import Dist, split_rows

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


    dist = dist or Dist(1, 0, device)
    t = recipe.training
    world, rank = dist.world, dist.rank
    plan = schedule(len(rows), recipe.seed, t.epochs, t.micro_batch_size * t.grad_accum_steps, t.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, t)
    scheduler = make_scheduler(optimizer, t, len(plan))
    log_path = run / rundir.TRAIN_LOG
    if rank == 0:  # a kill (or a full disk) in the middle of a line leaves half of it: drop it
        for path in (log_path, run / rundir.TIMING):
            rundir.drop_partial_line(path)
    dist.barrier()
    start, records = checkpoint.restore_latest(run, model, optimizer, scheduler, rank)
    if start:
        log.info("resumed from the checkpoint of step %d", start)
    dist.barrier()  # every rank has read the log before rank 0 cuts it
    if rank == 0:
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
            mine = micro_batches(split_rows(step_rows, rank, world), t.micro_batch_size, t.batching,
                                 t.token_budget(recipe.data.max_seq_len))
            for mb in mine:
                batch = collate_packed(mb, device) if t.batching == "packed" else collate(mb, pad_id, device)
                padded += batch.input_ids.numel()
                # each micro-batch's loss is its share of the step: sum over its tokens / step tokens
                with training_precision(recipe, device):
                    loss = forward_loss(model, batch, label_tokens, device, t.logits_chunk)
                loss.backward()
                loss_sum += loss.detach().double()
            dist.all_reduce_grads(params)
            loss_sum = dist.sum_scalar(float(loss_sum))
            padded = int(dist.sum_scalar(float(padded)))  # every rank's micro-batches: the step's
            grad_norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            if not (math.isfinite(loss_sum) and math.isfinite(float(grad_norm))):  # the same on every rank
                raise TrainingError(f"the loss or gradient became non-finite at step {step} (loss {loss_sum}, "
                                    f"grad-norm {float(grad_norm)}): training stopped, nothing was saved from it",
                                    where=str(run / rundir.LOG),
                                    fix="lower training.learning_rate (or check the data and the base model's "
                                        "weights); the run's log is kept")
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
                io.append_jsonl(log_path, rec.as_log())
                io.append_jsonl(run / rundir.TIMING, _timing(step, began, padded, len(mine), device))
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
    steps = [record["step"] for record in rundir.read_step_log(path, timing=path.name == rundir.TIMING)]
    lines = [line for line in path.read_text("utf-8").splitlines() if line.strip()]
    kept = [line for line, step in zip(lines, steps) if step <= keep_through_step]
    io.atomic_write_text(path, "".join(line + "\n" for line in kept))
