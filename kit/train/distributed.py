"""Data-parallel training: one process per device, launched by `kit train --nproc N`.

The launcher is torch's elastic agent, driven through its API (no torchrun command line, so no
launcher traceback): it starts N `kit train` worker processes on this machine, or N per node on
several machines (`--nnodes`, `--node-rank`, `--rdzv-endpoint`, static rendezvous). A worker that
fails writes its one-line error to RUN/logs/error.rank<R>.json and exits with the kit's exit code;
the launcher reports the first failing rank's line and code as one process would.

accelerate's PartialState sets up the process group (gloo on CPUs, NCCL on GPUs). Every rank
computes the whole step's schedule itself and takes its share of the step's ROWS (split_rows:
longest first, dealt in a snake so tokens balance; the same count on every rank), then cuts them
into micro-batches by the recipe's batching. The loss of each micro-batch is already divided by
the label tokens of the WHOLE step, so summing the gradients over ranks (one all-reduce of one flat
buffer, in a fixed order) gives exactly the gradient of the recipe's effective batch. World size is
part of the hardware class: the same recipe on 1 and on 2 processes gives different bytes (another
summation order), never silently.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from kit import io
from kit.errors import KitError, RecipeError

WORKER_ENV = "KWANZAA_KIT_WORKER"
ERROR_FILE = "logs/error.rank{rank}.json"


@dataclass(frozen=True)
class Dist:
    world: int
    rank: int
    device: str
    nodes: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_grads(self, params) -> None:
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def sum_scalar(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def gather(self, obj) -> list:
        """obj of every rank, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def split_rows(rows: list, rank: int, world: int) -> list:
    """This rank's share of one optimizer step's rows: sorted longest first, dealt 0..w-1, w-1..0,
    so every rank gets the same number of rows (give or take one in a short last step) and about
    the same tokens; returned in schedule order. One process keeps the step as it is."""
    if world == 1:
        return rows
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i].input_ids), rows[i].row_id))
    mine = [i for turn, i in enumerate(order)
            if (turn % world if (turn // world) % 2 == 0 else world - 1 - turn % world) == rank]
    return [rows[i] for i in sorted(mine)]


def check_split(rows_per_step: int, world: int, where: str) -> None:
    """Refuse a process count that cannot share a step's rows evenly (before anything starts)."""
    if world > 1 and rows_per_step % world:
        fits = [n for n in range(2, min(rows_per_step, 64) + 1) if rows_per_step % n == 0]
        raise RecipeError(f"{rows_per_step} rows per optimizer step (micro_batch_size x grad_accum_steps) do not "
                          f"split evenly over {world} processes", where=where,
                          fix=f"use --nproc {' or '.join(map(str, fits[:4])) or 1}, or change the recipe's batch")


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1" and int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Dist:
    """This process's place: a single process, or a rank set up by the launcher."""
    import torch

    if not is_worker():
        return Dist(1, 0, "cuda:0" if torch.cuda.is_available() else "cpu")
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    device = f"cuda:{state.local_process_index}" if torch.cuda.is_available() else "cpu"
    if torch.cuda.is_available():
        torch.cuda.set_device(state.local_process_index)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or state.num_processes)
    return Dist(state.num_processes, state.process_index, device, max(1, state.num_processes // per_node))


# ---- the worker's side -----------------------------------------------------------------------

def worker_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def write_worker_error(run: Path, exit_code: int, message: str) -> None:
    """What the launcher reports for this rank: its exit code and its one line."""
    io.atomic_write_json(Path(run) / ERROR_FILE.format(rank=worker_rank()),
                         {"rank": worker_rank(), "exit_code": exit_code, "message": message})


# ---- the launcher's side ---------------------------------------------------------------------

class WorkerFailed(KitError):
    """A worker rank failed; its exit code and message are the run's."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def launch(nproc: int, kit_args: list[str], run: Path, nnodes: int = 1, node_rank: int = 0,
           rdzv_endpoint: str | None = None, rdzv_timeout: int = 900) -> None:
    """Run `python -m kit ARGS` in nproc worker processes on this node (of nnodes); raises
    WorkerFailed with the first failing rank's own line and exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # the agent's own logging says "failed (exitcode: 2)" with a traceback: the kit says it once
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ[WORKER_ENV] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if nnodes > 1:
        if not rdzv_endpoint:
            raise KitError("several nodes need a rendezvous endpoint", where="--nnodes",
                           fix="pass --rdzv-endpoint HOST:PORT, the same on every node (node 0's address)")
        rdzv = {"rdzv_backend": "static", "rdzv_endpoint": rdzv_endpoint,
                "rdzv_configs": {"rank": node_rank, "timeout": rdzv_timeout}, "run_id": "kit-" + rdzv_endpoint}
    else:
        rdzv = {"rdzv_backend": "c10d", "rdzv_endpoint": "localhost:0", "rdzv_configs": {},
                "run_id": uuid.uuid4().hex}
    config = LaunchConfig(min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc, max_restarts=0,
                          monitor_interval=0.1, **rdzv)
    try:
        elastic_launch(config, sys.executable)("-m", "kit", *kit_args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        raise _worker_failure(run, rank, failure.exitcode) from None
    except Exception as e:  # the nodes never met (torch's message holds C++ frames: its first line is enough)
        if nnodes == 1:
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise WorkerFailed(f"Error: --rdzv-endpoint: node {node_rank} did not meet the other {nnodes - 1} node(s) at "
                           f"{rdzv_endpoint} within {rdzv_timeout} s ({type(e).__name__}: {first}) Fix: start every "
                           "node with the same --nnodes and --rdzv-endpoint (node 0's address and a free port), "
                           "or give them longer with --rdzv-timeout", 2) from None


def _worker_failure(run: Path, rank: int, exit_code: int) -> WorkerFailed:
    path = Path(run) / ERROR_FILE.format(rank=rank)
    try:
        record = json.loads(path.read_text("utf-8"))
        return WorkerFailed(str(record["message"]), int(record["exit_code"]))
    except (OSError, ValueError, KeyError, TypeError):
        log = Path(run) / ("logs/kit.log" if rank == 0 else f"logs/kit.rank{rank}.log")
        return WorkerFailed(f"{run}: rank {rank} stopped with exit code {exit_code} before it could say why. "
                            f"Fix: see {log}", exit_code if exit_code > 0 else 1)
