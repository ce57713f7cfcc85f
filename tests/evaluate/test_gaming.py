"""Answer sets that do no real work miss the targets: each set here would have met them if the
metrics pooled citations, pooled sentences across answers, skipped claim-free answers, matched
sources by label, or let a clause ride on its neighbour's marker."""

from __future__ import annotations

import json

from test_score import answer, row, source

from kit.evaluate import score as metrics

SUPPORTED = "Maulana Karenga created Kwanzaa in 1966 [1]."
MADE_UP = "Kwanzaa was first celebrated on Mars by Napoleon in 1802 [1]."


def score_set(texts: list[str]) -> dict:
    rows = [row(f"eval-{i:04d}", persona=("educator", "researcher", "creator", "builder")[i % 4])
            for i in range(len(texts))]
    return metrics.score(rows, [{"id": r["id"], "response": t} for r, t in zip(rows, texts)])


def frac(m: dict) -> tuple[int, int]:
    return m["numerator"], m["denominator"]


def test_one_real_answer_among_many_marker_only_answers_misses_the_hallucination_target():
    texts = [answer()] + [answer(text="[1] [2]")] * 19 + [answer(text="Yes. [1][2]")] * 5
    result = score_set(texts)
    assert result["verdict"]["meets_targets"] is False
    assert result["verdict"]["missed_targets"] == ["hallucination_rate"]  # everything else is in order
    assert frac(result["metrics"]["hallucination_rate"]) == (24, 25)
    assert result["rows"][1]["sentences_unsupported"][0]["reason"] == "no checkable claim in a non-refusal answer"


def test_a_supported_sentence_repeated_many_times_does_not_dilute_made_up_answers():
    texts = [answer(text=" ".join([SUPPORTED] * 200))] + [answer(text=MADE_UP)] * 5
    result = score_set(texts)
    assert "hallucination_rate" in result["verdict"]["missed_targets"]
    assert frac(result["metrics"]["hallucination_rate"]) == (5, 6)
    assert result["rows"][0]["sentences_checked"] == 1  # the same claim, checked once


def test_repeating_a_supported_sentence_inside_one_answer_does_not_hide_its_made_up_claim():
    padded = answer(text=" ".join([SUPPORTED] * 100 + [MADE_UP]))
    result = score_set([padded] + [answer()] * 19)
    detail = result["rows"][0]
    assert (detail["sentences_checked"], len(detail["sentences_unsupported"])) == (2, 1)
    assert frac(result["metrics"]["hallucination_rate"]) == (1, 20)  # 5%: exactly at the target, one answer
    assert frac(result["metrics"]["hallucination_rate"]["claims"]) == (1, 40)


def test_fabricated_sources_behind_valid_markers_miss_both_citation_targets():
    invented = [source(1, doc_id="invented-1", chunk_id="invented-1::chunk::1"),
                source(2, doc_id="invented-2", chunk_id="invented-2::chunk::1")]  # real labels, invented ids
    result = score_set([answer(sources=invented)] * 10)
    m = result["metrics"]
    assert frac(m["source_accuracy"]) == (0, 20) and frac(m["citation_accuracy"]) == (0, 20)
    assert {"citation_accuracy", "source_accuracy", "retrieval_utilization"} <= set(result["verdict"]["missed_targets"])


def test_one_fabricated_source_in_a_few_answers_is_not_outweighed_by_valid_markers():
    stranger = source(1, doc_id="invented", chunk_id="invented::chunk::1", citation_label="Invented book")
    texts = [answer(sources=[source(1), source(2), stranger])] * 3 + [answer()] * 7
    m = score_set(texts)["metrics"]
    assert frac(m["citation_accuracy"]) == (20, 20)  # the markers are all right ...
    assert frac(m["source_accuracy"]) == (20, 23) and m["source_accuracy"]["meets_target"] is False  # ... the sources not


def test_markers_without_sources_and_sources_without_markers_do_not_count_as_citations():
    markers_only = answer(sources=[])
    sources_only = answer(text="Maulana Karenga created Kwanzaa in 1966. Its principles include Umoja, unity.")
    result = score_set([markers_only] * 5 + [sources_only] * 5)
    m = result["metrics"]
    assert frac(m["citation_accuracy"]) == (0, 10) and frac(m["source_accuracy"]) == (0, 10)
    assert frac(m["retrieval_utilization"]) == (0, 10)


def test_an_uncited_clause_after_a_stop_is_its_own_unsupported_sentence():
    riding = answer(text="Maulana Karenga created Kwanzaa in 1966 [1]. and it began on the moon with seven astronauts.")
    result = score_set([riding] + [answer()] * 9)
    assert frac(result["metrics"]["hallucination_rate"]) == (1, 10)
    assert result["rows"][0]["sentences_unsupported"][0]["reason"] == "no citation"


def test_a_response_with_a_repeated_key_is_schema_invalid_whichever_value_a_parser_keeps():
    fabricated = json.dumps([source(1, doc_id="invented", chunk_id="invented::chunk::1")])
    good = answer()
    twice = good[:-1] + f', "sources": {fabricated}' + "}"  # a second `sources`, after the real one
    result = score_set([twice] + [good] * 19)
    detail = result["rows"][0]
    assert detail["parsed"] is True and detail["schema_valid"] is False
    assert detail["schema_errors"][0] == "(duplicate key) 'sources' appears more than once in an object"
    assert "schema_compliance" in result["verdict"]["missed_targets"]


def test_the_good_set_meets_every_answer_target():
    result = score_set([answer()] * 8)
    assert result["verdict"]["missed_targets"] == []
    assert result["verdict"]["no_data"] == ["refusal_precision", "refusal_recall"]

