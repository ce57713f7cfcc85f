"""Data-parallel training on CPUs (gloo): two processes, same bytes twice, world size recorded."""

from __future__ import annotations

import pytest

from conftest import TINY, manifest

pytestmark = pytest.mark.slow


def test_two_process_training_is_bit_identical_across_runs(run_kit, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        run_kit("train", "--recipe", str(TINY), "--output", str(out), "--nproc", "2", check=True)
    a, b = manifest(runs[0]), manifest(runs[1])
    assert a["outputs"]["adapter"]["sha256"] == b["outputs"]["adapter"]["sha256"]
    assert (runs[0] / "train_log.jsonl").read_bytes() == (runs[1] / "train_log.jsonl").read_bytes()
    assert a["inputs"]["environment"]["hardware"]["world_size"] == 2
    assert (runs[0] / "logs/kit.rank1.log").exists()


def test_effective_batch_is_the_recipes_whatever_the_process_count(tiny_run, run_kit, tmp_path):
    out = tmp_path / "two"
    run_kit("train", "--recipe", str(TINY), "--output", str(out), "--nproc", "2", check=True)
    one = [x for x in (tiny_run / "train_log.jsonl").read_text().splitlines()]
    two = [x for x in (out / "train_log.jsonl").read_text().splitlines()]
    import json

    one, two = [json.loads(x) for x in one], [json.loads(x) for x in two]
    # same steps, same rows and tokens per step, same data order: only the summation order differs
    assert [(x["rows"], x["label_tokens"], x["batch_sha256"]) for x in one] == \
        [(x["rows"], x["label_tokens"], x["batch_sha256"]) for x in two]
    for x, y in zip(one, two):
        assert abs(x["loss"] - y["loss"]) < 1e-4
