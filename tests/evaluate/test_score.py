"""The metrics of the four objectives, as a specification: each test is one rule of docs/metrics.md."""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import pytest

from kit import io
from kit.errors import DataError
from kit.evaluate import claims, responses
from kit.evaluate import score as metrics

from conftest import kit_here

DOCS = [
    {"n": 1, "citation_label": "Karenga, Kwanzaa origins (1966)", "doc_id": "karenga-1966",
     "chunk_id": "karenga-1966::chunk::1", "canonical_url": "https://example.org/karenga", "namespace": "primary",
     "score": 0.91},
    {"n": 2, "citation_label": "Nguzo Saba overview", "doc_id": "nguzo-saba", "chunk_id": "nguzo-saba::chunk::3",
     "canonical_url": "https://example.org/nguzo", "namespace": "primary", "score": 0.82},
]
TEXTS = {
    1: "Maulana Karenga created Kwanzaa in 1966 as a week-long celebration of African American culture.",
    2: "The seven principles, the Nguzo Saba, include Umoja (unity) and Kujichagulia (self-determination).",
}
GOOD_TEXT = "Maulana Karenga created Kwanzaa in 1966 [1]. Its seven principles include Umoja, unity [2]."


def prompt(docs: list[dict]) -> str:
    if not docs:
        return "No documents were retrieved for this query.\n\nQuery: What is Kwanzaa?\n\nAnswer as answer_json."
    listed = "\n\n".join(f"[{d['n']}] {d['citation_label']}\nRelevance score: {d['score']}\n"
                         f"Source: Example Org, 1966\nContent: {TEXTS[d['n']]}\nURL: {d['canonical_url']}"
                         for d in docs)
    return f"Retrieved Documents:\n\n{listed}\n\nQuery: What is Kwanzaa?\n\nAnswer only with answer_json."


def row(row_id: str, persona: str = "educator", docs: list[dict] | None = None, top: float | None = "auto",
        category: str = "grounded") -> dict:
    docs = DOCS if docs is None else docs
    if top == "auto":
        top = max((d["score"] for d in docs), default=None)
    docs = [{**d, "score": top} for d in docs] if top is not None else docs
    return {"id": row_id, "messages": [{"role": "system", "content": "You are an educator."},
                                       {"role": "user", "content": prompt(docs)},
                                       {"role": "assistant", "content": "{}"}],
            "meta": {"persona": persona, "category": category, "retrieved": docs, "top_score": top,
                     "should_cite": top is not None and top >= 0.7,
                     "should_refuse": top is None or top < 0.6 or not docs}}


def source(n: int, **changes) -> dict:
    d = DOCS[n - 1]
    return {"citation_label": d["citation_label"], "canonical_url": d["canonical_url"], "source_org": "Example Org",
            "year": 1966, "content_type": "article", "license": "CC-BY-4.0", "namespace": "primary",
            "doc_id": d["doc_id"], "chunk_id": d["chunk_id"], **changes}


def answer_obj(text: str = GOOD_TEXT, sources: list | None = None, completeness: str = "complete") -> dict:
    return {"version": "kwanzaa.answer.v1", "persona": "educator",
            "answer": {"text": text, "completeness": completeness},
            "sources": [source(1), source(2)] if sources is None else sources,
            "retrieval_summary": {"query": "What is Kwanzaa?", "top_k": 5, "namespaces": ["primary"], "results": []},
            "unknowns": {"unsupported_claims": [], "missing_context": [], "clarifying_questions": []}}


def answer(**kw) -> str:
    return json.dumps(answer_obj(**kw))


REFUSAL = answer(text="The retrieved sources do not cover this question.", sources=[],
                 completeness="insufficient_data")


def score_one(text: str, r: dict | None = None) -> tuple[dict, dict]:
    r = r or row("eval-0001")
    result = metrics.score([r], [{"id": r["id"], "response": text}])
    return result["metrics"], result["rows"][0]


def frac(m: dict) -> tuple[int, int]:
    return m["numerator"], m["denominator"]


# ---- JSON compliance ---------------------------------------------------------------------------

def test_a_clean_grounded_answer_passes_every_check():
    m, detail = score_one(answer())
    assert detail["failed"] == []
    assert all(v["meets_target"] is True for k, v in m.items() if k not in ("refusal_precision", "refusal_recall"))
    assert m["refusal_precision"]["value"] is None and m["refusal_recall"]["value"] is None


def test_whitespace_around_the_json_is_allowed():
    m, _ = score_one("\n  " + answer() + "\n\n")
    assert frac(m["parse_rate"]) == (1, 1) and frac(m["schema_compliance"]) == (1, 1)


@pytest.mark.parametrize("text, reason", [
    ("Here is the answer: " + answer(), "text around the JSON object: 'Here is the answer:"),
    (answer() + "\nI hope this helps!", "text around the JSON object: '... \\nI hope this helps!'"),
    ("```json\n" + answer() + "\n```", "text around the JSON object: '```json\\n ... \\n```'"),
    ("{\"version\": ", "not JSON: Expecting value"),
    ("", "empty response"),
    ("   \n", "empty response"),
    ('{"answer": {"text": "x", "confidence": NaN}}', "NaN is not a JSON number"),
    ("[1, 2]", "a JSON array, not an object"),
    ('"Kwanzaa began in 1966."', "a JSON string, not an object"),
])
def test_anything_but_one_json_object_fails_parse_and_schema(text, reason):
    m, detail = score_one(text)
    assert frac(m["parse_rate"]) == (0, 1) and frac(m["schema_compliance"]) == (0, 1)
    assert reason in detail["parse_error"]
    assert detail["failed"][:2] == ["parse", "schema"]


def test_wrong_enum_value_parses_but_fails_schema():
    obj = answer_obj()
    obj["answer"]["completeness"] = "mostly"
    m, detail = score_one(json.dumps(obj))
    assert frac(m["parse_rate"]) == (1, 1) and frac(m["schema_compliance"]) == (0, 1)
    assert any(e.startswith("answer/completeness") for e in detail["schema_errors"])


def test_missing_required_key_fails_schema():
    obj = answer_obj()
    del obj["unknowns"]
    _, detail = score_one(json.dumps(obj))
    assert detail["parsed"] and not detail["schema_valid"]
    assert any("unknowns" in e for e in detail["schema_errors"])


def test_schema_compliance_is_over_all_responses_not_only_parsed_ones():
    rows = [row(f"eval-{i}") for i in range(4)]
    bad_enum = answer_obj()
    bad_enum["persona"] = "poet"
    texts = [answer(), answer(), "not json", json.dumps(bad_enum)]
    result = metrics.score(rows, [{"id": r["id"], "response": t} for r, t in zip(rows, texts)])
    assert frac(result["metrics"]["parse_rate"]) == (3, 4)
    assert frac(result["metrics"]["schema_compliance"]) == (2, 4)
    assert result["metrics"]["schema_compliance"]["value"] == 0.5


# ---- citation following --------------------------------------------------------------------------

def test_coverage_counts_should_cite_rows_with_at_least_one_source_per_persona():
    rows = [row("e1", "educator"), row("e2", "educator"), row("r1", "researcher"), row("c1", "creator"),
            row("low", "builder", top=0.65)]  # 0.65: not a should-cite row
    texts = {"e1": answer(), "e2": answer(sources=[]), "r1": answer(sources=[source(2)]), "c1": "prose",
             "low": answer(sources=[])}
    m = metrics.score(rows, [{"id": k, "response": v} for k, v in texts.items()])["metrics"]
    cov = m["citation_coverage"]
    assert frac(cov) == (2, 4)
    assert {p: frac(v) for p, v in cov["by_persona"].items()} == {
        "builder": (0, 0), "creator": (0, 1), "educator": (1, 2), "researcher": (1, 1)}
    assert cov["by_persona"]["builder"]["value"] is None and cov["by_persona"]["builder"]["meets_target"] is None
    assert cov["by_persona"]["researcher"]["meets_target"] is True


def test_citing_a_document_that_was_not_retrieved_lowers_source_accuracy():
    stranger = source(1, doc_id="other-doc", chunk_id="other-doc::chunk::9", citation_label="Some other book")
    m, detail = score_one(answer(sources=[source(1), source(2), stranger]))
    assert frac(m["source_accuracy"]) == (2, 3) and m["source_accuracy"]["meets_target"] is False
    assert frac(m["citation_accuracy"]) == (2, 2)
    assert detail["sources_invalid"] == [{"source": '["other-doc", "other-doc::chunk::9"]',
                                          "reason": "not retrieved"}]
    assert "source_accuracy" in detail["failed"] and "marker_accuracy" not in detail["failed"]


def test_a_source_is_identified_by_doc_id_and_chunk_id_never_by_label():
    same_label_invented_ids = source(2, doc_id="renamed", chunk_id="renamed::chunk::1")
    same_ids_other_label = source(1, citation_label="a different label")
    wrong_chunk = source(2, chunk_id="nguzo-saba::chunk::2")
    m, detail = score_one(answer(sources=[same_label_invented_ids, same_ids_other_label, wrong_chunk]))
    assert frac(m["source_accuracy"]) == (1, 3)
    # document 2 is not among the sources by identity, so its marker is not valid either
    assert detail["markers_invalid"] == [{"n": 2, "reason": "not in sources"}]


def test_a_marker_of_a_document_that_was_not_retrieved_lowers_citation_accuracy():
    m, detail = score_one(answer(text="Kwanzaa was created in 1966 [1]. It lasts seven days [7].",
                                 sources=[source(1)]))
    assert detail["markers_cited"] == [1, 7]
    assert detail["markers_invalid"] == [{"n": 7, "reason": "not retrieved"}]
    assert frac(m["citation_accuracy"]) == (1, 2) and frac(m["source_accuracy"]) == (1, 1)
    assert m["citation_accuracy"]["invalid"] == {"not retrieved": 1}


def test_markers_and_sources_must_agree_both_ways():
    # [2] is in the text but document 2 is not in sources; document 1 is in sources but never cited
    m, detail = score_one(answer(text="Its seven principles include Umoja, unity [2].", sources=[source(1)]))
    assert detail["markers_invalid"] == [{"n": 2, "reason": "not in sources"}]
    assert [s["reason"] for s in detail["sources_invalid"]] == ["not cited in the text"]
    assert frac(m["citation_accuracy"]) == (0, 1) and frac(m["source_accuracy"]) == (0, 1)
    assert {"marker_accuracy", "source_accuracy"} <= set(detail["failed"])


def test_duplicate_citations_count_once():
    text = "Karenga created Kwanzaa in 1966 [1][1]. Karenga created it as a celebration [1, 1]."
    relabelled = source(1, citation_label="the same document under another label")
    m, detail = score_one(answer(text=text, sources=[source(1), source(1), relabelled]))
    assert detail["sources_cited"] == 1 and detail["markers_cited"] == [1]
    assert frac(m["citation_accuracy"]) == (1, 1) and frac(m["source_accuracy"]) == (1, 1)


def test_no_citations_at_all_leaves_accuracy_without_data():
    m, _ = score_one(answer(text="Kwanzaa is a holiday.", sources=[]))
    for name in ("citation_accuracy", "source_accuracy"):
        assert frac(m[name]) == (0, 0) and m[name]["value"] is None and m[name]["meets_target"] is None


# ---- refusal correctness ---------------------------------------------------------------------

def test_refusal_confusion_matrix_precision_and_recall():
    rows = [row("tp", docs=[]), row("fn", docs=[]), row("fp"), row("tn"), row("weak", top=0.5)]
    texts = {"tp": REFUSAL, "fn": answer(sources=[]),  # answers when it should refuse
             "fp": REFUSAL,  # refuses when it should answer
             "tn": answer(), "weak": "Sorry, I cannot answer that."}  # unparseable = not refused
    result = metrics.score(rows, [{"id": k, "response": v} for k, v in texts.items()])
    m = result["metrics"]
    assert m["refusal_precision"]["confusion"] == {"true_positive": 1, "false_positive": 1, "false_negative": 2,
                                                   "true_negative": 1}
    assert frac(m["refusal_precision"]) == (1, 2) and frac(m["refusal_recall"]) == (1, 3)
    failed = {r["id"]: r["failed"] for r in result["rows"]}
    assert "false_refusal" in failed["fp"] and "missed_refusal" in failed["fn"]
    assert "missed_refusal" in failed["weak"]


def test_a_model_that_never_refuses_has_no_precision_and_zero_recall():
    m, _ = score_one(answer(sources=[]), row("x", docs=[]))
    assert frac(m["refusal_precision"]) == (0, 0) and m["refusal_precision"]["value"] is None
    assert frac(m["refusal_recall"]) == (0, 1) and m["refusal_recall"]["meets_target"] is False


# ---- retrieval usage ------------------------------------------------------------------------

def test_utilization_counts_rows_with_top_score_at_least_0_7_that_cite_retrieved_context():
    rows = [row("at", top=0.7), row("below", top=0.69), row("nocite"), row("wrongcite"), row("srconly"),
            row("markonly")]
    stranger = source(1, doc_id="x", chunk_id="x::chunk::1", citation_label="x")
    texts = {"at": answer(), "below": answer(text="Kwanzaa is a holiday.", sources=[]),
             "nocite": answer(text="Kwanzaa is a holiday.", sources=[]),
             "wrongcite": answer(text="Kwanzaa is a holiday [9].", sources=[stranger]),
             "srconly": answer(text="Kwanzaa is a holiday.", sources=[source(2)]),
             "markonly": answer(text="Kwanzaa is a holiday [2].", sources=[])}
    result = metrics.score(rows, [{"id": k, "response": v} for k, v in texts.items()])
    assert frac(result["metrics"]["retrieval_utilization"]) == (1, 5)
    uses = {r["id"]: r["uses_context"] for r in result["rows"]}
    # a document counts as used when the text cites it and sources lists it: one without the other does not
    assert uses == {"at": True, "below": False, "nocite": False, "srconly": False, "wrongcite": False,
                    "markonly": False}


def test_hallucination_proxy_flags_uncited_miscited_and_off_text_sentences():
    text = ("Maulana Karenga created Kwanzaa in 1966 [1]. "       # supported
            "It is celebrated by millions across Europe. "           # no citation
            "Kwanzaa ends with a feast called Karamu [2]. "          # cited, but not in document 2
            "The principles include Umoja [5].")                     # marker not retrieved
    m, detail = score_one(answer(text=text))
    assert frac(m["hallucination_rate"]) == (1, 1)  # one answer, and it has unsupported claims
    assert frac(m["hallucination_rate"]["claims"]) == (3, 4)
    reasons = [s["reason"] for s in detail["sentences_unsupported"]]
    assert reasons[0] == "no citation" and "content words in cited text" in reasons[1]
    assert reasons[2] == "cites [5], none retrieved"


def test_hallucination_skips_refusals_unparseable_responses_and_claimless_sentences():
    rows = [row("ref", docs=[]), row("prose"), row("short")]
    texts = {"ref": REFUSAL, "prose": "Kwanzaa is from Mars.", "short": answer(text="Yes. [1]\nKarenga created "
                                                                                   "Kwanzaa in 1966 [1].")}
    m = metrics.score(rows, [{"id": k, "response": v} for k, v in texts.items()])["metrics"]
    assert frac(m["hallucination_rate"]) == (0, 1)


def test_a_sentence_whose_cited_text_is_unknown_is_unverifiable_not_counted():
    r = row("e1")
    r["messages"][1]["content"] = "Query: What is Kwanzaa?"  # no Retrieved Documents block, no meta text
    m, detail = score_one(answer(), r)
    assert frac(m["hallucination_rate"]) == (0, 0) and m["hallucination_rate"]["unverifiable_sentences"] == 2


def test_document_text_in_meta_is_used_before_the_prompt():
    r = row("e1")
    r["meta"]["retrieved"][0]["text"] = "Something about the solstice only."
    m, _ = score_one(answer(text="Maulana Karenga created Kwanzaa in 1966 [1]."), r)
    assert frac(m["hallucination_rate"]) == (1, 1)


def test_documents_are_read_from_the_retrieved_documents_block_of_the_user_turn():
    docs = responses.documents_in_prompt(row("e1")["messages"])
    assert sorted(docs) == [1, 2]
    assert TEXTS[1] in docs[1] and "Query" not in docs[2] and TEXTS[1] not in docs[2]


def test_sentences_keep_trailing_markers_and_do_not_split_after_dr_or_initials():
    text = "Dr. Maulana Karenga created it.[1] It has seven principles. [2] W. E. B. Du Bois wrote.\n- A bullet"
    assert claims.sentences(text) == ["Dr. Maulana Karenga created it.[1]", "It has seven principles. [2]",
                                       "W. E. B. Du Bois wrote.", "- A bullet"]


def test_content_words_drop_stop_words_keep_numbers_and_fold_plurals():
    assert claims.content_words("The principles of Kwanzaa, per the 7 sources, began in 1966") == {
        "principle", "kwanzaa", "per", "began", "7", "1966"}


# ---- targets, empty sets, determinism, bad input ---------------------------------------------

def test_empty_eval_set_gives_null_values_and_no_crash():
    result = metrics.score([], [])
    assert all(m["denominator"] == 0 and m["value"] is None and m["meets_target"] is None
               for m in result["metrics"].values())
    assert result["verdict"]["meets_targets"] is False
    assert result["verdict"]["no_data"] == list(metrics.TARGETS)


@pytest.mark.parametrize("name, num, den, target, launch", [
    ("citation_accuracy", 19, 20, True, True),
    ("citation_accuracy", 18, 20, False, False),
    ("refusal_precision", 87, 100, False, True),  # misses 90%, meets the 85% launch bar
    ("refusal_recall", 4, 5, False, True),
    ("hallucination_rate", 1, 20, True, True),  # exactly 5%
    ("hallucination_rate", 2, 39, False, False),
    ("parse_rate", 99, 100, False, False),
])
def test_targets_are_compared_exactly_on_the_fraction(name, num, den, target, launch):
    assert metrics.meets(name, num, den) is target
    assert metrics.meets(name, num, den, "launch") is launch


def test_same_inputs_in_any_order_give_the_same_scores():
    rows = [row(f"eval-{i:04d}", persona=p) for i, p in enumerate(metrics.PERSONAS * 3)]
    resp = [{"id": r["id"], "response": t} for r, t in zip(rows, [answer(), REFUSAL, "x", answer(sources=[])] * 3)]
    first = metrics.score(rows, resp)
    assert json.dumps(metrics.score(rows, resp)) == json.dumps(first)
    random.Random(7).shuffle(rows)
    random.Random(8).shuffle(resp)
    shuffled = metrics.score(rows, resp)
    assert shuffled["metrics"] == first["metrics"] and [r["id"] for r in shuffled["rows"]] == sorted(
        r["id"] for r in rows)
    # only each row's `where` (the response's position) may move
    strip = lambda result: [{k: v for k, v in r.items() if k != "where"} for r in result["rows"]]  # noqa: E731
    assert strip(shuffled) == strip(first)


@pytest.mark.parametrize("responses, message", [
    ([{"id": "eval-0001", "response": "x"}, {"id": "eval-9999", "response": "x"}], "'eval-9999' is not an id"),
    ([], "'eval-0001' has no response"),
    ([{"id": "eval-0001", "response": "x"}, {"id": "eval-0001", "response": "y"}], "second response"),
    ([{"response": "x"}], "no string `id`"),
    ([{"id": "eval-0001", "response": None}], "no string `response`"),
])
def test_unmatched_or_malformed_responses_are_refused(responses, message):
    with pytest.raises(DataError, match=message):
        metrics.score([row("eval-0001")], responses)


def test_eval_row_without_meta_is_refused():
    with pytest.raises(DataError, match="no `meta` object"):
        metrics.score([{"id": "a", "messages": []}], [{"id": "a", "response": ""}])


EVAL_SET = Path(__file__).resolve().parents[2] / "data" / "kwanzaa" / "eval.jsonl"


@pytest.mark.skipif(not EVAL_SET.is_file(), reason="data/kwanzaa/eval.jsonl is not there yet")
def test_the_eval_sets_own_reference_answers_fail_no_check():
    rows = metrics.read_eval_rows(EVAL_SET)
    references = [metrics.Response(obj["id"], obj["messages"][-1]["content"], where)
                  for where, obj in io.read_jsonl(EVAL_SET, DataError)]
    result = metrics.score(rows, references)
    assert {r["id"]: r["failed"] for r in result["rows"] if r["failed"]} == {}


# ---- the CLI ---------------------------------------------------------------------------------

def write_jsonl(path, objs) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path):
    rows = [row("eval-0001"), row("eval-0002", "researcher"), row("eval-0003", docs=[])]
    data = write_jsonl(tmp_path / "eval.jsonl", rows)
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": "eval-0001", "response": answer()},
                                                 {"id": "eval-0002", "response": answer()},
                                                 {"id": "eval-0003", "response": REFUSAL}])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "eval-0001", "response": "```json\n{}\n```"},
                                               {"id": "eval-0002", "response": answer(sources=[])},
                                               {"id": "eval-0003", "response": answer(sources=[])}])
    return tmp_path, data, good, bad


def invoke(*args):
    return kit_here(*args, catch_exceptions=False)


def test_kit_eval_scores_responses_without_a_model_and_writes_metrics_json(files):
    tmp, data, good, _ = files
    res = invoke("eval", "--responses", good, "--data", data, "--output", str(tmp / "out" / "metrics.json"))
    assert res.exit_code == 0, res.output
    assert "parse_rate" in res.output and "All targets met" in res.output
    written = json.loads((tmp / "out" / "metrics.json").read_text())
    assert written["verdict"]["meets_targets"] is True and len(written["inputs"]["data"]["sha256"]) == 64
    as_json = json.loads(invoke("eval", "--responses", good, "--data", data, "--json").output)
    assert as_json == written


def test_kit_eval_reports_misses_and_worst_rows_but_exits_0(files):
    _, data, _, bad = files
    res = invoke("eval", "--responses", bad, "--data", data)
    assert res.exit_code == 0
    assert "FAIL" in res.output and "Worst rows" in res.output and "eval-0001" in res.output


def test_kit_eval_fail_under_targets_exits_1_when_a_target_is_missed(files):
    _, data, good, bad = files
    assert invoke("eval", "--responses", bad, "--data", data, "--fail-under-targets").exit_code == 1
    assert invoke("eval", "--responses", good, "--data", data, "--fail-under-targets").exit_code == 0


def test_kit_eval_unknown_id_exits_2_naming_file_and_line(files):
    tmp, data, _, _ = files
    resp = write_jsonl(tmp / "r.jsonl", [{"id": "eval-0001", "response": "{}"}, {"id": "nope", "response": "{}"}])
    res = invoke("eval", "--responses", resp, "--data", data)
    assert res.exit_code == 2
    assert f"{resp}:2" in res.output and "'nope'" in res.output and "Fix:" in res.output


def test_kit_eval_needs_both_files_or_a_run_dir(files):
    _, data, _, _ = files
    assert invoke("eval", "--data", data).exit_code == 2
    assert invoke("eval").exit_code == 2


def test_kit_eval_run_dir_hands_over_to_evaluate_run_and_refuses_responses_beside_it(files, monkeypatch):
    tmp, data, good, _ = files
    calls = []
    fake = types.ModuleType("kit.evaluate.runner")
    fake.evaluate_run = lambda run_dir, base_only=False, on_batch=None: calls.append(run_dir) or metrics.score_files(
        tmp / "eval.jsonl", tmp / "good.jsonl")
    monkeypatch.setitem(sys.modules, "kit.evaluate.runner", fake)
    assert invoke("eval", str(tmp)).exit_code == 0 and calls == [tmp]
    both = invoke("eval", str(tmp), "--responses", good, "--data", data)
    assert both.exit_code == 2 and "not one" in both.output and calls == [tmp]


def test_kit_compare_shows_both_sides_and_deltas(files):
    tmp, data, good, bad = files
    invoke("eval", "--responses", bad, "--data", data, "-o", str(tmp / "base.json"))
    (tmp / "run" / "eval").mkdir(parents=True)
    invoke("eval", "--responses", good, "--data", data, "-o", str(tmp / "run" / "eval" / "metrics.json"))
    res = invoke("compare", str(tmp / "base.json"), str(tmp / "run"), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["labels"] == {"a": "base", "b": "adapter"}
    parse = out["metrics"]["parse_rate"]
    assert (frac(parse["a"]), frac(parse["b"]), parse["change"]) == ((2, 3), (3, 3), "better")
    assert parse["delta"] == pytest.approx(1 / 3)
    assert "citation_coverage[educator]" in out["metrics"]
    table = invoke("compare", str(tmp / "base.json"), str(tmp / "run"), "--label-a", "OLMo", "--label-b", "OLMo+LoRA")
    assert table.exit_code == 0 and "OLMo+LoRA" in table.output and "+33.3 pts" in table.output


def test_kit_compare_refuses_a_file_that_is_not_metrics(files):
    tmp, data, _, _ = files
    res = invoke("compare", data, str(tmp / "missing"))
    assert res.exit_code == 2 and "metrics" in res.output


def test_sentences_do_not_end_inside_a_case_name():
    assert claims.sentences("Brown v. Board of Education was decided in 1954 [1]. It ended school segregation [2].") == [
        "Brown v. Board of Education was decided in 1954 [1].", "It ended school segregation [2]."]


def test_a_lower_case_word_after_a_stop_or_a_line_break_still_starts_a_sentence():
    """Only abbreviations and initials join across a stop: an uncited clause cannot ride on the
    previous sentence's marker."""
    assert claims.sentences("Karenga created Kwanzaa [1]. and it is older than the republic.") == [
        "Karenga created Kwanzaa [1].", "and it is older than the republic."]
    assert claims.sentences("Karenga created Kwanzaa [1]\nit is celebrated on the moon") == [
        "Karenga created Kwanzaa [1]", "it is celebrated on the moon"]
    m, detail = score_one(answer(text="Maulana Karenga created Kwanzaa in 1966 [1]. and it is celebrated on Mars"))
    assert [s["reason"] for s in detail["sentences_unsupported"]] == ["no citation"]
