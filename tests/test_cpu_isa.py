"""The CPU's instruction-set level: pinned on x86-64 so that every machine with AVX2 gives the same
bytes, recorded in the hardware class so that a run at another level is another class."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from kit.determinism import CPU_ISA_PINS
from kit.verify import judge as verify
from kit.verify import reference

from conftest import TINY, manifest
from samples import sample_reference, sample_results


def _has_avx2() -> bool:
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


x86_avx2 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not _has_avx2(),
                              reason="the pin applies to x86-64 CPUs with AVX2")


def test_a_run_at_another_level_is_another_class_and_the_cause_says_so():
    run, ref = sample_results(), sample_reference()
    run["environment"]["hardware"]["cpu_isa"] = "default"
    run["outputs"]["adapter_sha256"] = "e" * 64
    result = verify.judge(run, [], ref)
    assert result["verdict"] == "equivalent" and result["reference"]["same_class"] is False
    cause = next(c for c in result["causes"] if c["field"] == "hardware.cpu_isa")
    assert cause["message"] == "cpu_isa avx2 -> default" and "instruction-set level" in cause["meaning"]
    adapter = next(c for c in result["causes"] if c["field"] == "adapter")
    assert "expected when the hardware class" in adapter["meaning"]
    slugs = {reference.hardware_slug({**ref["hardware_class"], "cpu_isa": isa}) for isa in ("avx2", "avx512", "default")}
    assert "cpu-x86_64-avx2-w1-t2-det" in slugs and len(slugs) == 3


def test_the_slug_of_a_gpu_class_names_the_gpu_and_the_nodes():
    gpu = {"device_type": "cuda", "device_name": "NVIDIA H200", "compute_capability": "9.0", "nodes": 1,
           "world_size": 2, "deterministic": True, "cpu_threads": 16}
    assert reference.hardware_slug(gpu) == "cuda-nvidia-h200-cc9.0-w2-t16-det"
    assert reference.hardware_slug({**gpu, "nodes": 2}) == "cuda-nvidia-h200-cc9.0-n2-w2-t16-det"


@x86_avx2
def test_the_entry_point_pins_avx2_and_a_users_own_setting_wins_and_shows(run_kit):
    pinned = json.loads(run_kit("doctor", "--json", check=True).stdout)
    assert pinned["cpu_isa"] == "avx2" and not any("no AVX2" in w for w in pinned["warnings"])
    own = json.loads(run_kit("doctor", "--json", env={"ATEN_CPU_CAPABILITY": "default"}, check=True).stdout)
    assert own["cpu_isa"] == "default" and any("a hardware class of their own" in w for w in own["warnings"])


@pytest.mark.slow
@x86_avx2
def test_a_run_records_the_pins_and_its_level(tiny_run):
    m = manifest(tiny_run)
    assert m["inputs"]["environment"]["hardware"]["cpu_isa"] == "avx2"
    assert m["determinism"]["cpu_isa_env"] == CPU_ISA_PINS and m["determinism"]["cpu_isa"] == "avx2"
    assert json.loads((tiny_run / "recipe.json").read_text())["determinism"]["cpu_isa"] == "avx2"
    assert reference.hardware_slug(m["inputs"]["environment"]["hardware"]).startswith("cpu-x86_64-avx2-")


@pytest.mark.slow
@x86_avx2
def test_unpinned_at_another_level_the_bytes_and_the_class_differ_not_the_inputs(tiny_run, run_kit, tmp_path):
    """Run at another kernel level (the pins overridden), the adapter bytes and the hardware class
    differ, and the seeded random base model (an input) is still the same bytes. (The pinned bytes on a
    simulated AVX2-only host: tests/train/test_resume.py.)"""
    other = tmp_path / "default-level"  # from an empty cache: its random base model is drawn again
    run_kit("train", "--recipe", str(TINY), "--output", str(other), "--json", check=True,
            env={"ATEN_CPU_CAPABILITY": "default", "KWANZAA_KIT_CACHE": str(tmp_path / "empty-cache")})
    assert manifest(other)["inputs"]["base_model"] == manifest(tiny_run)["inputs"]["base_model"]  # the same input
    hw = manifest(other)["inputs"]["environment"]["hardware"]
    assert hw["cpu_isa"] == "default" and hw != manifest(tiny_run)["inputs"]["environment"]["hardware"]
    assert manifest(other)["outputs"]["adapter"]["sha256"] != manifest(tiny_run)["outputs"]["adapter"]["sha256"]
