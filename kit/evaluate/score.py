"""Scoring: the metrics of the four objectives, from eval rows and raw model responses.

Pure functions: no model, no printing. Every metric is an exact fraction kept as numerator and
denominator; its value is their quotient, or null when the denominator is 0 (never a silent 0
or 1). Targets are compared on the integers, so there is no floating-point noise in a verdict.
Rows are iterated in id order, so the same inputs give the same JSON byte for byte.
The written definitions (docs/metrics.md) and DEFINITIONS below say the same as the code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit import io
from kit.data import documents
from kit.evaluate.facts import check_row
from kit.evaluate.responses import (
    PERSONAS,
    EvalRow,
    Response,
    eval_row,
    match,
    printable,
    read_eval_rows,
    read_responses,
    response,
)

METRICS_SCHEMA = "kit.metrics.v2"

# name: (direction, target %, launch %); the launch bar differs only for refusal.
TARGETS = {
    "parse_rate": (">=", 100, 100),
    "schema_compliance": (">=", 100, 100),
    "citation_coverage": (">=", 90, 90),
    "citation_accuracy": (">=", 95, 95),
    "source_accuracy": (">=", 95, 95),
    "refusal_precision": (">=", 90, 85),
    "refusal_recall": (">=", 85, 80),
    "retrieval_utilization": (">=", 95, 95),
    "hallucination_rate": ("<=", 5, 5),
}

DEFINITIONS = {
    "parse_rate": "responses whose whole text (surrounding whitespace aside) is one JSON object / all responses",
    "schema_compliance": "responses that parse, repeat no key and validate against answer_json v1 / all responses",
    "citation_coverage": "should-cite rows whose parsed answer lists >= 1 entry in `sources` / should-cite rows",
    "citation_accuracy": "distinct [n] markers in answer.text that name a retrieved document listed in the "
                         "answer's sources / distinct markers, over all parsed answers",
    "source_accuracy": "distinct sources (by doc_id+chunk_id) that are a retrieved document whose [n] the "
                       "answer's text carries / distinct sources, over all parsed answers",
    "refusal_precision": "refused rows that should refuse / refused rows "
                         "(refused = answer.completeness == insufficient_data)",
    "refusal_recall": "refused rows that should refuse / rows that should refuse",
    "retrieval_utilization": "rows with top_score >= 0.7 whose answer has >= 1 valid [n] marker (a retrieved "
                             "document, listed in sources) / rows with top_score >= 0.7",
    "hallucination_rate": "parsed non-refusal answers with >= 1 unsupported claim sentence / parsed non-refusal "
                          "answers with a checked claim; unsupported = no [n] marker naming a retrieved document, "
                          "or < 50% of its content words in the cited documents' text; an answer with no claim "
                          "counts as unsupported",
}


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


def _citations(details: list[dict], cited: str, invalid: str) -> tuple[int, int, dict]:
    """(valid, all, {reason: count}) of the distinct markers or sources over all answers."""
    reasons: dict[str, int] = {}
    for r in details:
        for item in r[invalid]:
            reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    total = sum(r[cited] if isinstance(r[cited], int) else len(r[cited]) for r in details)
    return total - sum(reasons.values()), total, dict(sorted(reasons.items()))


def aggregate(details: list[dict]) -> dict:
    cite = [r for r in details if r["should_cite"]]
    personas = sorted(set(PERSONAS) | {r["persona"] for r in details})
    by_persona = {}
    for p in personas:
        rows = [r for r in cite if r["persona"] == p]
        n = _count(rows, lambda r: r["sources_cited"] > 0)
        by_persona[p] = {**fraction(n, len(rows)), "meets_target": meets("citation_coverage", n, len(rows))}
    mk_num, mk_den, mk_why = _citations(details, "markers_cited", "markers_invalid")
    src_num, src_den, src_why = _citations(details, "sources_cited", "sources_invalid")
    tp = _count(details, lambda r: r["refused"] and r["should_refuse"])
    fp = _count(details, lambda r: r["refused"] and not r["should_refuse"])
    fn = _count(details, lambda r: not r["refused"] and r["should_refuse"])
    tn = len(details) - tp - fp - fn
    util = [r for r in details if documents.should_cite(r["top_score"])]  # the score, not meta.should_cite
    confusion = {"true_positive": tp, "false_positive": fp, "false_negative": fn, "true_negative": tn}
    answers = [r for r in details if r["sentences_checked"] > 0]
    claims = (sum(len(r["sentences_unsupported"]) for r in answers), sum(r["sentences_checked"] for r in answers))
    return {
        "parse_rate": _metric("parse_rate", _count(details, lambda r: r["parsed"]), len(details)),
        "schema_compliance": _metric("schema_compliance", _count(details, lambda r: r["schema_valid"]),
                                     len(details)),
        "citation_coverage": _metric("citation_coverage", _count(cite, lambda r: r["sources_cited"] > 0),
                                     len(cite), by_persona=by_persona),
        "citation_accuracy": _metric("citation_accuracy", mk_num, mk_den, invalid=mk_why),
        "source_accuracy": _metric("source_accuracy", src_num, src_den, invalid=src_why),
        "refusal_precision": _metric("refusal_precision", tp, tp + fp, confusion=confusion),
        "refusal_recall": _metric("refusal_recall", tp, tp + fn, confusion=confusion),
        "retrieval_utilization": _metric("retrieval_utilization", _count(util, lambda r: r["uses_context"]),
                                         len(util)),
        "hallucination_rate": _metric(
            "hallucination_rate", _count(answers, lambda r: r["sentences_unsupported"]), len(answers),
            claims=fraction(*claims), unverifiable_sentences=sum(r["sentences_unverifiable"] for r in details)),
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
    # strings from the inputs (answers, ids, paths) with a lone surrogate would make the JSON unwritable
    return printable({"schema": METRICS_SCHEMA, "n_rows": len(rows), "metrics": metrics,
                      "verdict": verdict(metrics), "rows": details})


def score_files(data: Path, responses: Path) -> dict:
    """score() of two JSONL files, with each file's path and sha256 recorded under `inputs`."""
    result = score(read_eval_rows(data), read_responses(responses))
    result["inputs"] = printable({name: {"path": str(p), "sha256": io.sha256_file(p)}
                                  for name, p in (("data", data), ("responses", responses))})
    return result

