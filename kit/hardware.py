"""The machine as a run will see it: GPUs, memory, capability, drivers, library versions."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

GiB = 1024 ** 3
MIN_DRIVER_MAJOR = 525  # CUDA 12 needs >= 525; older drivers cannot run the locked torch


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

    from kit import fingerprint

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append(Gpu(i, props.name, round(total / GiB, 2), round(free / GiB, 2), f"{props.major}.{props.minor}",
                            bool(torch.cuda.is_bf16_supported()) if i == 0 else props.major >= 8))
    driver = fingerprint.nvidia_driver() if gpus else None
    machine = Machine(gpus=gpus, driver=driver, cuda=torch.version.cuda, bitsandbytes_cuda=_bnb_cuda(gpus),
                      cpu=fingerprint.cpu_model(), cpu_count=os.cpu_count() or 1, torch_threads=torch.get_num_threads(),
                      libraries=fingerprint.library_versions(), in_image=fingerprint.installed_image())
    return replace(machine, warnings=warnings_for(machine))


def _bnb_cuda(gpus) -> bool | None:
    if not gpus:
        return None
    try:
        import bitsandbytes  # noqa: F401
        from bitsandbytes.cextension import lib

        return lib is not None and getattr(lib, "compiled_with_cuda", True)
    except Exception:  # noqa: BLE001 - any failure to load the native library means no CUDA support
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
