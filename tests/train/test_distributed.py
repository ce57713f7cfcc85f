"""Data-parallel training on CPUs (gloo): two processes, same bytes twice, world size recorded,
and the effective batch is the recipe's."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, manifest

pytestmark = pytest.mark.slow


def _log(run):
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


def test_two_process_training_is_bit_identical_and_keeps_the_effective_batch(tiny_run, run_kit, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        run_kit("train", "--recipe", str(TINY), "--output", str(out), "--nproc", "2", check=True)
    a, b = manifest(runs[0]), manifest(runs[1])
    assert a["outputs"]["adapter"]["sha256"] == b["outputs"]["adapter"]["sha256"]
    assert (runs[0] / "train_log.jsonl").read_bytes() == (runs[1] / "train_log.jsonl").read_bytes()
    assert a["inputs"]["environment"]["hardware"]["world_size"] == 2
    assert (runs[0] / "logs/kit.rank1.log").exists()
    # against one process: same steps, rows, tokens and data order; only the summation order differs
    one, two = _log(tiny_run), _log(runs[0])
    assert [(x["rows"], x["label_tokens"], x["batch_sha256"]) for x in one] == \
        [(x["rows"], x["label_tokens"], x["batch_sha256"]) for x in two]
    for x, y in zip(one, two):
        assert abs(x["loss"] - y["loss"]) < 1e-4
