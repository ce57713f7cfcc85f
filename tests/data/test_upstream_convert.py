"""Upstream's published rows: what `kit data check` says about them, and what `kit data convert`
fixes. The fixture is five rows copied byte for byte from AINative-Studio/kwanzaa @ 118f694
(data/training/kwanzaa_train.jsonl lines 1, 4, 5; kwanzaa_eval.jsonl lines 3, 5), the files that
upstream publishes as the Hub dataset ainativestudio/kwanzaa-training-data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.data import documents, upstream
from kit.data.check import check_files
from kit.errors import DataError

FIXTURE = Path(__file__).parent / "upstream"
TRAIN, EVAL = FIXTURE / "kwanzaa_train.jsonl", FIXTURE / "kwanzaa_eval.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _convert(tmp_path: Path) -> tuple[Path, Path]:
    out = []
    for path in (TRAIN, EVAL):
        target = tmp_path / path.name
        target.write_bytes(b"".join(json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                                    .encode() + b"\n" for r in upstream.convert_file(path)))
        out.append(target)
    return out[0], out[1]


def test_the_parser_reads_upstreams_relevance_score_spelling():
    user = _lines(TRAIN)[0]["messages"][1]["content"]
    assert "Relevance Score: 0.91" in user
    docs = documents.listed_documents(user)
    assert [d.score for d in docs.values()] == [0.91, 0.87]


def test_check_refuses_every_raw_upstream_row_for_what_the_format_lacks():
    report = check_files([TRAIN, EVAL], 2048)
    by_line = {}
    for p in report["problems"]:
        by_line.setdefault((Path(p["file"]).name, p["line"]), []).append(p["reason"])
    assert len(by_line) == 5  # every row
    assert all("missing `id`" in reasons for reasons in by_line.values())
    valid = [reasons for reasons in by_line.values() if not any("fails the schema" in r for r in reasons)]
    assert len(valid) == 4 and all("`meta` is missing or not an object" in reasons for reasons in valid)
    # no Metadata line in the prompt, so no cited source can be matched to a listed document
    assert any("is not among the retrieved documents" in r for r in by_line[("kwanzaa_train.jsonl", 1)])


def test_convert_adds_ids_metadata_lines_and_meta_and_keeps_the_answer(tmp_path):
    train, _ = _convert(tmp_path)
    raw, converted = _lines(TRAIN), _lines(train)
    assert [r["id"] for r in converted] == ["kwanzaa_train-0001", "kwanzaa_train-0002", "kwanzaa_train-0003"]
    for before, after in zip(raw, converted):
        assert after["messages"][0] == before["messages"][0]
        assert json.loads(after["messages"][2]["content"]) == json.loads(before["messages"][2]["content"])
        assert "\n" not in after["messages"][2]["content"]  # compact, as the kit's own rows
    first = converted[0]
    user = first["messages"][1]["content"]
    assert ("Metadata: doc_id=mlk_stride_toward_freedom; chunk_id=mlk_stride_toward_freedom::chunk::12; "
            "namespace=kwanzaa_primary_sources; content_type=memoir; license=Public Domain") in user
    assert "Relevance score: 0.91" in user and "Relevance Score" not in user
    meta = first["meta"]
    assert meta["top_score"] == 0.91 and meta["should_cite"] is True and meta["should_refuse"] is False
    assert meta["persona"] == "researcher" and meta["source_id"] == "kwanzaa_train.jsonl:1"
    assert [d["doc_id"] for d in meta["retrieved"]] == ["mlk_stride_toward_freedom", "montgomery_advertiser_1956"]


def test_after_convert_check_names_only_what_upstream_must_fix(tmp_path):
    train, eval_ = _convert(tmp_path)
    report = check_files([train, eval_], 2048)
    found = sorted((Path(p["file"]).name, p["line"], p["reason"].split(" (")[0].split(":")[0]) for p in report["problems"])
    assert found == [
        ("kwanzaa_eval.jsonl", 1, "query is shared with " + str(train)),  # train and eval ask the same
        ("kwanzaa_eval.jsonl", 2, "answer_json fails the schema"),  # results lack citation_label, canonical_url
        ("kwanzaa_train.jsonl", 1, "retrieval_summary.results does not match the documents listed in the user turn"),
    ]
    assert all(f["tokens"]["max"] <= 2048 for f in report["files"])


def test_a_low_score_row_becomes_should_refuse(tmp_path):
    _, eval_ = _convert(tmp_path)
    refusal = _lines(eval_)[1]
    assert refusal["meta"]["top_score"] == 0.58 and refusal["meta"]["should_refuse"] is True
    assert "content_type=essay; license=Fair Use" in refusal["messages"][1]["content"]  # from the result's metadata


def test_kit_data_convert_writes_canonical_jsonl_and_refuses_to_overwrite(tmp_path):
    from click.testing import CliRunner

    from kit import io
    from kit.cli import cli

    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(cli, ["data", "convert", str(TRAIN), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 3 and summary["sha256"] == io.sha256_file(out)
    for line in out.read_text("utf-8").splitlines():
        assert line == json.dumps(json.loads(line), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    same = CliRunner().invoke(cli, ["data", "convert", str(out), "-o", str(out)])
    assert same.exit_code == 2 and "overwrite the input" in same.output


def test_a_row_not_in_upstreams_format_is_refused_with_its_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1"):
        upstream.convert_file(bad)
