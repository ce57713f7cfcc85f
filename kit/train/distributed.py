"""Data-parallel training: one process per device, launched by `kit train --nproc N`.

accelerate's PartialState sets up the process group (gloo on CPUs, NCCL on GPUs). Every rank
computes the whole step's schedule itself and trains on every world_size-th micro-batch; the
loss of each micro-batch is already divided by the label tokens of the WHOLE step, so summing the
gradients over ranks (one all-reduce of one flat buffer, in a fixed order) gives exactly the
gradient of the recipe's effective batch. World size is part of the hardware class: the same
recipe on 1 and on 2 processes gives different bytes (another summation order), never silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

WORKER_ENV = "KWANZAA_KIT_WORKER"


@dataclass(frozen=True)
class Dist:
    world: int
    rank: int
    device: str

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
    return Dist(state.num_processes, state.process_index, device)


def launch(nproc: int, kit_args: list[str]) -> int:
    """Run `kit ARGS` in nproc worker processes (torchrun); returns the exit code."""
    import subprocess
    import sys

    env = {**os.environ, WORKER_ENV: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "kit", *kit_args]
    return subprocess.run(cmd, env=env, check=False).returncode
