"""The run directory's lock, its safe writes and its strict readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kit import io, rundir
from kit.errors import ResourceError, RunDirError

HOLD = ("import sys, time; from kit import rundir; rundir.RunLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(300)")


def _holder(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_locked_by_another_process_is_refused_until_that_process_is_gone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = _holder(run)
    try:
        assert rundir.is_locked(run)
        with pytest.raises(RunDirError, match="another kit process is working in this run directory"):
            rundir.RunLock(run).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # however it ends, the kernel drops the lock: never stale
        holder.wait()
    assert not rundir.is_locked(run)
    with rundir.RunLock(run):
        assert list(run.iterdir()) == []  # no lock file left behind


def test_the_lock_is_reentrant_within_one_process_and_released_by_the_last_holder(tmp_path):
    outer = rundir.RunLock(tmp_path).acquire()
    inner = rundir.RunLock(tmp_path).acquire()  # kit reproduce: train, then evaluate, under one lock
    inner.release()
    code = "import sys; from kit import rundir; print(rundir.is_locked(sys.argv[1]))"
    probe = [sys.executable, "-c", code, str(tmp_path)]
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "True"
    outer.release()
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "False"


def test_leftovers_of_interrupted_writes_are_cleaned_and_nothing_else(tmp_path):
    keep = [tmp_path / ".local.json", tmp_path / "checkpoints/step-000002/rng.pt", tmp_path / "eval/metrics.json"]
    gone = [tmp_path / "checkpoints/.tmp-abc/optimizer.pt", tmp_path / ".manifest.json.x1y2.tmp",
            tmp_path / "eval/.metrics.json.zz.tmp", tmp_path / ".tmp-adapter-q/adapter_model.safetensors"]
    for p in keep + gone:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    removed = rundir.clean_temp(tmp_path)
    assert all(p.exists() for p in keep)
    assert not any(p.exists() for p in gone)
    assert sorted(removed) == sorted([".manifest.json.x1y2.tmp", ".tmp-adapter-q", "checkpoints/.tmp-abc",
                                      "eval/.metrics.json.zz.tmp"])


def test_a_whole_folder_is_published_at_once_replacing_the_old_one(tmp_path):
    final = tmp_path / "eval"
    final.mkdir()
    (final / "metrics.json").write_text("old")
    tmp = rundir.temp_dir(final)
    (tmp / "metrics.json").write_text("new")
    rundir.publish_dir(tmp, final)
    assert (final / "metrics.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}')

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        io.atomic_write_json(target, {"new": True})
    assert target.read_text() == '{"old": true}' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_writability_and_free_space_are_checked_before_long_work(tmp_path, monkeypatch):
    rundir.check_writable(tmp_path / "not" / "yet" / "there", "run directory")
    with pytest.raises(RunDirError, match="which is a file"):
        (tmp_path / "f").write_text("x")
        rundir.check_writable(tmp_path / "f" / "run", "run directory")
    with pytest.raises(ResourceError, match="MiB free"):
        rundir.check_writable(tmp_path, "run directory", need_bytes=1 << 62)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(ResourceError, match="Read-only file system"):
        rundir.check_writable(tmp_path, "evaluation output")


def test_a_step_log_is_read_strictly_and_a_half_written_last_line_is_dropped(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    rundir.drop_partial_line(log)
    assert [r["step"] for r in rundir.read_step_log(log)] == [1, 2]
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 1, "loss": 2.0}\n')
    with pytest.raises(RunDirError, match=r"train_log.jsonl:2: step 1 where step 2 belongs"):
        rundir.read_step_log(log)
    log.write_text('{"step": 1, "loss": "2.0"}\n')
    with pytest.raises(RunDirError, match="`loss` should be a finite number"):
        rundir.read_step_log(log)


def test_a_manifest_of_the_wrong_shape_is_refused_naming_the_key(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "s", "status": "complete", "plan": []}))
    with pytest.raises(RunDirError, match="`plan` should be an object"):
        rundir.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "s", "status": "complete"}))
    with pytest.raises(RunDirError, match="`recipe_name` is missing"):
        rundir.read_manifest(tmp_path, complete=True)
