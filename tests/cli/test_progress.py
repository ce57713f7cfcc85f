"""Progress for people, nothing under --json: the download and the hashing (bytes, rate, ETA),
training (steps, tokens/s, ETA) and generation (rows, ETA)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kit.cli import cli
from kit.model import source


@pytest.fixture
def fake_training(monkeypatch, tmp_path):
    """`kit train` whose runner reports 2 GiB of hashing and three steps, and records what it saw."""
    import kit.train.runner

    monkeypatch.chdir(tmp_path)
    seen = {}

    def train_run(recipe, output, *args, on_step=None, **kwargs):
        report = source.progress.get()
        seen["byte_progress"] = report is not None
        if report:
            for done in (2**30, 2**31):
                report("hashing the base model's files", done, 2**31)
        for step in (1, 2, 3):
            on_step(SimpleNamespace(step=step, loss=2.0 / step, grad_norm=1.0, lr=1e-3, tokens=4096), 3)
            time.sleep(0.01)
        return {}

    monkeypatch.setattr(kit.train.runner, "train_run", train_run)
    return seen


def test_training_shows_bars_with_eta_and_tokens_per_second(fake_training):
    result = CliRunner().invoke(cli, ["train", "--recipe", "tiny"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stderr
    assert fake_training["byte_progress"]
    assert "hashing the base model's files" in out and "2.1/2.1 GB" in out
    assert "training" in out and "3/3 steps" in out and "tok/s" in out and "ETA" in out
    assert "step    3/3  loss 0.6667" in out  # the step lines stay, above the bar


def test_json_output_has_no_bars_and_no_progress_hook(fake_training):
    result = CliRunner().invoke(cli, ["train", "--recipe", "tiny", "--json"])
    assert result.exit_code == 0
    assert fake_training["byte_progress"] is False
    assert "ETA" not in result.output and "step" not in result.output


def test_generation_shows_rows_and_eta(capsys):
    from kit.cli.output import generation_progress

    assert generation_progress(quiet=True) is None
    on_batch = generation_progress()
    for done in (8, 16, 20):
        on_batch(done, 20)
    err = capsys.readouterr().err
    assert "generating" in err and "20/20 rows" in err and "ETA" in err


def test_hashing_large_weights_reports_every_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "PROGRESS_MIN_BYTES", 0)
    files = []
    for i, size in enumerate((3 * 2**20, 2**20 + 5)):
        files.append(tmp_path / f"w{i}.safetensors")
        files[-1].write_bytes(b"x" * size)
    reports = []
    token = source.progress.set(lambda what, done, total: reports.append((done, total)))
    try:
        digests = source._hash_files(files)
    finally:
        source.progress.reset(token)
    assert set(digests) == {"w0.safetensors", "w1.safetensors"}
    assert reports[-1] == (4 * 2**20 + 5, 4 * 2**20 + 5)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


def test_a_download_is_watched_by_the_bytes_written_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "PROGRESS_MIN_BYTES", 0)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "cached").write_bytes(b"c" * 1000)  # already there before: not counted as downloaded
    reports = []

    def download():
        part = blobs / "abc.incomplete"
        for _ in range(4):
            with open(part, "ab") as f:
                f.write(b"d" * 500)
            time.sleep(0.3)

    token = source.progress.set(lambda what, done, total: reports.append((what, done, total)))
    try:
        with source._watch_folder("downloading a/b", blobs, 2000):
            worker = threading.Thread(target=download)
            worker.start()
            worker.join()
    finally:
        source.progress.reset(token)
    dones = [d for _, d, _ in reports]
    assert reports[-1] == ("downloading a/b", 2000, 2000) and 0 < dones[0] < 2000 and dones == sorted(dones)
