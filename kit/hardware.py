"""The machine as a run will see it: GPUs, memory, capability, drivers, library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from kit import container

GiB = 1024 ** 3
MIN_DRIVER_MAJOR = 525  # CUDA 12 needs >= 525; older drivers cannot run the locked torch

# Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by GPU name, from the vendors' datasheets:
# the denominator of MFU, and how the planner scales a measured speed to another card.
DENSE_BF16_TFLOPS = {"H100 80GB HBM3": 989, "H100 SXM": 989, "H100 PCIe": 756, "H100 NVL": 835, "H200": 989,
                     "A100-SXM4-80GB": 312, "A100-SXM4-40GB": 312, "A100 80GB PCIe": 312, "A100-PCIE-40GB": 312,
                     "L40S": 362, "L4": 121, "A10G": 70, "A10": 125, "RTX 4090": 165, "RTX 3090": 71,
                     "RTX A6000": 155, "RTX 6000 Ada": 364}
H100_TFLOPS = 989


def peak_flops_for(gpu_name: str) -> float | None:
    """FLOP/s of the card's dense bf16 peak, or None for a card not in the table."""
    for key, tflops in DENSE_BF16_TFLOPS.items():
        if key.lower() in gpu_name.lower():
            return tflops * 1e12
    return None


def estimate_mfu(tokens_per_s: float, n_params: int, peak_flops: float) -> float:
    """Model FLOPs utilisation with the 6N-per-token convention (forward 2N + backward 4N).
    Checkpointing's recomputed forward (another 2N) and attention FLOPs are not counted."""
    return tokens_per_s * 6 * n_params / peak_flops


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_gib: float
    free_gib: float
    compute_capability: str
    bf16: bool


@dataclass(frozen=True)
class Machine:
    gpus: list[Gpu]
    driver: str | None
    cuda: str | None
    bitsandbytes_cuda: bool | None
    cpu: str
    cpu_count: int
    torch_threads: int
    libraries: dict
    in_image: dict | None
    warnings: list[str] = field(default_factory=list)

    @property
    def free_gib(self) -> float | None:
        return self.gpus[0].free_gib if self.gpus else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["gpu_count"] = len(self.gpus)
        return d


def detect() -> Machine:
    import torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append(Gpu(i, props.name, round(total / GiB, 2), round(free / GiB, 2), f"{props.major}.{props.minor}",
                            bool(torch.cuda.is_bf16_supported()) if i == 0 else props.major >= 8))
    driver = nvidia_driver() if gpus else None
    machine = Machine(gpus=gpus, driver=driver, cuda=torch.version.cuda, bitsandbytes_cuda=_bnb_cuda(gpus),
                      cpu=cpu_model(), cpu_count=os.cpu_count() or 1, torch_threads=torch.get_num_threads(),
                      libraries=container.library_versions(), in_image=container.image_fingerprint())
    return replace(machine, warnings=warnings_for(machine))


def _bnb_cuda(gpus) -> bool | None:
    if not gpus:
        return None
    try:
        import bitsandbytes  # noqa: F401 - loads the native library
        from bitsandbytes.cextension import lib

        return lib is not None and getattr(lib, "compiled_with_cuda", True)
    except Exception:
        return False


def warnings_for(m: Machine) -> list[str]:
    out = []
    if not m.gpus:
        out.append("no GPU: the 7B recipes cannot train here; the tiny recipe runs on the CPU")
    for g in m.gpus:
        if not g.bf16:
            out.append(f"GPU {g.index} ({g.name}) has no bf16: the recipes' bf16 compute is not available")
    if m.driver:
        try:
            if int(m.driver.split(".")[0]) < MIN_DRIVER_MAJOR:
                out.append(f"NVIDIA driver {m.driver} is older than {MIN_DRIVER_MAJOR}: update it")
        except ValueError:
            pass
    if m.gpus and m.bitsandbytes_cuda is False:
        out.append("bitsandbytes has no CUDA support here: QLoRA and 8-bit optimizers will not run on the GPU")
    if len({g.name for g in m.gpus}) > 1:
        out.append("GPUs of different models: a run's hardware class is its first GPU's; results may differ")
    if m.in_image is None:
        out.append("not inside the published kwanzaa-kit image: results are comparable only if versions match")
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def hardware_class(device: str, world_size: int, deterministic: bool, cpu_threads: int) -> dict:
    """What must match for bit-exact results: device model (GPU or CPU), count, mode, threads."""
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return {"device_type": "cuda", "device_name": props.name,
                "compute_capability": f"{props.major}.{props.minor}", "world_size": world_size,
                "deterministic": deterministic, "cpu_threads": cpu_threads}
    return {"device_type": "cpu", "device_name": cpu_model(), "compute_capability": None,
            "world_size": world_size, "deterministic": deterministic, "cpu_threads": cpu_threads}
