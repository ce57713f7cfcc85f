"""Every seed and determinism switch, set in one place and recorded.

Order matters: CUBLAS_WORKSPACE_CONFIG and PYTHONHASHSEED must be in the environment before
torch (and cuBLAS) start, so `kit`'s entry point sets them and re-executes itself once (see
kit.cli.main); `apply` then sets the rest, and must run before the adapter is created so the
LoRA init is seeded.
"""

from __future__ import annotations

import os
import random

PYTHONHASHSEED = "0"
ENV_SWITCHES = {"PYTHONHASHSEED": PYTHONHASHSEED, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def missing_env_switches() -> dict[str, str]:
    return {k: v for k, v in ENV_SWITCHES.items() if os.environ.get(k) != v}


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
