"""Scoring: the metrics of the four objectives, from eval rows and raw model responses.

Pure functions: no model, no printing. Every metric is an exact fraction kept as numerator and
denominator; its value is their quotient, or null when the denominator is 0 (never a silent 0
or 1). Targets are compared on the integers, so there is no floating-point noise in a verdict.
Rows are iterated in id order, so the same inputs give the same JSON byte for byte.
The written definitions (docs/metrics.md) and DEFINITIONS below say the same as the code.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from kit import io
from kit.data.answer import parse_strict, schema_errors
from kit.data.documents import CITE_MIN_SCORE
from kit.evaluate.claims import MARKER, content_words, markers, sentences
from kit.evaluate.responses import (
    PERSONAS,
    Doc,
    EvalRow,
    Response,
    eval_row,
    match,
    read_eval_rows,
    read_responses,
    response,
)

METRICS_SCHEMA = "kit.metrics.v1"
SUPPORT_MIN_OVERLAP = Fraction(1, 2)  # share of a sentence's content words found in its cited text

# name: (direction, target %, launch %); the launch bar differs only for refusal.
TARGETS = {
    "parse_rate": (">=", 100, 100),
    "schema_compliance": (">=", 100, 100),
    "citation_coverage": (">=", 90, 90),
    "citation_accuracy": (">=", 95, 95),
    "refusal_precision": (">=", 90, 85),
    "refusal_recall": (">=", 85, 80),
    "retrieval_utilization": (">=", 95, 95),
    "hallucination_rate": ("<=", 5, 5),
}

DEFINITIONS = {
    "parse_rate": "responses whose whole text (surrounding whitespace aside) is one JSON object / all responses",
    "schema_compliance": "responses that parse and validate against answer_json v1 / all responses",
    "citation_coverage": "should-cite rows whose parsed answer lists >= 1 entry in `sources` / should-cite rows",
    "citation_accuracy": "(distinct sources matching a retrieved document by doc_id+chunk_id or citation_label "
                         "+ distinct [n] markers in answer.text naming a retrieved n) / (distinct sources + "
                         "distinct markers), over all parsed answers",
    "refusal_precision": "refused rows that should refuse / refused rows "
                         "(refused = answer.completeness == insufficient_data)",
    "refusal_recall": "refused rows that should refuse / rows that should refuse",
    "retrieval_utilization": "rows with top_score >= 0.7 whose answer has >= 1 valid [n] marker or valid source "
                             "/ rows with top_score >= 0.7",
    "hallucination_rate": "unsupported sentences / checked sentences of parsed non-refusal answers; unsupported = "
                          "no [n] marker naming a retrieved document, or < 50% of its content words in the "
                          "cited documents' text",
}


# ---- checking one row ------------------------------------------------------------------------

_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _reject_constant(name: str):
    raise ValueError(f"not JSON: {name} is not a JSON value")


def parse_object(text: str) -> tuple[dict | None, str | None]:
    """The response as a JSON object, or (None, reason): text around it, NaN, or not an object."""
    obj, reason = parse_strict(text)
    if reason:
        return None, _text_around_json(text) or reason
    try:
        json.loads(text.strip(), parse_constant=_reject_constant)
    except ValueError as e:
        return None, str(e)
    if not isinstance(obj, dict):
        return None, f"a JSON {_JSON_TYPES.get(type(obj), 'value')}, not an object"
    return obj, None


def _text_around_json(text: str) -> str | None:
    """A clearer reason when a JSON object does sit inside the text (prose or a code fence)."""
    start = text.find("{")
    try:
        _, end = json.JSONDecoder().raw_decode(text, start) if start >= 0 else (None, -1)
    except ValueError:
        return None
    around = (text[:start] + " ... " + text[end:]).strip() if end >= 0 else ""
    return f"not JSON: text around the JSON object: {around[:60]!r}" if around else None


def _source_key(item: Any) -> str:
    if isinstance(item, dict):
        item = [item.get("doc_id"), item.get("chunk_id"), item.get("citation_label")]
    return json.dumps(item, sort_keys=True)


def _source_is_retrieved(item: Any, docs: tuple[Doc, ...]) -> bool:
    if not isinstance(item, dict):
        return False
    doc_id, chunk_id, label = item.get("doc_id"), item.get("chunk_id"), item.get("citation_label")
    return any((doc_id and chunk_id and (doc_id, chunk_id) == (d.doc_id, d.chunk_id))
               or (label and label == d.citation_label) for d in docs)


def check_row(row: EvalRow, resp: Response) -> dict:
    """Every fact about one response that the metrics count, plus the checks it failed."""
    obj, parse_error = parse_object(resp.text)
    errors = schema_errors(obj) if obj is not None else []
    answer = obj.get("answer") if obj is not None and isinstance(obj.get("answer"), dict) else {}
    text = answer.get("text") if isinstance(answer.get("text"), str) else ""
    refused = answer.get("completeness") == "insufficient_data"
    raw_sources = obj.get("sources") if obj is not None and isinstance(obj.get("sources"), list) else []
    sources = {_source_key(s): s for s in raw_sources}  # duplicates count once
    invalid_sources = sorted(k for k, s in sources.items() if not _source_is_retrieved(s, row.docs))
    by_n = {d.n: d for d in row.docs}
    cited = sorted(markers(text))
    invalid_markers = [n for n in cited if n not in by_n]
    uses_context = len(cited) > len(invalid_markers) or len(sources) > len(invalid_sources)
    checked, unsupported, unverifiable = (0, [], 0) if refused or obj is None else _check_sentences(text, by_n)
    detail = {
        "id": row.id, "persona": row.persona, "category": row.category, "where": resp.where,
        "top_score": row.top_score, "should_cite": row.should_cite, "should_refuse": row.should_refuse,
        "parsed": obj is not None, "parse_error": parse_error,
        "schema_valid": obj is not None and not errors, "schema_errors": errors,
        "refused": refused, "sources_cited": len(sources), "sources_invalid": invalid_sources,
        "markers_cited": cited, "markers_invalid": invalid_markers, "uses_context": uses_context,
        "sentences_checked": checked, "sentences_unsupported": unsupported,
        "sentences_unverifiable": unverifiable,
    }
    detail["failed"] = [name for name, failed in (
        ("parse", obj is None),
        ("schema", not detail["schema_valid"]),
        ("coverage", row.should_cite and not sources),
        ("source_accuracy", bool(invalid_sources)),
        ("marker_accuracy", bool(invalid_markers)),
        ("missed_refusal", row.should_refuse and not refused),
        ("false_refusal", refused and not row.should_refuse),
        ("utilization", _counts_for_utilization(row) and not uses_context),
        ("hallucination", bool(unsupported)),
    ) if failed]
    return detail


def _counts_for_utilization(row: EvalRow) -> bool:
    return row.top_score is not None and row.top_score >= CITE_MIN_SCORE


def _check_sentences(text: str, by_n: dict[int, Doc]) -> tuple[int, list[dict], int]:
    """(checked, unsupported [{sentence, reason}], unverifiable) for one answer's text."""
    checked, unsupported, unverifiable = 0, [], 0
    for s in sentences(text):
        words = content_words(MARKER.sub(" ", s))
        if not words:
            continue  # no claim to check ("Yes.", a bare marker)
        cited = sorted(markers(s))
        valid = [n for n in cited if n in by_n]
        reason = None
        if not cited:
            reason = "no citation"
        elif not valid:
            reason = f"cites {cited}, none retrieved"
        else:
            texts = [by_n[n].text for n in valid if by_n[n].text]
            if not texts:
                unverifiable += 1
                continue
            shared = len(words & set().union(*map(content_words, texts)))
            if shared < SUPPORT_MIN_OVERLAP * len(words):
                reason = f"{shared}/{len(words)} content words in cited text"
        checked += 1
        if reason:
            unsupported.append({"sentence": s, "reason": reason})
    return checked, unsupported, unverifiable


# ---- aggregating -----------------------------------------------------------------------------

def fraction(num: int, den: int) -> dict:
    return {"numerator": num, "denominator": den, "value": None if den == 0 else num / den}


def meets(name: str, num: int, den: int, bar: str = "target") -> bool | None:
    """Exact integer comparison with the target (or launch) percent; None when den is 0."""
    op, target, launch = TARGETS[name]
    pct = target if bar == "target" else launch
    if den == 0:
        return None
    return num * 100 >= pct * den if op == ">=" else num * 100 <= pct * den


def _metric(name: str, num: int, den: int, **extra: Any) -> dict:
    op, target, launch = TARGETS[name]
    return {**fraction(num, den), "target": {"op": op, "percent": target},
            "launch_target": {"op": op, "percent": launch}, "meets_target": meets(name, num, den),
            "meets_launch": meets(name, num, den, "launch"), "definition": DEFINITIONS[name], **extra}


def _count(rows: list[dict], key) -> int:
    return sum(1 for r in rows if key(r))


def aggregate(details: list[dict]) -> dict:
    cite = [r for r in details if r["should_cite"]]
    personas = sorted(set(PERSONAS) | {r["persona"] for r in details})
    by_persona = {}
    for p in personas:
        rows = [r for r in cite if r["persona"] == p]
        n = _count(rows, lambda r: r["sources_cited"] > 0)
        by_persona[p] = {**fraction(n, len(rows)), "meets_target": meets("citation_coverage", n, len(rows))}
    src_den = sum(r["sources_cited"] for r in details)
    src_num = src_den - sum(len(r["sources_invalid"]) for r in details)
    mk_den = sum(len(r["markers_cited"]) for r in details)
    mk_num = mk_den - sum(len(r["markers_invalid"]) for r in details)
    tp = _count(details, lambda r: r["refused"] and r["should_refuse"])
    fp = _count(details, lambda r: r["refused"] and not r["should_refuse"])
    fn = _count(details, lambda r: not r["refused"] and r["should_refuse"])
    tn = len(details) - tp - fp - fn
    util = [r for r in details if r["top_score"] is not None and r["top_score"] >= CITE_MIN_SCORE]
    confusion = {"true_positive": tp, "false_positive": fp, "false_negative": fn, "true_negative": tn}
    return {
        "parse_rate": _metric("parse_rate", _count(details, lambda r: r["parsed"]), len(details)),
        "schema_compliance": _metric("schema_compliance", _count(details, lambda r: r["schema_valid"]),
                                     len(details)),
        "citation_coverage": _metric("citation_coverage", _count(cite, lambda r: r["sources_cited"] > 0),
                                     len(cite), by_persona=by_persona),
        "citation_accuracy": _metric("citation_accuracy", src_num + mk_num, src_den + mk_den,
                                     sources=fraction(src_num, src_den), markers=fraction(mk_num, mk_den)),
        "refusal_precision": _metric("refusal_precision", tp, tp + fp, confusion=confusion),
        "refusal_recall": _metric("refusal_recall", tp, tp + fn, confusion=confusion),
        "retrieval_utilization": _metric("retrieval_utilization", _count(util, lambda r: r["uses_context"]),
                                         len(util)),
        "hallucination_rate": _metric(
            "hallucination_rate", sum(len(r["sentences_unsupported"]) for r in details),
            sum(r["sentences_checked"] for r in details),
            unverifiable_sentences=sum(r["sentences_unverifiable"] for r in details)),
    }


def verdict(metrics: dict) -> dict:
    """A metric with no data (null) neither passes nor fails; it is listed under no_data."""
    return {"meets_targets": all(m["meets_target"] is True for m in metrics.values()),
            "meets_launch": all(m["meets_launch"] is True for m in metrics.values()),
            "missed_targets": [k for k, m in metrics.items() if m["meets_target"] is False],
            "missed_launch": [k for k, m in metrics.items() if m["meets_launch"] is False],
            "no_data": [k for k, m in metrics.items() if m["meets_target"] is None]}


def score(rows: list[EvalRow | dict], responses: list[Response | dict]) -> dict:
    """Every metric (numerator, denominator, value, target, pass/fail), the verdict, and one
    detail record per row (in id order) naming the checks it failed."""
    rows = [r if isinstance(r, EvalRow) else eval_row(r, f"rows[{i}]") for i, r in enumerate(rows)]
    responses = [r if isinstance(r, Response) else response(r, f"responses[{i}]") for i, r in enumerate(responses)]
    by_id = match(rows, responses)
    details = [check_row(r, by_id[r.id]) for r in sorted(rows, key=lambda r: r.id)]
    metrics = aggregate(details)
    return {"schema": METRICS_SCHEMA, "n_rows": len(rows), "metrics": metrics, "verdict": verdict(metrics),
            "rows": details}


def score_files(data: Path, responses: Path) -> dict:
    """score() of two JSONL files, with each file's path and sha256 recorded under `inputs`."""
    result = score(read_eval_rows(data), read_responses(responses))
    result["inputs"] = {name: {"path": str(p), "sha256": io.sha256_file(p)}
                        for name, p in (("data", data), ("responses", responses))}
    return result

