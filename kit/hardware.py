"""The machine as a run will see it: GPUs, memory, capability, drivers, library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from kit import container

GiB = 1024 ** 3
# The oldest Linux driver that runs each CUDA major version (NVIDIA's CUDA 12.0 GA and 13.0 GA
# floors; minor-version compatibility extends each to the whole major version). torch ships its own
# CUDA runtime, so what gates a GPU is torch.version.cuda against the host's driver, nothing else.
MIN_DRIVER = {"12": "525.60.13", "13": "580.65.06"}
CUDA12_IMAGE = "make image CUDA=12.6"  # the image for drivers R525-R575 (docs/container.md)

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
    driver: str | None           # read from NVML or nvidia-smi, whether or not torch sees a GPU
    cuda: str | None             # torch's CUDA (the build's, not the host's)
    bitsandbytes_cuda: bool | None
    cpu: str
    cpu_count: int
    torch_threads: int
    libraries: dict
    in_image: dict | None
    driver_cuda: str | None = None       # the newest CUDA the driver runs
    min_driver: str | None = None        # the oldest driver torch's CUDA runs on
    driver_gpus: list[str] = field(default_factory=list)  # what the driver sees, torch or not
    cpu_isa: str | None = None           # the level torch's CPU kernels dispatch to (pinned: kit.determinism)
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
    drv = driver_info() or {}
    machine = Machine(gpus=gpus, driver=drv.get("version"), cuda=torch.version.cuda, bitsandbytes_cuda=_bnb_cuda(gpus),
                      cpu=cpu_model(), cpu_count=os.cpu_count() or 1, torch_threads=torch.get_num_threads(),
                      libraries=container.library_versions(), in_image=container.image_fingerprint(),
                      driver_cuda=drv.get("cuda"), min_driver=min_driver_for(torch.version.cuda),
                      driver_gpus=drv.get("gpus", []), cpu_isa=cpu_isa())
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
    if is_x86_64() and m.cpu_isa == "default":
        out.append(f"this CPU has no {PORTABLE_X86_ISA.upper()} (or ATEN_CPU_CAPABILITY=default is set): its CPU runs "
                   f"are a hardware class of their own (cpu-x86_64-default-...), compared with the published "
                   f"{PORTABLE_X86_ISA.upper()} references by the band, never bit-exact")
    too_old = driver_too_old(m.driver, m.min_driver)
    if too_old:
        out.append(f"NVIDIA driver {m.driver}" + (f" (runs CUDA <= {m.driver_cuda})" if m.driver_cuda else "") +
                   f" is older than {m.min_driver}, the oldest that runs this build's CUDA {m.cuda}: torch cannot use "
                   f"the GPU. Fix: update the driver (R{m.min_driver.split('.')[0]} or newer), or use the CUDA 12.6 "
                   f"image (`{CUDA12_IMAGE}`), which runs on driver >= {MIN_DRIVER['12']}")
    if not m.gpus and m.driver_gpus and not too_old:
        out.append(f"the driver sees {len(m.driver_gpus)} GPU(s) ({', '.join(sorted(set(m.driver_gpus)))}) but torch "
                   f"sees none" + (" (this torch is a CPU build)" if not m.cuda else
                                   ": in a container, pass `--gpus all` (NVIDIA Container Toolkit)"))
    if not m.gpus:
        out.append("no GPU: the 7B recipes cannot train here; the tiny recipe runs on the CPU")
    for g in m.gpus:
        if not g.bf16:
            out.append(f"GPU {g.index} ({g.name}) has no bf16: the recipes' bf16 compute is not available")
    if m.gpus and m.bitsandbytes_cuda is False:
        out.append("bitsandbytes has no CUDA support here: QLoRA and 8-bit optimizers will not run on the GPU")
    if len({g.name for g in m.gpus}) > 1:
        out.append("GPUs of different models: a run's hardware class is its first GPU's; results may differ")
    if m.in_image is None:
        out.append("not inside the published kwanzaa-kit image: results are comparable only if versions match")
    return out


def min_driver_for(cuda: str | None) -> str | None:
    """The oldest driver that runs a CUDA version's binaries (None: a CPU build, or an unknown CUDA)."""
    return MIN_DRIVER.get(cuda.split(".")[0]) if cuda else None


def driver_too_old(driver: str | None, minimum: str | None) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    return bool(driver and minimum) and parts(driver) < parts(minimum)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver() -> str | None:
    return (driver_info() or {}).get("version")


def driver_info() -> dict | None:
    """{version, cuda (the newest CUDA it runs), gpus (names)} of the NVIDIA driver, from NVML, else
    nvidia-smi; None without one. Read whether or not torch can use the GPU: a driver too old for
    torch's CUDA is exactly the case where torch sees nothing."""
    return _nvml_driver() or _smi_driver()


def _nvml_driver() -> dict | None:
    import ctypes

    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        version, cuda, count = ctypes.create_string_buffer(96), ctypes.c_int(), ctypes.c_uint()
        if nvml.nvmlSystemGetDriverVersion(version, 96) != 0:
            return None
        has_cuda = nvml.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda)) == 0
        names = []
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0:
            for i in range(count.value):
                handle, name = ctypes.c_void_p(), ctypes.create_string_buffer(96)
                if nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) == 0 and \
                        nvml.nvmlDeviceGetName(handle, name, 96) == 0:
                    names.append(name.value.decode())
        return {"version": version.value.decode(), "gpus": names, "source": "nvml",
                "cuda": f"{cuda.value // 1000}.{cuda.value % 1000 // 10}" if has_cuda else None}
    finally:
        nvml.nvmlShutdown()


def _smi_driver() -> dict | None:
    import re

    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10, check=False)
        rows = [line.split(", ", 1) for line in query.stdout.strip().splitlines() if ", " in line]
        if query.returncode != 0 or not rows:
            return None
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", header)
    return {"version": rows[0][0].strip(), "gpus": [r[1].strip() for r in rows], "source": "nvidia-smi",
            "cuda": cuda[1] if cuda else None}


def hardware_class(device: str, world_size: int, deterministic: bool, cpu_threads: int, nodes: int = 1) -> dict:
    """What must match for bit-exact results. A GPU run: the GPU model and architecture, the number of
    machines and processes (the all-reduce's order), the mode and threads. A CPU run: the CPU's
    architecture and the instruction-set level its kernels dispatch to (kit.determinism pins x86-64
    to AVX2), processes, mode and threads; the CPU's vendor and model are recorded beside the class
    (fingerprint.environment), not in it: at one pinned level they run the same kernels."""
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return {"device_type": "cuda", "device_name": props.name,
                "compute_capability": f"{props.major}.{props.minor}", "nodes": nodes, "world_size": world_size,
                "deterministic": deterministic, "cpu_threads": cpu_threads}
    return {"device_type": "cpu", "cpu_arch": cpu_arch(), "cpu_isa": cpu_isa(), "nodes": nodes, "world_size": world_size,
            "deterministic": deterministic, "cpu_threads": cpu_threads}


def cpu_isa() -> str:
    """The instruction-set level torch's CPU kernels dispatch to in this process: 'avx2', 'avx512',
    'default', 'neon', 'sve256'... (the pin, or the CPU's own level when it is lower)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability()).lower()


# the instruction-set level the kit pins x86-64 CPU kernels to (kit.determinism): nearly every
# x86-64 CPU made since 2015 has it
PORTABLE_X86_ISA = "avx2"


def cpu_arch() -> str:
    """x86_64, aarch64... (Windows' AMD64 spelled as Linux spells it)."""
    return platform.machine().lower().replace("amd64", "x86_64")


def is_x86_64() -> bool:
    return cpu_arch() == "x86_64"
