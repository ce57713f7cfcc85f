"""Runs under attack and failure: a tampered run stays tampered, a stopped run keeps its manifest
and resumes with the flags it started with, a second process is kept out of a running run, a full
or read-only disk leaves no half-written file, and a non-finite loss fails the run."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit.cli import cli

from conftest import REPO, changed_data_layout, kit_here, manifest, write_recipe
from runs import make_run


def _kit_env(kit_cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "KWANZAA_KIT_NO_REEXEC")}
    env.update(KWANZAA_KIT_CACHE=str(kit_cache), HF_HUB_OFFLINE="1", NO_COLOR="1", COLUMNS="200")
    return env


def _start(kit_cache: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kit", *args], cwd=REPO, env=_kit_env(kit_cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.time() + 300
    while not list((out / "checkpoints").glob("step-*")):
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"no checkpoint to interrupt at: {proc.stderr.read()}")
        time.sleep(0.02)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# ---- integrity cannot be laundered -----------------------------------------------------------

@pytest.mark.slow
def test_kit_eval_of_a_tampered_run_is_refused_and_hash_and_verify_still_fail(run_copy, tiny_reference, run_kit):
    from safetensors.torch import load_file, save_file

    weights = run_copy / "adapter/adapter_model.safetensors"
    save_file({k: v * 0 for k, v in load_file(str(weights)).items()}, str(weights))
    log = run_copy / "train_log.jsonl"
    text = log.read_text()
    assert '"loss":' in text
    log.write_text(text.replace('"loss":', '"loss":0.0,"was":', 1))  # a better first loss, and a valid log
    manifest_before = (run_copy / "manifest.json").read_bytes()
    assert kit_here("hash", str(run_copy)).exit_code == 1

    proc = run_kit("eval", str(run_copy))
    assert proc.returncode == 2 and "adapter_model.safetensors does not match" in _one_line(proc.stderr)
    assert (run_copy / "manifest.json").read_bytes() == manifest_before  # nothing recomputed into it
    assert kit_here("hash", str(run_copy)).exit_code == 1
    proc = run_kit("verify", str(run_copy), "--reference", str(tiny_reference), "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    integrity = {c["field"] for c in result["causes"] if c["kind"] == "integrity"}
    assert result["verdict"] == "mismatch" and result["same"]["files_match_manifest"] is False
    assert {"outputs.adapter.files.adapter_model.safetensors", "outputs.train_log.sha256"} <= integrity


# ---- a stopped run keeps its manifest, and resumes as it started -----------------------------

@pytest.mark.slow
def test_sigterm_keeps_the_manifest_and_resume_takes_allow_data_change_from_it(changed_data_run, kit_cache, run_kit,
                                                                             tmp_path):
    """SIGTERM stops after the step in hand, with a checkpoint and an `interrupted` manifest; resume
    takes the run's flags from it (here --allow-data-change, without which this data is refused) and
    ends with the bytes of the same run left uninterrupted."""
    recipe = changed_data_layout(tmp_path / "layout")
    out = tmp_path / "run"
    proc = _start(kit_cache, "train", "--recipe", str(recipe), "--output", str(out), "--allow-data-change")
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = proc.stderr.read()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "kit train --resume" in err and not (out / "adapter").exists()

    stopped = manifest(out)
    assert stopped["status"] == "interrupted" and "signal" in stopped["error"]
    assert stopped["flags"] == {"strategy": None, "allow_data_change": True}
    assert stopped["inputs"]["dataset"]["allow_data_change"] is True
    assert stopped["plan"]["strategy"] == "lora" and len(stopped["inputs"]["recipe"]["sha256"]) == 64
    # what a kill in the middle of a write leaves behind
    (out / "checkpoints/.tmp-killed").mkdir()
    (out / "checkpoints/.tmp-killed/optimizer.pt").write_bytes(b"half")
    (out / ".manifest.json.k1ll.tmp").write_text("{")

    run_kit("train", "--resume", str(out), check=True)  # no flag: they come from the manifest
    done = manifest(out)
    assert done["status"] == "complete" and done["stops"][0]["status"] == "interrupted"
    assert {k: done[k] for k in ("inputs", "plan", "flags")} == {k: stopped[k] for k in ("inputs", "plan", "flags")}
    assert not (out / "checkpoints/.tmp-killed").exists() and not (out / ".manifest.json.k1ll.tmp").exists()
    # the same weights (the other run's card also holds its eval results)
    assert done["outputs"]["adapter"]["sha256"] == manifest(changed_data_run)["outputs"]["adapter"]["sha256"]
    assert (out / "adapter/adapter_model.safetensors").read_bytes() == \
        (changed_data_run / "adapter/adapter_model.safetensors").read_bytes()
    assert (out / "train_log.jsonl").read_bytes() == (changed_data_run / "train_log.jsonl").read_bytes()
    assert kit_here("hash", str(out)).exit_code == 0


@pytest.mark.slow
def test_a_second_process_in_a_running_run_is_refused(kit_cache, run_kit, tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "tiny.yaml", data__max_train_rows=4,  # two steps of two rows: stopped after the first
                          training__micro_batch_size=1)
    proc = _start(kit_cache, "train", "--recipe", str(recipe), "--output", str(out))
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGSTOP)  # still running (and holding its lock), just not moving
    try:
        for args in (("train", "--resume", str(out)), ("train", "--recipe", str(recipe), "--output", str(out)),
                     ("eval", str(out))):
            second = run_kit(*args)
            assert second.returncode == 2, (args, second.stderr)
            assert "another kit process is working in this run directory" in _one_line(second.stderr), args
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    steps = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))
    assert kit_here("hash", str(out)).exit_code == 0


# ---- a full or read-only disk leaves no half-written file ------------------------------------

@pytest.mark.slow
def test_a_full_disk_during_kit_eval_leaves_every_file_as_it_was(run_copy, kit_cache, tmp_path):
    metrics_out = tmp_path / "metrics.json"
    metrics_out.write_text('{"from": "before"}\n')
    before = _snapshot(run_copy)

    def small_disk():  # no file may grow past 8 KiB: the metrics JSON does
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    proc = subprocess.run([sys.executable, "-m", "kit", "eval", str(run_copy), "--output", str(metrics_out), "--json"],
                          cwd=REPO, env=_kit_env(kit_cache), capture_output=True, text=True, timeout=600,
                          preexec_fn=small_disk)
    assert proc.returncode == 2, proc.stderr
    assert "File too large" in _one_line(proc.stderr)
    assert metrics_out.read_text() == '{"from": "before"}\n'
    assert _snapshot(run_copy) == before  # no truncated output, no temp file, the manifest untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "run"]


def test_a_read_only_run_is_refused_before_anything_is_generated(tmp_path, monkeypatch, kit_cache):
    import tempfile

    import kit.evaluate.runner

    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(kit_cache))
    run = make_run(tmp_path / "run")
    before = _snapshot(run)
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(run.resolve()):
            raise OSError(30, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("generated before checking that the results can be written")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(kit.evaluate.runner, "generate", never)
    monkeypatch.setattr(kit.evaluate.runner, "_load", never)
    for args in (["eval", str(run)], ["report", str(run)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Read-only file system" in _one_line(result.output), args
    assert _snapshot(run) == before


# ---- training that cannot go on fails, and says so -------------------------------------------

@pytest.fixture
def small_recipe(tmp_path, monkeypatch, kit_cache) -> Path:
    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(kit_cache))
    # two steps of two rows
    return write_recipe(tmp_path / "tiny.yaml", data__max_train_rows=4, training__micro_batch_size=1)


def test_a_non_finite_loss_fails_the_run_before_the_optimizer_steps(small_recipe, tmp_path, monkeypatch):
    import kit.train.loop

    real = kit.train.loop.forward_loss
    monkeypatch.setattr(kit.train.loop, "forward_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--recipe", str(small_recipe), "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert "non-finite at step 1" in result.output.strip().splitlines()[-1]
    m = manifest(out)
    assert m["status"] == "failed" and "TrainingError" in m["error"]
    assert m["plan"]["strategy"] == "lora" and m["flags"]["allow_data_change"] is False
    assert len(m["inputs"]["dataset"]["train"]["sha256"]) == 64  # the manifest kept what the run is
    assert not (out / "adapter").exists() and not list((out / "checkpoints").glob("step-*"))
    log = out / "train_log.jsonl"
    assert not log.exists() or log.read_text() == ""  # no NaN step was logged


@pytest.mark.slow
def test_a_full_disk_in_the_middle_of_a_log_line_fails_the_run_and_it_resumes(small_recipe, tmp_path, monkeypatch,
                                                                                run_kit):
    import kit.train.loop

    real = kit.train.loop.io.append_jsonl
    calls = []

    def half_then_full(path, obj):
        calls.append(path.name)
        if len(calls) == 3:  # the second step's log line
            with open(path, "a") as f:
                f.write('{"step": 2, "lo')
            raise OSError(28, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(kit.train.loop.io, "append_jsonl", half_then_full)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--recipe", str(small_recipe), "--output", str(out)])
    assert result.exit_code == 2 and "No space left on device" in result.output, result.output
    assert "kit train --resume" in result.output.strip().splitlines()[-1]
    assert manifest(out)["status"] == "failed" and manifest(out)["inputs"]["recipe"]["sha256"]
    monkeypatch.undo()
    run_kit("train", "--resume", str(out), check=True)
    assert manifest(out)["status"] == "complete" and kit_here("hash", str(out)).exit_code == 0
