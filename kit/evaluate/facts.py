"""Every fact about one response that the metrics count, and the checks it failed.

Pure and total: any response text gives a record (a response that is not JSON, repeats a key,
nests too deep or holds a number too large is a scoring outcome, never an exception). What each
fact means is written in docs/metrics.md; the rules here are the same, in the same order.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from kit.data import documents
from kit.data.answer import ParsedAnswer, parse_answer, validation_errors
from kit.evaluate.claims import MARKER, content_words, markers, sentences
from kit.evaluate.responses import Doc, EvalRow, Response

SUPPORT_MIN_OVERLAP = Fraction(1, 2)  # share of a sentence's content words found in its cited text
NO_CLAIM = "no checkable claim in a non-refusal answer"
NOT_RETRIEVED, NOT_IN_SOURCES, NOT_CITED = "not retrieved", "not in sources", "not cited in the text"

_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def parse_object(text: str) -> tuple[ParsedAnswer, str | None]:
    """The response parsed, and why it does not count as parsed (text around the JSON, not JSON,
    not an object), or None when it is one JSON object."""
    parsed = parse_answer(text)
    if parsed.error:
        return parsed, _text_around_json(text) or parsed.error
    if not isinstance(parsed.value, dict):
        return parsed, f"a JSON {_JSON_TYPES.get(type(parsed.value), 'value')}, not an object"
    return parsed, None


def _text_around_json(text: str) -> str | None:
    """A clearer reason when a JSON object does sit inside the text (prose or a code fence)."""
    start = text.find("{")
    if start < 0:
        return None
    around_obj = parse_answer(text[start:text.rfind("}") + 1])
    if around_obj.error or not isinstance(around_obj.value, dict):
        return None
    around = (text[:start] + " ... " + text[text.rfind("}") + 1:]).strip()
    return f"not JSON: text around the JSON object: {around[:60]!r}"


def identity(item: Any) -> str:
    """What makes two sources the same: their (doc_id, chunk_id); the item itself when not an object."""
    if isinstance(item, dict):
        item = [item.get("doc_id"), item.get("chunk_id")]
    return json.dumps(item, sort_keys=True)


def _doc_identity(d: Doc) -> str | None:
    return identity({"doc_id": d.doc_id, "chunk_id": d.chunk_id}) if d.doc_id and d.chunk_id else None


def check_citations(answer: dict, raw_sources: list, docs: tuple[Doc, ...]) -> dict:
    """Distinct markers and sources, each valid only when text and sources agree on a retrieved
    document: a marker [n] names a retrieved document that `sources` lists; a source is a retrieved
    document (by doc_id and chunk_id, never by label) whose [n] the text carries."""
    text = answer.get("text") if isinstance(answer.get("text"), str) else ""
    by_n = {d.n: d for d in docs}
    retrieved = {}  # identity -> the numbers of the retrieved documents that have it
    for d in docs:
        if (key := _doc_identity(d)) is not None:
            retrieved.setdefault(key, set()).add(d.n)
    sources = {identity(s): s for s in raw_sources}  # a source listed twice counts once
    cited = sorted(markers(text))
    markers_invalid = [{"n": n, "reason": NOT_RETRIEVED if n not in by_n else NOT_IN_SOURCES}
                       for n in cited if n not in by_n or _doc_identity(by_n[n]) not in sources]
    sources_invalid = [{"source": key, "reason": NOT_RETRIEVED if key not in retrieved else NOT_CITED}
                       for key in sorted(sources) if key not in retrieved or not retrieved[key] & set(cited)]
    return {"sources_cited": len(sources), "sources_invalid": sources_invalid,
            "markers_cited": cited, "markers_invalid": markers_invalid}


def check_sentences(text: str, by_n: dict[int, Doc]) -> tuple[int, list[dict], int]:
    """(checked, unsupported [{sentence, reason}], unverifiable) for one non-refusal answer's text.
    A claim said twice (the same content words and markers) is checked once; an answer with no
    claim at all counts as one unsupported claim."""
    checked, unsupported, unverifiable, seen = 0, [], 0, set()
    doc_words: dict[int, set[str]] = {}
    for s in sentences(text):
        words = content_words(MARKER.sub(" ", s))
        cited = sorted(markers(s))
        if not words or (frozenset(words), tuple(cited)) in seen:
            continue  # no claim to check ("Yes.", a bare marker), or one already checked
        seen.add((frozenset(words), tuple(cited)))
        valid = [n for n in cited if n in by_n]
        reason = None
        if not cited:
            reason = "no citation"
        elif not valid:
            reason = f"cites {cited}, none retrieved"
        else:
            texts = [n for n in valid if by_n[n].text]
            if not texts:
                unverifiable += 1
                continue
            cited_words = set().union(*(doc_words.setdefault(n, content_words(by_n[n].text)) for n in texts))
            shared = len(words & cited_words)
            if shared < SUPPORT_MIN_OVERLAP * len(words):
                reason = f"{shared}/{len(words)} content words in cited text"
        checked += 1
        if reason:
            unsupported.append({"sentence": s, "reason": reason})
    if checked == 0 and unverifiable == 0:
        return 1, [{"sentence": text.strip()[:200], "reason": NO_CLAIM}], 0
    return checked, unsupported, unverifiable


def check_row(row: EvalRow, resp: Response) -> dict:
    """Every fact about one response that the metrics count, plus the checks it failed."""
    parsed, parse_error = parse_object(resp.text)
    obj = parsed.value if parse_error is None else None
    errors = validation_errors(parsed) if obj is not None else []
    answer = obj.get("answer") if obj is not None and isinstance(obj.get("answer"), dict) else {}
    refused = answer.get("completeness") == "insufficient_data"
    raw_sources = obj.get("sources") if obj is not None and isinstance(obj.get("sources"), list) else []
    citations = check_citations(answer, raw_sources, row.docs)
    uses_context = len(citations["markers_cited"]) > len(citations["markers_invalid"])
    text = answer.get("text") if isinstance(answer.get("text"), str) else ""
    checked, unsupported, unverifiable = ((0, [], 0) if refused or obj is None
                                          else check_sentences(text, {d.n: d for d in row.docs}))
    detail = {
        "id": row.id, "persona": row.persona, "category": row.category, "where": resp.where,
        "top_score": row.top_score, "should_cite": row.should_cite, "should_refuse": row.should_refuse,
        "parsed": obj is not None, "parse_error": parse_error,
        "schema_valid": obj is not None and not errors, "schema_errors": errors,
        "refused": refused, **citations, "uses_context": uses_context,
        "sentences_checked": checked, "sentences_unsupported": unsupported,
        "sentences_unverifiable": unverifiable,
    }
    detail["failed"] = [name for name, failed in (
        ("parse", obj is None),
        ("schema", not detail["schema_valid"]),
        ("coverage", row.should_cite and not citations["sources_cited"]),
        ("marker_accuracy", bool(citations["markers_invalid"])),
        ("source_accuracy", bool(citations["sources_invalid"])),
        ("missed_refusal", row.should_refuse and not refused),
        ("false_refusal", refused and not row.should_refuse),
        ("utilization", documents.should_cite(row.top_score) and not uses_context),
        ("hallucination", bool(unsupported)),
    ) if failed]
    return detail
