"""`kit doctor` reads the NVIDIA driver itself, even when torch sees no GPU, and says when it is too
old for this build's CUDA, and the fix."""

from __future__ import annotations

import json
import os
import stat

from click.testing import CliRunner

from kit import hardware
from kit.cli import cli

R535 = {"version": "535.183.01", "cuda": "12.2", "gpus": ["NVIDIA A100-SXM4-80GB"], "source": "nvml"}


def _doctor(monkeypatch, driver: dict | None, torch_cuda: str | None) -> dict:
    import torch

    monkeypatch.setattr(hardware, "_nvml_driver", lambda: driver)
    monkeypatch.setattr(hardware, "_smi_driver", lambda: None)
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # what a too-old driver gives torch
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_driver_too_old_for_the_cuda_13_build_is_named_with_the_fix(monkeypatch):
    m = _doctor(monkeypatch, R535, "13.0")
    assert m["gpus"] == [] and m["driver"] == "535.183.01" and m["driver_cuda"] == "12.2"
    assert m["min_driver"] == "580.65.06" and m["driver_gpus"] == ["NVIDIA A100-SXM4-80GB"]
    (warning,) = [w for w in m["warnings"] if "older than" in w]
    assert "535.183.01" in warning and "580.65.06" in warning and "make image CUDA=12.6" in warning
    assert "525.60.13" in warning


def test_the_same_driver_runs_the_cuda_12_6_build(monkeypatch):
    m = _doctor(monkeypatch, R535, "12.6")
    assert m["min_driver"] == "525.60.13" and not [w for w in m["warnings"] if "older than" in w]
    # torch still sees nothing: then it is the container's GPU access, not the driver
    assert any("--gpus all" in w for w in m["warnings"])


def test_a_cpu_build_needs_no_driver(monkeypatch):
    m = _doctor(monkeypatch, None, None)
    assert m["driver"] is None and m["min_driver"] is None
    assert any("no GPU" in w for w in m["warnings"])


def test_the_doctor_for_people_prints_the_driver_and_what_the_build_needs(monkeypatch):
    import torch

    monkeypatch.setattr(hardware, "_nvml_driver", lambda: R535)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = " ".join(CliRunner().invoke(cli, ["doctor"]).output.split())
    assert "torch sees no GPU (the driver sees NVIDIA A100-SXM4-80GB)" in out
    assert "driver 535.183.01 (runs CUDA <= 12.2); this build's CUDA 13.0 needs >= 580.65.06" in out


def test_without_nvml_the_driver_is_read_from_nvidia_smi(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n"
                   "if [ \"$1\" = --query-gpu=driver_version,name ]; then\n"
                   "  echo '570.172.08, NVIDIA L4'; echo '570.172.08, NVIDIA L4'\n"
                   "else\n"
                   "  echo '| NVIDIA-SMI 570.172.08   Driver Version: 570.172.08   CUDA Version: 12.8 |'\n"
                   "fi\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(hardware, "_nvml_driver", lambda: None)
    info = hardware.driver_info()
    assert info == {"version": "570.172.08", "gpus": ["NVIDIA L4", "NVIDIA L4"], "source": "nvidia-smi",
                    "cuda": "12.8"}
    assert hardware.driver_too_old(info["version"], hardware.min_driver_for("13.0"))


def test_no_driver_at_all_is_none_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setattr(hardware, "_nvml_driver", lambda: None)
    assert hardware.driver_info() is None and hardware.nvidia_driver() is None


def test_driver_versions_compare_as_numbers():
    assert hardware.driver_too_old("525.60.12", "525.60.13")
    assert not hardware.driver_too_old("580.159.04", "580.65.06")  # 159 > 65, not "1" < "6"
    assert not hardware.driver_too_old(None, "580.65.06") and not hardware.driver_too_old("535.1", None)
