"""An interrupted run resumes to the same bytes as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY, manifest

pytestmark = pytest.mark.slow


# MKL and oneDNN as on a host whose CPU stops at AVX2 (no AVX-512): kit's pins make the bytes the same
AVX2_HOST = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _start(out: Path, kit_cache: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "KWANZAA_KIT_NO_REEXEC")}
    env.update(KWANZAA_KIT_CACHE=str(kit_cache), HF_HUB_OFFLINE="1", **AVX2_HOST)
    return subprocess.Popen([sys.executable, "-m", "kit", "train", "--recipe", str(TINY), "--output", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_run_resumes_past_a_corrupt_checkpoint_to_the_same_bytes(tiny_run, run_kit, kit_cache, tmp_path):
    """SIGKILL (no handler runs) after two checkpoints, the last one then damaged: resume skips it for
    the one before and ends with the uninterrupted run's adapter and train log, here on a simulated
    AVX2-only host, so the pinned bytes are also shown not to depend on the host's own level.
    (SIGTERM, which stops with a checkpoint and an `interrupted` manifest: tests/train/test_faults.py.)"""
    out = tmp_path / "run"
    proc = _start(out, kit_cache)
    deadline = time.time() + 300
    while len(list((out / "checkpoints").glob("step-*"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before the signal: nothing was interrupted"
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    if len(ckpts) < 2:
        pytest.fail("the run did not reach two checkpoints before it was killed")
    assert not (out / "adapter").exists()
    blob = ckpts[-1] / "optimizer.pt"
    blob.write_bytes(blob.read_bytes()[:-7] + b"garbage")
    run_kit("train", "--resume", str(out), check=True, env=AVX2_HOST)
    log = (out / "logs/kit.log").read_text()
    assert "is corrupt" in log and ckpts[-1].name in log
    assert manifest(out)["status"] == "complete"
    assert manifest(out)["outputs"]["adapter"]["sha256"] == manifest(tiny_run)["outputs"]["adapter"]["sha256"]
    assert (out / "train_log.jsonl").read_bytes() == (tiny_run / "train_log.jsonl").read_bytes()
    assert (out / "adapter/adapter_model.safetensors").read_bytes() == \
        (tiny_run / "adapter/adapter_model.safetensors").read_bytes()
    assert manifest(out)["inputs"] == manifest(tiny_run)["inputs"]
