"""Upstream's published rows made into the kit's row format, as far as the rows themselves allow
(`kit data convert`).

Upstream (AINative-Studio/kwanzaa, and the Hub dataset ainativestudio/kwanzaa-training-data)
publishes `{"messages": [system, user, assistant]}` rows: no `id`, no `meta`, and a user turn
whose documents have no `Metadata:` line, so nothing in the prompt carries the doc_id and chunk_id
that the answer's `sources` must copy. Per row, the converter:
- keeps an `id` it finds, else writes `<prefix>-<line, 4 digits>`;
- writes each listed document's `Relevance score:` in the kit's spelling, and adds its
  `Metadata:` line from the row's own answer: doc_id, chunk_id and namespace from
  retrieval_summary.results (matched by rank = [n]), content_type and license from the `sources`
  entry of that chunk, else from the result's own `metadata` (left out when the row does not say);
- derives `meta` from the converted user turn (kit.data.documents, the one parser of that block,
  and its score thresholds): retrieved, top_score, should_cite, should_refuse; persona from the
  answer; category `upstream` (upstream's rows carry none); source_id = file:line.
- writes the answer_json compactly, as the kit's own rows are (the same object, keys in the same
  order, no indentation): upstream's `indent=2` costs about a fifth of a row's tokens, enough
  to push rows with three documents and their Metadata lines past 2048.
The system turn and the answer's content (the training target) are never changed, so what
`kit data check` still reports about a converted row is upstream's to fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kit import io
from kit.data import documents
from kit.data.answer import parse_strict
from kit.errors import DataError

CATEGORY = "upstream"
_SCORE = re.compile(r"^([ \t]*)Relevance score:", re.M | re.I)
_SOURCE_LINE = re.compile(r"^[ \t]*Source:.*$", re.M | re.I)


def convert_file(path: Path, prefix: str | None = None) -> list[dict]:
    """Every row of an upstream JSONL file, converted (see the module's docstring)."""
    path = Path(path)
    prefix = prefix or path.stem
    rows = []
    for where, row in io.read_jsonl(path, DataError, "upstream data file", fix="each line must be one JSON object"):
        line = int(where.rsplit(":", 1)[1])
        rows.append(convert_row(row, f"{prefix}-{line:04d}", f"{path.name}:{line}", where))
    if not rows:
        raise DataError("the file has no rows", where=str(path), fix="pass upstream's kwanzaa_train.jsonl or kwanzaa_eval.jsonl")
    return rows


def convert_row(row, row_id: str, source_id: str, where: str) -> dict:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or [m.get("role") if isinstance(m, dict) else None for m in messages] != [
            "system", "user", "assistant"] or not all(isinstance(m.get("content"), str) for m in messages):
        raise DataError("row is not {\"messages\": [system, user, assistant]} with string contents", where=where,
                        fix="convert rows in upstream's format only")
    answer, _ = parse_strict(messages[2]["content"])
    answer = answer if isinstance(answer, dict) else {}
    user = kit_user_turn(messages[1]["content"], answer)
    docs = documents.listed_documents(user)
    top = max((d.score for d in docs.values()), default=None)
    retrieved = [{"n": n, "citation_label": d.label, "doc_id": d.metadata.get("doc_id"),
                  "chunk_id": d.metadata.get("chunk_id"), "canonical_url": d.fields.get("URL", "").strip(),
                  "namespace": d.metadata.get("namespace"), "score": round(d.score, 2)} for n, d in sorted(docs.items())]
    meta = {"persona": answer.get("persona"), "category": CATEGORY, "source_id": source_id, "retrieved": retrieved,
            "top_score": None if top is None else round(top, 2),
            "should_cite": documents.should_cite(top), "should_refuse": documents.should_refuse(top)}
    assistant = messages[2]["content"] if not answer else json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    return {"id": row["id"] if isinstance(row.get("id"), str) and row["id"] else row_id,
            "messages": [messages[0], {**messages[1], "content": user}, {**messages[2], "content": assistant}],
            "meta": meta}


def kit_user_turn(user: str, answer: dict) -> str:
    """The user turn in the kit's layout: `Relevance score:` spelled the kit's way and a `Metadata:`
    line after each listed document's `Source:` line (when the answer names the document)."""
    results = {r.get("rank"): r for r in (answer.get("retrieval_summary") or {}).get("results") or []
               if isinstance(r, dict)}
    sources = {s.get("chunk_id"): s for s in answer.get("sources") or [] if isinstance(s, dict)}
    for n, doc in documents.listed_documents(user).items():
        entry = _SCORE.sub(r"\1Relevance score:", doc.text)
        result = results.get(n)
        if "Metadata" not in doc.fields and result and result.get("doc_id") and result.get("chunk_id"):
            known = {**(result.get("metadata") if isinstance(result.get("metadata"), dict) else {}),
                     **(sources.get(result["chunk_id"]) or {})}
            pairs = {"doc_id": result["doc_id"], "chunk_id": result["chunk_id"], "namespace": result.get("namespace"),
                     "content_type": known.get("content_type"), "license": known.get("license")}
            line = "Metadata: " + "; ".join(f"{k}={v}" for k, v in pairs.items() if v is not None)
            source_line = _SOURCE_LINE.search(entry)
            at = source_line.end() if source_line else entry.find("\n") if "\n" in entry else len(entry)
            entry = f"{entry[:at]}\n{line}{entry[at:]}"
        user = user.replace(doc.text, entry, 1)
    return user
