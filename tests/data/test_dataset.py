"""The Kwanzaa dataset: `kit data check` passes on what we ship, names the file and line of every
kind of bad row, and `kit data build` renders the YAML sources to the same bytes every time."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kit.data.build import DATA_DIR, dumps
from kit.errors import DataError

from conftest import kit_here

TRAIN, EVAL = DATA_DIR / "train.jsonl", DATA_DIR / "eval.jsonl"
PERSONAS = {"educator", "researcher", "creator", "builder"}
CATEGORIES = {"grounded", "synthesis", "partial", "format", "refusal_no_docs", "refusal_low_score",
              "refusal_out_of_scope", "refusal_future"}


def good_row() -> dict:
    """The first shipped training row: a grounded answer citing [1] out of two listed documents."""
    return json.loads(TRAIN.read_text("utf-8").splitlines()[0])


def with_answer(row: dict, change) -> dict:
    row = copy.deepcopy(row)
    answer = json.loads(row["messages"][2]["content"])
    change(answer)
    row["messages"][2]["content"] = dumps(answer)
    return row


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else dumps(r)) + "\n" for r in rows), "utf-8")
    return path


# --- the shipped data -------------------------------------------------------------------------

def test_shipped_data_passes_check_with_the_promised_size_and_balance():
    result = kit_here("data", "check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    train, eval_ = report["files"]
    assert train["rows"] >= 160 and eval_["rows"] >= 40
    for f in (train, eval_):
        assert set(f["persona"]) == PERSONAS
        assert set(f["category"]) == CATEGORIES
        assert set(f["completeness"]) == {"complete", "partial", "insufficient_data"}
        assert f["tokens"]["max"] <= 2048


def test_data_card_states_the_numbers_that_check_computes():
    result = kit_here("data", "check", "--markdown")
    assert result.exit_code == 0, result.output
    card = (DATA_DIR / "README.md").read_text("utf-8")
    assert result.output in card, "data/kwanzaa/README.md is stale: paste `kit data check --markdown` into it"


def test_check_prints_a_summary_table_for_people():
    result = kit_here("data", "check")
    assert result.exit_code == 0, result.output
    assert "all rows pass" in result.output
    for word in ("train.jsonl", "eval.jsonl", "p50", "p99", "educator", "refusal_no_docs", "insufficient_data"):
        assert word in result.output


def test_every_citation_url_is_under_the_reserved_example_domain():
    for path in (TRAIN, EVAL):
        for line in path.read_text("utf-8").splitlines():
            for doc in json.loads(line)["meta"]["retrieved"]:
                assert doc["canonical_url"].startswith("https://corpus.kwanzaa-kit.example/")


def test_rows_that_should_refuse_are_refusals_and_the_rest_cite():
    for path in (TRAIN, EVAL):
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            answer = json.loads(row["messages"][2]["content"])
            refused = answer["answer"]["completeness"] == "insufficient_data"
            assert refused == row["meta"]["should_refuse"], row["id"]
            assert bool(answer["sources"]) == (not refused), row["id"]


# --- each kind of bad row is reported with its file and line, exit 2 --------------------------

def _cites_unlisted(a):
    a["answer"]["text"] += " See also [7]."


def _source_not_retrieved(a):
    a["sources"][0]["chunk_id"] = a["sources"][0]["doc_id"] + "::chunk::99"


def _placeholder(a):
    a["answer"]["text"] = "TODO: write the real answer [1]."


def _schema_failure(a):
    a["answer"]["completeness"] = "mostly"


BAD_ROWS = {
    "not JSON": (lambda r: '{"id": "train-0002", "messages": [', "row is not valid JSON"),
    "missing assistant turn": (lambda r: {**r, "messages": r["messages"][:2]}, "missing the assistant turn"),
    "assistant not JSON": (lambda r: {**r, "messages": r["messages"][:2] + [
        {"role": "assistant", "content": "Kwanzaa was created in 1966 by Maulana Karenga."}]},
        "assistant turn is not JSON"),
    "prose around the JSON": (lambda r: {**r, "messages": r["messages"][:2] + [
        {"role": "assistant", "content": "Here is the answer: " + r["messages"][2]["content"]}]},
        "text around the answer_json"),
    "schema failure": (lambda r: with_answer(r, _schema_failure), "fails the schema"),
    "[n] cites an unlisted document": (lambda r: with_answer(r, _cites_unlisted), "answer cites [7]"),
    "source not retrieved": (lambda r: with_answer(r, _source_not_retrieved),
                             "is not among the retrieved documents"),
    "placeholder text": (lambda r: with_answer(r, _placeholder), "placeholder text 'TODO'"),
    "duplicate id": (lambda r: r, "duplicate id"),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_check_names_file_and_line_of_a_bad_row(tmp_path, kind):
    make_bad, reason = BAD_ROWS[kind]
    second = good_row() if kind == "duplicate id" else {**good_row(), "id": "train-0002"}
    path = write_rows(tmp_path / "bad.jsonl", [good_row(), make_bad(second)])
    result = kit_here("data", "check", str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}:2" in result.output and reason in result.output, result.output
    assert not any(line.startswith(f"{path}:1") for line in result.output.splitlines())
    assert "Traceback" not in result.output


def test_check_refuses_a_row_longer_than_max_seq_len(tmp_path):
    path = write_rows(tmp_path / "long.jsonl", [good_row()])
    result = kit_here("data", "check", str(path), "--max-seq-len", "256")
    assert result.exit_code == 2
    assert f"{path}:1" in result.output and "longer than --max-seq-len 256" in result.output


def test_check_refuses_a_query_shared_between_train_and_eval(tmp_path):
    train = write_rows(tmp_path / "train.jsonl", [good_row()])
    eval_ = write_rows(tmp_path / "eval.jsonl", [{**good_row(), "id": "eval-0001"}])
    result = kit_here("data", "check", str(train), str(eval_))
    assert result.exit_code == 2
    assert f"{eval_}:1" in result.output and f"query is shared with {train}:1" in result.output


def test_check_json_reports_problems_as_one_object_and_exits_2(tmp_path):
    path = write_rows(tmp_path / "bad.jsonl", [with_answer(good_row(), _placeholder)])
    result = kit_here("data", "check", str(path), "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["problems"][0]["file"] == str(path) and report["problems"][0]["line"] == 1


def test_check_of_a_missing_file_is_bad_input(tmp_path):
    result = kit_here("data", "check", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "data file not found" in result.output


# --- the builder ------------------------------------------------------------------------------

def test_building_twice_gives_the_same_bytes(tmp_path):
    for out in ("a", "b"):
        assert kit_here("data", "build", "--out", str(tmp_path / out)).exit_code == 0
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_committed_jsonl_equals_a_fresh_build():
    result = kit_here("data", "build", "--check")
    assert result.exit_code == 0, result.output


def test_build_check_exits_1_when_the_jsonl_is_stale(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(TRAIN.read_bytes().replace(b"Karenga", b"Karenge", 1))
    (tmp_path / "eval.jsonl").write_bytes(EVAL.read_bytes())
    result = kit_here("data", "build", "--check", "--out", str(tmp_path))
    assert result.exit_code == 1 and "train.jsonl: differs from a fresh build" in result.output


def test_builder_refuses_a_refusal_whose_retrieval_is_strong(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "passages.yaml").write_bytes((DATA_DIR / "src" / "passages.yaml").read_bytes())
    question = ("- id: q1\n  persona: educator\n  category: refusal_low_score\n  query: Who made Kwanzaa?\n"
                "  retrieved: {kwanzaa-origins#1: 0.9}\n  answer: The sources are insufficient.\n"
                "  unknowns: {missing_context: [x]}\n")
    (src / "questions-train.yaml").write_text(question, "utf-8")
    (src / "questions-eval.yaml").write_text("[]\n", "utf-8")
    from kit.data.build import build

    with pytest.raises(DataError, match="refuse iff top < 0.6"):
        build(src)


def test_kit_help_does_not_import_transformers():
    code = "import sys; from kit.cli import cli; print('transformers' in sys.modules or 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_reference_answers_pass_the_metrics_own_checks():
    """Every sentence of a shipped answer cites a retrieved passage that holds most of its words
    (kit.metrics' hallucination proxy), so a perfect model would score 0% on it."""
    from kit import io
    from kit.errors import DataError
    from kit.evaluate import score as metrics
    from kit.evaluate.responses import Response

    for path in (TRAIN, EVAL):
        rows = metrics.read_eval_rows(path)
        references = [Response(obj["id"], obj["messages"][-1]["content"], where)
                      for where, obj in io.read_jsonl(path, DataError)]
        result = metrics.score(rows, references)
        assert {r["id"]: r["failed"] for r in result["rows"] if r["failed"]} == {}, path.name
