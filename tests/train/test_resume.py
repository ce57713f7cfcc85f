"""An interrupted run resumes to the same bytes as an uninterrupted one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY, manifest

pytestmark = pytest.mark.slow


def _start(out: Path, kit_cache: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "KWANZAA_KIT_NO_REEXEC")}
    env.update(KWANZAA_KIT_CACHE=str(kit_cache), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "kit", "train", "--recipe", str(TINY), "--output", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((out / "checkpoints").glob("step-*")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its first checkpoint could be interrupted: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_resumes_to_the_same_adapter_bytes(sig, tiny_run, run_kit, kit_cache, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, kit_cache)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert proc.returncode != 0, "the run finished before the signal: nothing was interrupted"
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert "kit train --resume" in proc.stderr.read()
        assert manifest(out)["status"] == "interrupted"
    assert not (out / "adapter").exists()
    run_kit("train", "--resume", str(out), check=True)
    assert manifest(out)["status"] == "complete"
    assert manifest(out)["outputs"]["adapter"]["sha256"] == manifest(tiny_run)["outputs"]["adapter"]["sha256"]
    assert (out / "train_log.jsonl").read_bytes() == (tiny_run / "train_log.jsonl").read_bytes()


def test_a_corrupt_checkpoint_is_skipped_for_the_previous_one(tiny_run, run_kit, kit_cache, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, kit_cache)
    deadline = time.time() + 300
    while len(list((out / "checkpoints").glob("step-*"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    if len(ckpts) < 2:
        pytest.fail("the run did not reach two checkpoints before it was killed")
    blob = ckpts[-1] / "optimizer.pt"
    blob.write_bytes(blob.read_bytes()[:-7] + b"garbage")
    run_kit("train", "--resume", str(out), check=True)
    log = (out / "logs/kit.log").read_text()
    assert "is corrupt" in log and ckpts[-1].name in log
    assert manifest(out)["outputs"]["adapter"]["sha256"] == manifest(tiny_run)["outputs"]["adapter"]["sha256"]
    shutil.rmtree(out)
