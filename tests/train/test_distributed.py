"""Data-parallel training on CPUs (gloo): a first-ever run on an empty cache, the same bytes twice,
the step's rows split evenly over the ranks, one clear line when something fails, several nodes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from kit.data.rows import EncodedRow
from kit.train.distributed import check_split, split_rows

from conftest import REPO, TINY, manifest, write_recipe


def _log(run):
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


def _rows(lengths):
    return [EncodedRow(f"r{i}", tuple(range(n)), tuple(range(n))) for i, n in enumerate(lengths)]


def test_a_step_is_split_into_equal_shares_of_rows_that_balance_tokens():
    rows = _rows([900, 100, 500, 300, 800, 200, 700, 400])
    shares = [split_rows(rows, r, 4) for r in range(4)]
    assert sorted(r.row_id for s in shares for r in s) == sorted(r.row_id for r in rows)  # every row once
    assert [len(s) for s in shares] == [2, 2, 2, 2]
    tokens = [sum(len(r.input_ids) for r in s) for s in shares]
    assert max(tokens) - min(tokens) <= 200  # longest with shortest: 900+100, 800+200, ...
    assert all(s == sorted(s, key=rows.index) for s in shares)  # schedule order kept within a rank
    assert split_rows(rows, 0, 1) is rows


def test_a_batch_that_cannot_split_evenly_is_refused_before_anything_starts(run_kit, tmp_path):
    from kit.errors import RecipeError

    with pytest.raises(RecipeError, match="do not split evenly over 3 processes"):
        check_split(8, 3, "recipe.yaml: training")
    check_split(16, 8, "recipe.yaml: training")
    out = tmp_path / "run"
    proc = run_kit("train", "--recipe", str(TINY), "--output", str(out), "--nproc", "3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "4 rows per optimizer step" in proc.stderr
    assert "--nproc 2 or 4," in proc.stderr and not out.exists()
    plan = run_kit("plan", "--recipe", "recipes/olmo7b-random-qlora.yaml", "--gpu-memory", "80", "--nproc", "3")
    assert plan.returncode == 2 and "16 rows per optimizer step" in plan.stderr


@pytest.mark.slow
def test_a_first_run_on_an_empty_cache_succeeds_and_reruns_give_the_same_bytes(tiny_run, run_kit, tmp_path):
    empty_cache = tmp_path / "empty-cache"  # every rank starts at once and finds no random weights yet
    runs = [tmp_path / "a", tmp_path / "b"]
    recipe = _one_thread_each(tmp_path)
    run_kit("train", "--recipe", str(recipe), "--output", str(runs[0]), "--nproc", "2", check=True,
            env={"KWANZAA_KIT_CACHE": str(empty_cache)})
    run_kit("train", "--recipe", str(recipe), "--output", str(runs[1]), "--nproc", "2", "--json", check=True)
    a, b = manifest(runs[0]), manifest(runs[1])
    assert a["outputs"]["adapter"]["sha256"] == b["outputs"]["adapter"]["sha256"]
    assert (runs[0] / "train_log.jsonl").read_bytes() == (runs[1] / "train_log.jsonl").read_bytes()
    assert a["inputs"]["environment"]["hardware"]["world_size"] == 2
    assert 0 <= a["summary"]["speed"]["padding_waste"] < 1  # every rank's micro-batches counted
    assert (runs[0] / "logs/kit.rank1.log").exists()
    # against one process: same steps, rows, tokens and data order; only the summation order differs
    one, two = _log(tiny_run), _log(runs[0])
    assert [(x["rows"], x["label_tokens"], x["batch_sha256"]) for x in one] == \
        [(x["rows"], x["label_tokens"], x["batch_sha256"]) for x in two]
    # before the first update (step 1 steps with lr 0 in warm-up, so steps 1 and 2) the losses differ by
    # the summation order alone; after it they drift a little more: each rank draws its own LoRA dropout
    # masks, so the gradients (and the adapter bytes) depend on the process layout, as its class says
    assert one[0]["lr"] == 0
    for x, y in zip(one[:2], two[:2]):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6)
    for x, y in zip(one[2:], two[2:]):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)


@pytest.mark.slow
def test_a_failing_rank_is_reported_in_one_line_with_its_exit_code(run_kit, tmp_path):
    recipe = write_recipe(tmp_path / "bad.yaml", data__train_sha256="0" * 64)  # refused inside each worker
    proc = run_kit("train", "--recipe", str(recipe), "--output", str(tmp_path / "run"), "--nproc", "2")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "train.jsonl has sha256" in errors[0] and "--allow-data-change" in errors[0]


def _one_thread_each(tmp_path, **changes):
    """The tiny recipe with one CPU thread per process: two processes on two cores, not four threads
    fighting over them (twice as fast; the thread count is part of the class, so runs compare alike)."""
    return write_recipe(tmp_path / "tiny-1-thread.yaml", determinism__cpu_threads=1, **changes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_meet_at_a_rendezvous_endpoint_and_train_as_two_processes(run_kit, kit_cache, tmp_path):
    """Two `kit train --nnodes 2` on one host (gloo): node 0 writes the run, node 1 only its rank's log;
    the adapter is the one two processes on one node give."""
    import os

    endpoint = f"127.0.0.1:{_free_port()}"
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "KWANZAA_KIT_NO_REEXEC")}
    env.update(KWANZAA_KIT_CACHE=str(kit_cache), HF_HUB_OFFLINE="1")
    recipe = _one_thread_each(tmp_path, training__max_steps=1)  # meeting and training together is the point
    common = ["train", "--recipe", str(recipe), "--output", str(out), "--nproc", "1", "--nnodes", "2",
              "--rdzv-endpoint", endpoint]
    node1 = subprocess.Popen([sys.executable, "-m", "kit", *common, "--node-rank", "1"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        node0 = run_kit(*common, "--node-rank", "0", "--json")
        _, err1 = node1.communicate(timeout=300)
    finally:  # never leave a node waiting at the rendezvous
        node1.kill()
    assert node0.returncode == 0, node0.stderr
    assert node1.returncode == 0, err1
    m = manifest(out)
    assert m["inputs"]["environment"]["hardware"]["world_size"] == 2
    assert json.loads(node0.stdout)["adapter_sha256"] == m["outputs"]["adapter"]["sha256"]
    assert (out / "logs/kit.rank1.log").exists()


@pytest.mark.slow
def test_a_node_whose_peers_never_come_says_so_in_one_line(run_kit, tmp_path):
    out = tmp_path / "run"
    proc = run_kit("train", "--recipe", str(TINY), "--output", str(out), "--nnodes", "2", "--node-rank", "1",
                   "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-timeout", "2")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "frame #" not in proc.stderr
    assert len(errors) == 1 and "did not meet the other 1 node(s)" in errors[0] and "--rdzv-timeout" in errors[0]
    assert not out.exists()
