"""What is scored: the eval rows (with the facts each row's answer is judged by) and the responses,
read from JSONL with file:line errors, and matched one to one by id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit import io
from kit.data import documents
from kit.errors import DataError

PERSONAS = ("builder", "creator", "educator", "researcher")


@dataclass(frozen=True)
class Doc:
    n: int
    citation_label: str
    doc_id: str
    chunk_id: str
    text: str | None  # None when neither meta nor the prompt carries the document's text


@dataclass(frozen=True)
class EvalRow:
    id: str
    persona: str
    category: str
    docs: tuple[Doc, ...]
    top_score: float | None
    should_cite: bool
    should_refuse: bool
    where: str


@dataclass(frozen=True)
class Response:
    id: str
    text: str
    where: str


# ---- reading input ---------------------------------------------------------------------------

def read_eval_rows(path: Path) -> list[EvalRow]:
    return [eval_row(obj, where) for where, obj in io.read_jsonl(path, DataError, "eval data file")]


def read_responses(path: Path) -> list[Response]:
    return [response(obj, where) for where, obj in io.read_jsonl(path, DataError, "responses file")]


def response(obj: Any, where: str = "") -> Response:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        raise DataError("response has no string `id`", where=where,
                        fix='each line must be {"id": "<eval row id>", "response": "<raw model text>"}')
    if not isinstance(obj.get("response"), str):
        raise DataError(f"response {obj['id']!r} has no string `response`", where=where,
                        fix="put the raw model text (a string, even if empty) under `response`")
    return Response(obj["id"], obj["response"], where)


def eval_row(obj: Any, where: str = "") -> EvalRow:
    """One eval row's facts; should_cite/should_refuse come from meta, else from top_score."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        raise DataError("eval row has no string `id`", where=where, fix='give each row an "id"')
    meta = obj.get("meta")
    if not isinstance(meta, dict):
        raise DataError(f"eval row {obj['id']!r} has no `meta` object", where=where,
                        fix="eval rows need meta.retrieved, meta.top_score, meta.should_cite, meta.should_refuse")
    retrieved = meta.get("retrieved") or []
    if not isinstance(retrieved, list) or not all(isinstance(d, dict) for d in retrieved):
        raise DataError("meta.retrieved must be a list of objects", where=where, fix="fix meta.retrieved")
    in_prompt = documents_in_prompt(obj.get("messages"))
    docs = tuple(_doc(d, i, in_prompt, where) for i, d in enumerate(retrieved))
    top = meta.get("top_score", max((d.get("score") for d in retrieved
                                     if _is_number(d.get("score"))), default=None))
    if top is not None and not _is_number(top):
        raise DataError(f"meta.top_score is {top!r}, not a number or null", where=where, fix="fix meta.top_score")
    should_cite = meta.get("should_cite", documents.should_cite(top))
    should_refuse = meta.get("should_refuse", documents.should_refuse(top) or not docs)
    for key, value in (("should_cite", should_cite), ("should_refuse", should_refuse)):
        if not isinstance(value, bool):
            raise DataError(f"meta.{key} is {value!r}, not true/false", where=where, fix=f"fix meta.{key}")
    persona, category = meta.get("persona", "unspecified"), meta.get("category", "unspecified")
    if not isinstance(persona, str) or not isinstance(category, str):
        raise DataError("meta.persona and meta.category must be strings", where=where, fix="fix them")
    return EvalRow(obj["id"], persona, category, docs, top, should_cite, should_refuse, where)


def _doc(d: dict, index: int, in_prompt: dict[int, str], where: str) -> Doc:
    n = d.get("n", index + 1)
    if not isinstance(n, int) or isinstance(n, bool):
        raise DataError(f"meta.retrieved[{index}].n is {n!r}, not an integer", where=where, fix="number documents 1..k")
    fields = {k: d.get(k) or "" for k in ("citation_label", "doc_id", "chunk_id")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise DataError(f"meta.retrieved[{index}] citation_label/doc_id/chunk_id must be strings", where=where,
                        fix="fix that document")
    text = d.get("text") or d.get("content")
    return Doc(n, text=text if isinstance(text, str) else in_prompt.get(n), **fields)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def documents_in_prompt(messages: Any) -> dict[int, str]:
    """{n: text} of the documents listed in the last user turn (kit.data.documents)."""
    return {n: d.text for n, d in documents.listed_documents(documents.last_user_turn(messages)).items()}


def match(rows: list[EvalRow], responses: list[Response]) -> dict[str, Response]:
    """Responses by row id; an unknown, duplicate or missing id is refused at its file:line."""
    first = {}
    for r in rows:
        if r.id in first:
            raise DataError(f"duplicate eval row id {r.id!r} (first at {first[r.id].where})", where=r.where,
                            fix="give every eval row its own id")
        first[r.id] = r
    by_id: dict[str, Response] = {}
    for resp in responses:
        if resp.id not in first:
            raise DataError(f"response id {resp.id!r} is not an id of the eval data", where=resp.where,
                            fix="score responses against the eval file they were generated from")
        if resp.id in by_id:
            raise DataError(f"second response for {resp.id!r} (first at {by_id[resp.id].where})",
                            where=resp.where, fix="keep one response per eval row")
        by_id[resp.id] = resp
    for r in rows:
        if r.id not in by_id:
            raise DataError(f"eval row {r.id!r} has no response", where=r.where,
                            fix="give every eval row a response (an empty string scores as a failure)")
    return by_id
