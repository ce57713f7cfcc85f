"""`kit eval` on any input: a bad file exits 2 with one line naming it and the fix; whatever a response
holds is scored, never a crash; every JSON it writes is strict; the same inputs give the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_score import REFUSAL, answer, answer_obj, row, source

from kit import io
from kit.evaluate import score as metrics

from conftest import kit_here


def strict_json(text: str):
    """Parse as a strict parser would: no NaN/Infinity, no repeated key, no lone surrogate."""
    value = io.loads(text)
    stack = [value]
    while stack:
        item = stack.pop()
        strings = [item] if isinstance(item, str) else list(item) if isinstance(item, dict) else []
        for s in strings:
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in s), f"lone surrogate in {s!r}"
        stack.extend(item.values() if isinstance(item, dict) else item if isinstance(item, list) else [])
    return value


def kit_eval(*args: str):
    result = kit_here("eval", *args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def lines(path: Path, *objs) -> str:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8")
    return str(path)


@pytest.fixture
def data(tmp_path) -> str:
    return lines(tmp_path / "eval.jsonl", row("e1"), row("e2", docs=[]))


# ---- bad files: exit 2, one line ---------------------------------------------------------------

HUGE = "9" * 5000


@pytest.mark.parametrize("line, says", [
    ('{"id": "e1", "response": "x", "score": NaN}', "NaN is not a JSON number"),
    ('{"id": "e1", "response": "x", "score": -Infinity}', "-Infinity is not a JSON number"),
    ('{"id": "e1", "response": "x", "score": 1e400}', "too large to be a finite number"),
    ('{"id": "e1", "response": "x", "n": ' + HUGE + "}", "line is not valid JSON"),
    ('{"id": "e1", "response": "x", "response": "y"}', "duplicate key 'response'"),
    ('{"id": "e1", "response": "x", "deep": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than"),
    ('{"id": "e1", "response": ["not", "text"]}', "no string `response`"),
    ('["e1", "x"]', "response has no string `id`"),
    ('{"id": "e1", "response": "x"', "line is not valid JSON"),
])
def test_a_bad_responses_line_exits_2_naming_its_line(tmp_path, data, line, says):
    responses = lines(tmp_path / "r.jsonl", {"id": "e2", "response": REFUSAL}, line)
    result = kit_eval("--responses", responses, "--data", data)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and f"{responses}:2" in result.output and "Fix:" in result.output
    assert says in result.output


def _row(**changes) -> dict:
    r = row("e1")
    for key, value in changes.items():
        if key == "messages":
            r["messages"] = value
        else:
            r["meta"][key] = value
    return r


@pytest.mark.parametrize("bad, says", [
    (json.dumps(_row(messages="Retrieved Documents: [1] x")), "`messages` is a string, not a list"),
    (json.dumps(_row(messages=5)), "`messages` is a number, not a list"),
    (json.dumps(_row(top_score=1)).replace('"top_score": 1', '"top_score": 1e400'), "too large to be a finite"),
    (json.dumps(_row(top_score=10 ** 400)), "meta.top_score is infinite"),
    (json.dumps(_row(top_score="0.9")), "meta.top_score is a string"),
    (json.dumps(_row(top_score=0.9)).replace('"top_score": 0.9', '"top_score": NaN'), "NaN is not a JSON number"),
    (json.dumps(_row(retrieved=[{"n": 10 ** 30, "doc_id": "a", "chunk_id": "a::chunk::1"}])), "not a document number"),
    (json.dumps(_row(retrieved=[{"n": 1}, {"n": 1}])), "numbers two documents alike"),
    (json.dumps(_row(retrieved=[{"n": 1, "score": "high"}])), "meta.retrieved[0].score is a string"),
    (json.dumps(_row(retrieved={"n": 1})), "meta.retrieved must be a list"),
    (json.dumps(_row(should_cite="yes")), "meta.should_cite is 'yes'"),
    (json.dumps({"id": "e1", "meta": []}), "no `meta` object"),
    ('{"id": "e1", "meta": {"top_score": ' + HUGE + "}}", "line is not valid JSON"),
])
def test_a_bad_eval_row_exits_2_naming_its_line(tmp_path, bad, says):
    eval_file = lines(tmp_path / "eval.jsonl", bad)
    responses = lines(tmp_path / "r.jsonl", {"id": "e1", "response": answer()})
    result = kit_eval("--responses", responses, "--data", eval_file)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and f"{eval_file}:1" in result.output and "Fix:" in result.output
    assert says in result.output


def test_a_file_that_is_not_utf8_or_not_there_exits_2(tmp_path, data):
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "e1", "response": "caf\xe9"}\n')
    for responses in (str(tmp_path / "latin1.jsonl"), str(tmp_path / "missing.jsonl"), str(tmp_path)):
        result = kit_eval("--responses", responses, "--data", data)
        assert result.exit_code == 2 and result.output.count("\n") == 1 and "Fix:" in result.output


# ---- odd responses: scored, never a crash -------------------------------------------------------

ODD_RESPONSES = {
    "huge integer": '{"answer": {"text": "x", "n": ' + HUGE + "}}",
    "huge number": '{"answer": {"text": "x"}, "score": 1e999}',
    "NaN": '{"answer": {"text": "x", "confidence": NaN}}',
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep object": '{"a": ' * 70 + "1" + "}" * 70,
    "repeated key": answer()[:-1] + ', "version": "kwanzaa.answer.v1"}',
    "huge marker": answer(text="Karenga created Kwanzaa [" + HUGE + "]."),
    "long bracketed number": answer(text="Karenga created Kwanzaa [12345678901]."),
    "lone surrogate": answer(text="Karenga \ud800 created Kwanzaa in 1966 [1].", sources=[source(1)]),
    "surrogate key": json.dumps({"\udc80": 1}),
    "bad url": json.dumps(answer_obj(sources=[source(1, canonical_url="http://[unclosed")])),
    "sources not a list": json.dumps({**answer_obj(), "sources": {"doc_id": "x"}}),
    "answer not an object": json.dumps({**answer_obj(), "answer": "text"}),
    "sources of odd things": json.dumps({**answer_obj(), "sources": [None, 1.5, [1], "s", {"doc_id": [1]}]}),
    "dots": answer(text="." * 100_000 + "x"),
    "markup": answer(text="[bold red]Karenga[/] created Kwanzaa [1]."),
}


def test_no_response_can_crash_the_scoring_and_every_output_is_strict_json(tmp_path, data):
    objs = [{"id": "e1", "response": text} for text in ODD_RESPONSES.values()]
    for i, obj in enumerate(objs):
        responses = lines(tmp_path / f"r{i}.jsonl", obj, {"id": "e2", "response": REFUSAL})
        out = tmp_path / f"m{i}.json"
        table = kit_eval("--responses", responses, "--data", data, "--output", str(out))
        assert table.exit_code == 0, (list(ODD_RESPONSES)[i], table.output)
        as_json = kit_eval("--responses", responses, "--data", data, "--json")
        assert strict_json(as_json.stdout) == strict_json(out.read_text("utf-8"))


def test_how_odd_responses_score():
    rows = {name: metrics.score([row("e1")], [{"id": "e1", "response": text}])["rows"][0]
            for name, text in ODD_RESPONSES.items()}
    not_parsed = {"huge integer", "huge number", "NaN", "deep", "deep object"}
    assert {name for name, r in rows.items() if not r["parsed"]} == not_parsed
    assert "deeper than 64 levels" in rows["deep"]["parse_error"]
    assert "integer longer than" in rows["huge integer"]["parse_error"]
    assert rows["repeated key"]["parsed"] and not rows["repeated key"]["schema_valid"]
    assert rows["bad url"]["parsed"] and any("canonical_url" in e for e in rows["bad url"]["schema_errors"])
    assert rows["huge marker"]["markers_cited"] == [] and rows["long bracketed number"]["markers_cited"] == []
    assert rows["lone surrogate"]["schema_valid"] and rows["lone surrogate"]["failed"] == []


def test_a_lone_surrogate_in_an_answer_prints_in_the_table_and_the_output_file(tmp_path, data):
    made_up = answer(text="Kwanzaa \ud800 began on Mars [1].", sources=[source(1)])
    responses = lines(tmp_path / "r.jsonl", {"id": "e1", "response": made_up}, {"id": "e2", "response": REFUSAL})
    result = kit_eval("--responses", responses, "--data", data, "--output", str(tmp_path / "m.json"))
    assert result.exit_code == 0 and "Kwanzaa \ufffd began on Mars" in result.output
    written = strict_json((tmp_path / "m.json").read_text("utf-8"))
    assert written["rows"][0]["sentences_unsupported"][0]["sentence"] == "Kwanzaa \ufffd began on Mars [1]."


def test_ids_and_personas_with_lone_surrogates_or_markup_print_and_write(tmp_path):
    odd = row("e\udc801", persona="[red]edu\ud800[/]")
    data = lines(tmp_path / "eval.jsonl", odd)
    responses = lines(tmp_path / "r.jsonl", {"id": "e\udc801", "response": "prose"})
    result = kit_eval("--responses", responses, "--data", data, "--output", str(tmp_path / "m.json"))
    assert result.exit_code == 0 and "[red]edu\ufffd[/]" in result.output and "e\ufffd1" in result.output
    assert strict_json((tmp_path / "m.json").read_text("utf-8"))["rows"][0]["id"] == "e\ufffd1"
    assert kit_here("compare", str(tmp_path / "m.json"), str(tmp_path / "m.json")).exit_code == 0


def test_two_runs_give_identical_bytes(tmp_path, data):
    responses = lines(tmp_path / "r.jsonl", {"id": "e2", "response": REFUSAL}, {"id": "e1", "response": answer()})
    outs = []
    for i in range(2):
        kit_eval("--responses", responses, "--data", data, "--output", str(tmp_path / f"m{i}.json"))
        outs.append(kit_eval("--responses", responses, "--data", data, "--json").stdout)
    assert (tmp_path / "m0.json").read_bytes() == (tmp_path / "m1.json").read_bytes()
    assert outs[0] == outs[1]


# ---- compare: a hand-edited metrics file is one line, too -----------------------------------------

@pytest.mark.parametrize("change", [
    lambda m: m["metrics"]["parse_rate"].update(numerator="1"),
    lambda m: m["metrics"]["parse_rate"].update(numerator=5, denominator=2),
    lambda m: m["metrics"]["parse_rate"].update(numerator=int(HUGE[:4000]), denominator=1),
    lambda m: m["metrics"]["citation_coverage"].update(by_persona=[]),
    lambda m: m["metrics"]["citation_coverage"]["by_persona"]["educator"].update(meets_target="yes"),
    lambda m: m.update(schema="kit.metrics.v1"),
])
def test_compare_refuses_a_malformed_metrics_file_in_one_line(tmp_path, data, change):
    responses = lines(tmp_path / "r.jsonl", {"id": "e1", "response": answer()}, {"id": "e2", "response": REFUSAL})
    kit_eval("--responses", responses, "--data", data, "--output", str(tmp_path / "good.json"))
    broken = json.loads((tmp_path / "good.json").read_text())
    change(broken)
    (tmp_path / "bad.json").write_text(json.dumps(broken))
    result = kit_here("compare", str(tmp_path / "good.json"), str(tmp_path / "bad.json"))
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "Fix:" in result.output, result.output
    assert "Traceback" not in result.output


# ---- any text at all ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
answer_like = st.builds(
    lambda text, sources, completeness: json.dumps({**answer_obj(), "answer": {"text": text,
                                                                               "completeness": completeness},
                                                    "sources": sources}),
    st.text(alphabet=st.sampled_from(list("Karenga 1966 [1][2][9] .!?\n\ud800{}\"\\")), max_size=80),
    st.lists(st.sampled_from([source(1), source(2), source(1, doc_id="x"), {}, None]), max_size=3),
    st.sampled_from(["complete", "insufficient_data", "partial"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), json_values.map(json.dumps), answer_like))
def test_any_response_text_scores_and_serialises_strictly(text):
    result = metrics.score([row("e1")], [{"id": "e1", "response": text}])
    strict_json(io.dumps(result))
    assert result["rows"][0]["parsed"] in (True, False)


def test_the_real_command_prints_odd_answers_without_a_traceback(tmp_path, data, run_kit):
    responses = lines(tmp_path / "r.jsonl", {"id": "e1", "response": ODD_RESPONSES["lone surrogate"]},
                      {"id": "e2", "response": "[bold]\udcff " + REFUSAL})
    proc = run_kit("eval", "--responses", responses, "--data", data, "--output", str(tmp_path / "m.json"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "[bold]" in proc.stdout and "Metrics written to" in proc.stdout  # markup shown as text
    strict_json((tmp_path / "m.json").read_text("utf-8"))
    as_json = run_kit("eval", "--responses", responses, "--data", data, "--json")
    assert strict_json(as_json.stdout) == strict_json((tmp_path / "m.json").read_text("utf-8"))


def test_a_schema_error_quoting_a_long_value_is_cut_short():
    long_text = answer(text="Kwanzaa " * 5000 + "[1].", sources=[source(1)])
    detail = metrics.score([row("e1")], [{"id": "e1", "response": long_text}])["rows"][0]
    assert detail["schema_errors"] and all(len(e) < 260 for e in detail["schema_errors"])
    assert any(e.startswith("answer/text: ") and e.endswith("...") for e in detail["schema_errors"])
