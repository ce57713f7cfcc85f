"""Every seed and determinism switch, set in one place and recorded.

Order matters: CUBLAS_WORKSPACE_CONFIG, PYTHONHASHSEED and the CPU instruction-set pins must be
in the environment before torch (and cuBLAS, MKL, oneDNN) start, so `kit`'s entry point sets them
and re-executes itself once (see kit.cli.main); `apply` then sets the rest, and must run before
the adapter is created so the LoRA init is seeded.

The CPU pins: PyTorch dispatches its CPU kernels by the instruction-set level the CPU has
(default, AVX2, AVX-512, AMX on x86-64), and MKL and oneDNN pick their own code paths by level
and vendor; each level sums in another order, so the same run gives other bytes on another CPU
(measured on the tiny recipe: three adapters for default, AVX2 and AVX-512 dispatch). On x86-64
the kit pins all three to AVX2 (PORTABLE_X86_ISA), the level nearly every x86-64 CPU made since
2015 has: every such machine then runs the same kernels and gives the same bytes for the same
thread count. A CPU without AVX2 runs at its own level, which the hardware class records
(kit.hardware), so its runs are another class, never a false "not bit-exact". A user's own
setting of one of these variables wins, and is recorded the same way.
"""

from __future__ import annotations

import os
import random

from kit.hardware import PORTABLE_X86_ISA, cpu_isa, is_x86_64

PYTHONHASHSEED = "0"
ENV_SWITCHES = {"PYTHONHASHSEED": PYTHONHASHSEED, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
# torch's ATen dispatch, MKL's conditional numerical reproducibility (AVX2 code path on any
# vendor's CPU, STRICT: the same bits whatever the data's alignment), oneDNN's highest ISA
CPU_ISA_PINS = {"ATEN_CPU_CAPABILITY": PORTABLE_X86_ISA, "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def cpu_isa_pins() -> dict[str, str]:
    """The pins this machine gets (none off x86-64), each unless the user set that variable."""
    return {k: v for k, v in CPU_ISA_PINS.items() if k not in os.environ} if is_x86_64() else {}


def missing_env_switches() -> dict[str, str]:
    return {**{k: v for k, v in ENV_SWITCHES.items() if os.environ.get(k) != v}, **cpu_isa_pins()}


def apply(seed: int, spec) -> dict:
    """Seed every generator and set the recipe's determinism switches (kit.recipe.DeterminismSpec);
    returns what was set."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ENV_SWITCHES["CUBLAS_WORKSPACE_CONFIG"])
    import numpy as np
    import torch

    deterministic_algorithms = spec.deterministic_algorithms
    torch.set_num_threads(spec.cpu_threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.use_deterministic_algorithms(deterministic_algorithms)
    torch.utils.deterministic.fill_uninitialized_memory = spec.fill_uninitialized_memory
    torch.backends.cudnn.deterministic = deterministic_algorithms
    torch.backends.cudnn.benchmark = False
    # TF32 matmuls round differently from one kernel choice to another; keep full fp32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return {
        "seed": seed,
        "cpu_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "fill_uninitialized_memory": bool(torch.utils.deterministic.fill_uninitialized_memory),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
        "cpu_isa": cpu_isa(),
        "cpu_isa_env": {k: os.environ.get(k) for k in CPU_ISA_PINS},
    }


def rng_state() -> dict:
    import torch

    state = {"torch_cpu": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch_cpu"])
    random.setstate(state["python"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
