"""Check chat JSONL files row by row, as a reviewer would, and summarise them.

A row passes when: it is a JSON object with `id`, `messages` (system, user, assistant, in that
order) and `meta`; the assistant turn is one answer_json object, nothing around it, valid against
the schema; every `[n]` in the answer points to a listed document and every source is one of the
retrieved documents; nothing in it is placeholder text; `meta` agrees with the user turn and with
the answer (should_refuse <=> a refusal); its id is unique; and it fits max_seq_len tokens with the
real OLMo tokenizer and chat template. Across files, no query may appear (or nearly appear) in
two files, so that an eval set never repeats a training question.

Every problem names the file, the line and the reason. The shipped files are fixed by editing
data/kwanzaa/src/*.yaml and running `kit data build`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path

from kit import io
from kit.data import documents
from kit.data.answer import parse_strict, schema_errors

ROLES = ["system", "user", "assistant"]
NEAR_DUPLICATE_RATIO = 0.85
PERCENTILES = (50, 90, 99)
TOKEN_KEYS = ("p50", "p90", "p99", "max")

CITATION = re.compile(r"\[(\d+)\]")
# What a source must copy from the document it cites, as listed in the user turn.
SOURCE_FIELDS = ("citation_label", "canonical_url", "source_org", "year", "namespace", "content_type", "license")
PLACEHOLDERS = [re.compile(p) for p in (
    r"\bTODO\b", r"\bTBD\b", r"\bFIXME\b", r"(?i)lorem ipsum", r"(?i)\[placeholder\]", r"(?i)<insert",
    r"(?i)\{\{[^}]*\}\}", r"(?i)\bexample answer\b", r"(?i)\bsample answer\b", r"(?i)your answer here",
    r"(?i)answer goes here", r"(?i)would go here", r"(?i)\bplaceholder text\b", r"(?i)\binsert (the )?answer\b",
)]
WHOLE_ANSWER_PLACEHOLDERS = {"...", "…", "n/a", "na", "none", "answer", "text", "-", "?"}


def normal_query(query: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", query.lower()).split())


def same_query(a: str, b: str) -> bool:
    """True when two queries are equal or near-duplicates (after lowercasing, no punctuation)."""
    a, b = normal_query(a), normal_query(b)
    return a == b or SequenceMatcher(None, a, b).ratio() >= NEAR_DUPLICATE_RATIO


def listed_documents(user: str) -> dict[int, dict]:
    """The documents the user turn lists, by number: label, score, url, source and the metadata ids."""
    return {n: {"citation_label": d.label, "score": d.score, "canonical_url": d.fields.get("URL", "").strip(),
                **d.source, **d.metadata}
            for n, d in documents.listed_documents(user).items()}


def _placeholder(text: str) -> str | None:
    for p in PLACEHOLDERS:
        m = p.search(text)
        if m:
            return m.group(0)
    return None


def check_row(row) -> tuple[list[str], dict | None]:
    """The problems of one parsed row, and its answer_json (None when unreadable)."""
    if not isinstance(row, dict):
        return ["row is not a JSON object"], None
    problems = [f"missing `{k}`" for k in ("id", "messages") if k not in row]
    messages = row.get("messages")
    if not isinstance(messages, list) or [m.get("role") if isinstance(m, dict) else None
                                          for m in messages] != ROLES:
        roles = [m.get("role") for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        missing = [r for r in ROLES if r not in roles]
        what = f"missing the {', '.join(missing)} turn" if missing else f"turns in the wrong order {roles}"
        return problems + [f"messages must be system, user, assistant in that order: {what}"], None
    if not all(isinstance(m.get("content"), str) and m["content"].strip() for m in messages):
        return problems + ["a message has empty or non-string content"], None
    user, assistant = messages[1]["content"], messages[2]["content"]
    for m in messages:
        found = _placeholder(m["content"])
        if found:
            problems.append(f"placeholder text {found!r} in the {m['role']} turn")
    answer, reason = parse_strict(assistant)
    if reason:
        return problems + [_not_json_reason(assistant, reason)], None
    errors = schema_errors(answer)
    if errors:
        return problems + [f"answer_json fails the schema: {'; '.join(errors[:3])}"], None
    problems += _check_citations(answer, listed_documents(user))
    problems += _check_meta(row.get("meta"), answer, user)
    return problems, answer


def _not_json_reason(text: str, reason: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        inner, inner_reason = parse_strict(text[start:end + 1])
        if inner_reason is None and isinstance(inner, dict):
            return "assistant turn has text around the answer_json object (it must be the JSON alone)"
    return f"assistant turn is not JSON ({reason})"


def _check_citations(answer: dict, docs: dict[int, dict]) -> list[str]:
    problems = []
    text = answer["answer"]["text"]
    if text.strip().lower() in WHOLE_ANSWER_PLACEHOLDERS:
        problems.append(f"answer text is a placeholder ({text.strip()!r})")
    cited = sorted({int(n) for n in CITATION.findall(text)})
    for n in cited:
        if n not in docs:
            problems.append(f"answer cites [{n}] but the user turn lists {len(docs)} document(s)")
    retrieved = {(d.get("doc_id"), d.get("chunk_id")): n for n, d in docs.items()}
    source_keys = set()
    for s in answer["sources"]:
        key = (s["doc_id"], s["chunk_id"])
        source_keys.add(key)
        n = retrieved.get(key)
        if n is None:
            problems.append(f"source {s['chunk_id']} is not among the retrieved documents")
        else:
            differ = [k for k in SOURCE_FIELDS if s.get(k) != docs[n].get(k)]
            if "relevance_score" in s and s["relevance_score"] != round(docs[n]["score"], 2):
                differ.append("relevance_score")
            if differ:
                problems.append(f"source {s['chunk_id']} differs from document [{n}] in {', '.join(differ)}")
    for n in cited:
        if n in docs and (docs[n].get("doc_id"), docs[n].get("chunk_id")) not in source_keys:
            problems.append(f"answer cites [{n}] but sources does not list that document")
    return problems


def _check_meta(meta, answer: dict, user: str) -> list[str]:
    if not isinstance(meta, dict):
        return ["`meta` is missing or not an object"]
    problems = []
    docs = listed_documents(user)
    listed = [{"n": n, "citation_label": d["citation_label"], "score": d["score"], "canonical_url": d["canonical_url"],
               "doc_id": d.get("doc_id"), "chunk_id": d.get("chunk_id"), "namespace": d.get("namespace")}
              for n, d in sorted(docs.items())]
    retrieved = meta.get("retrieved")
    keys = ("n", "citation_label", "doc_id", "chunk_id", "canonical_url", "namespace")
    if not isinstance(retrieved, list) or not all(isinstance(r, dict) for r in retrieved) or [
            {k: r.get(k) for k in keys} for r in retrieved] != [
            {k: d[k] for k in keys} for d in listed] or [r.get("score") for r in retrieved] != [
            round(d["score"], 2) for d in listed]:
        problems.append("meta.retrieved does not match the documents listed in the user turn")
    results = answer["retrieval_summary"]["results"]
    result_keys = ("citation_label", "canonical_url", "doc_id", "chunk_id", "namespace")
    if [(r["rank"], r["score"], *(r[k] for k in result_keys)) for r in results] != [
            (d["n"], round(d["score"], 2), *(d[k] for k in result_keys)) for d in listed]:
        problems.append("retrieval_summary.results does not match the documents listed in the user turn")
    if documents.query_of(user) != answer["retrieval_summary"]["query"]:
        problems.append("retrieval_summary.query differs from the user turn's `Query:` line")
    top = max((d["score"] for d in listed), default=None)
    expected = {"top_score": None if top is None else round(top, 2),
                "should_cite": documents.should_cite(top), "should_refuse": documents.should_refuse(top)}
    for key, value in expected.items():
        if meta.get(key) != value and not (key == "top_score" and meta.get(key) in (0, 0.0) and value is None):
            problems.append(f"meta.{key} is {meta.get(key)!r}, the listed documents give {value!r}")
    if meta.get("persona") != answer.get("persona"):
        problems.append(f"meta.persona {meta.get('persona')!r} differs from the answer's {answer.get('persona')!r}")
    refused = answer["answer"].get("completeness") == "insufficient_data"
    if meta.get("should_refuse") is True and not refused:
        problems.append("meta.should_refuse is true but the answer is not a refusal (completeness insufficient_data)")
    if meta.get("should_refuse") is False and refused:
        problems.append(f"the answer refuses but meta.should_refuse is false (the top score is >= "
                        f"{documents.REFUSE_BELOW_SCORE})")
    integrity = answer.get("integrity") or {}
    if "citations_provided" in integrity and integrity["citations_provided"] != bool(answer["sources"]):
        problems.append("integrity.citations_provided disagrees with sources")
    if "fallback_behavior" in integrity and (integrity["fallback_behavior"] == "refusal") != refused:
        problems.append("integrity.fallback_behavior must be `refusal` exactly when the answer refuses")
    if refused and answer["sources"]:
        problems.append("a refusal lists sources")
    if refused and not answer["unknowns"]["missing_context"]:
        problems.append("a refusal must say what is missing in unknowns.missing_context")
    if meta.get("should_cite") is True and not answer["sources"]:
        problems.append("meta.should_cite is true but the answer cites no source")
    return problems


@lru_cache(maxsize=1)
def default_tokenizer():
    from kit.data.tokenizer import load_default_tokenizer

    return load_default_tokenizer()


def token_lengths(tokenizer, messages: list[dict]) -> tuple[int, int]:
    """(tokens of the whole row, tokens of its assistant answer + end-of-sequence): the second is
    what a model must generate to write that answer (a recipe's evaluation.max_new_tokens)."""
    from kit.data.rows import IGNORE_INDEX, encode_messages

    encoded = encode_messages(tokenizer, messages)
    return len(encoded.input_ids), sum(1 for label in encoded.labels if label != IGNORE_INDEX)


def percentiles(values: list[int]) -> dict[str, int | None]:
    """Nearest-rank percentiles (p50/p90/p99) and the max."""
    if not values:
        return {f"p{p}": None for p in PERCENTILES} | {"max": None}
    ordered = sorted(values)
    out = {f"p{p}": ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1] for p in PERCENTILES}
    return out | {"max": ordered[-1]}


def check_files(paths: list[Path], max_seq_len: int, tokenizer=None) -> dict:
    """One report for all files: per-file summaries and every problem (file, line, id, reason)."""
    tokenizer = tokenizer or default_tokenizer()
    problems, files, seen_ids, queries = [], [], {}, []
    for path in paths:
        raw = path.read_bytes()
        summary = {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "rows": 0,
                   "persona": Counter(), "category": Counter(), "completeness": Counter()}
        lengths, longest = [], {"tokens": None, "id": None, "line": None}
        for line_no, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            summary["rows"] += 1

            def problem(reason: str, row_id=None, path=path, line_no=line_no):
                problems.append({"file": str(path), "line": line_no, "id": row_id, "reason": reason})

            try:
                row = io.loads(line)
            except io.JsonProblem as e:
                problem(f"row is not valid JSON ({e})")
                continue
            row_id = row.get("id") if isinstance(row, dict) else None
            reasons, answer = check_row(row)
            for reason in reasons:
                problem(reason, row_id)
            if row_id is not None and not (isinstance(row_id, str) and row_id):
                problem("`id` must be a non-empty string")
                row_id = None
            if row_id is not None:
                if row_id in seen_ids:
                    problem(f"duplicate id {row_id!r} (first at {seen_ids[row_id]})", row_id)
                else:
                    seen_ids[row_id] = f"{path}:{line_no}"
            if answer is None:
                continue
            meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
            summary["persona"][str(answer.get("persona"))] += 1
            summary["category"][str(meta.get("category"))] += 1
            summary["completeness"][str(answer["answer"].get("completeness"))] += 1
            queries.append((path, line_no, row_id, answer["retrieval_summary"]["query"]))
            n_tokens, answer_tokens = token_lengths(tokenizer, row["messages"])
            lengths.append(n_tokens)
            if longest["tokens"] is None or answer_tokens > longest["tokens"]:
                longest = {"tokens": answer_tokens, "id": row_id, "line": line_no}
            if n_tokens > max_seq_len:
                problem(f"row is {n_tokens} tokens, longer than --max-seq-len {max_seq_len}", row_id)
        if summary["rows"] == 0:
            problems.append({"file": str(path), "line": 1, "id": None, "reason": "file has no rows"})
        summary["tokens"] = percentiles(lengths)
        summary["longest_answer"] = longest  # in tokens, with its end-of-sequence token
        for key in ("persona", "category", "completeness"):
            summary[key] = dict(sorted(summary[key].items()))
        files.append(summary)
    problems += _shared_queries(queries)
    problems.sort(key=lambda p: ([str(x) for x in paths].index(p["file"]), p["line"]))
    return {"ok": not problems, "max_seq_len": max_seq_len, "files": files, "problems": problems}


def _shared_queries(queries: list[tuple]) -> list[dict]:
    """A query that appears (or nearly appears) in two different files."""
    problems = []
    for i, (path, line_no, row_id, query) in enumerate(queries):
        for other_path, other_line, _, other_query in queries[:i]:
            if other_path != path and same_query(query, other_query):
                problems.append({"file": str(path), "line": line_no, "id": row_id,
                                 "reason": f"query is shared with {other_path}:{other_line} "
                                           f"(train and eval must not share questions)"})
                break
    return problems


def card_markdown(report: dict) -> str:
    """The data card's tables (rows, sha256, balance, token lengths) for a passing report."""
    files = report["files"]
    names = [Path(f["path"]).name for f in files]
    lines = ["| file | rows | sha256 |", "|---|---|---|"]
    lines += [f"| {n} | {f['rows']} | `{f['sha256']}` |" for n, f in zip(names, files)]
    lines += ["", "| field | value | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(files)]
    for field in ("persona", "category", "completeness"):
        for value in sorted({v for f in files for v in f[field]}):
            lines.append(f"| {field} | {value} | " + " | ".join(str(f[field].get(value, 0)) for f in files) + " |")
    lines += ["", f"Tokens per row (max_seq_len {report['max_seq_len']}):", "",
              "| file | p50 | p90 | p99 | max |", "|---|---|---|---|---|"]
    lines += [f"| {n} | " + " | ".join(str(f["tokens"][k]) for k in TOKEN_KEYS) + " |" for n, f in zip(names, files)]
    return "\n".join(lines) + "\n"
