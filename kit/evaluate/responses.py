"""What is scored: the eval rows (with the facts each row's answer is judged by) and the responses,
read from JSONL with file:line errors, and matched one to one by id.

The files are read through kit.io (strict JSON: NaN, Infinity, repeated keys, huge integers and
deep nesting are refused at their file:line); the fields the metrics read are checked here, so a
bad row is one DataError (exit 2), never a traceback. A response's text is model output and is
never refused: whatever it holds is a scoring outcome (kit.data.answer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit import io
from kit.data import documents
from kit.errors import DataError

PERSONAS = ("builder", "creator", "educator", "researcher")
MAX_DOC_NUMBER = 999_999  # documents are numbered with at most 6 digits (kit.data.documents, claims.MARKER)
_JSON_TYPE = {str: "a string", int: "a number", float: "a number", bool: "a boolean", dict: "an object",
              list: "a list"}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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
    return [eval_row(obj, where) for where, obj in io.read_jsonl(path, DataError, "eval data file",
                                                                       lone_surrogates=True)]


def read_responses(path: Path) -> list[Response]:
    return [response(obj, where) for where, obj in io.read_jsonl(path, DataError, "responses file",
                                                                       lone_surrogates=True)]


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
    messages = obj.get("messages", [])
    if not isinstance(messages, list):
        raise DataError(f"`messages` is {_JSON_TYPE.get(type(messages), 'a value')}, not a list", where=where,
                        fix="messages must be the list of chat turns [system, user, assistant]")
    retrieved = meta.get("retrieved")
    retrieved = [] if retrieved is None else retrieved
    if not isinstance(retrieved, list) or not all(isinstance(d, dict) for d in retrieved):
        raise DataError("meta.retrieved must be a list of objects", where=where, fix="fix meta.retrieved")
    in_prompt = documents_in_prompt(messages)
    docs = tuple(_doc(d, i, in_prompt, where) for i, d in enumerate(retrieved))
    numbers = [d.n for d in docs]
    if len(set(numbers)) < len(numbers):
        raise DataError(f"meta.retrieved numbers two documents alike ({numbers})", where=where,
                        fix="number the retrieved documents 1..k, each once")
    scores = [d.get("score") for d in retrieved if d.get("score") is not None]
    for i, d in enumerate(retrieved):
        _check_score(d.get("score"), f"meta.retrieved[{i}].score", where)
    top = meta.get("top_score", max(scores, default=None))
    _check_score(top, "meta.top_score", where)
    should_cite = meta.get("should_cite", documents.should_cite(top))
    should_refuse = meta.get("should_refuse", documents.should_refuse(top) or not docs)
    for key, value in (("should_cite", should_cite), ("should_refuse", should_refuse)):
        if not isinstance(value, bool):
            raise DataError(f"meta.{key} is {value!r}, not true/false", where=where, fix=f"fix meta.{key}")
    persona, category = meta.get("persona", "unspecified"), meta.get("category", "unspecified")
    if not isinstance(persona, str) or not isinstance(category, str):
        raise DataError("meta.persona and meta.category must be strings", where=where, fix="fix them")
    return EvalRow(obj["id"], persona, category, docs, top, should_cite, should_refuse, where)


def _check_score(value: Any, key: str, where: str) -> None:
    """A retrieval score is null or a finite number (1e400 parses as infinity: refused too)."""
    if value is None:
        return
    finite = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        finite = finite and math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float
        finite = False
    if not finite:
        shown = "infinite" if isinstance(value, (int, float)) and not isinstance(value, bool) else \
            _JSON_TYPE.get(type(value), "a value")
        raise DataError(f"{key} is {shown}, not a finite number or null", where=where, fix=f"fix {key}")


def _doc(d: dict, index: int, in_prompt: dict[int, str], where: str) -> Doc:
    n = d.get("n", index + 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_DOC_NUMBER:
        shown = repr(n)[:20] if not isinstance(n, int) or abs(n) < 10**20 else "a huge integer"
        raise DataError(f"meta.retrieved[{index}].n is {shown}, not a document number 1..{MAX_DOC_NUMBER}",
                        where=where, fix="number documents 1..k")
    fields = {k: d.get(k) or "" for k in ("citation_label", "doc_id", "chunk_id")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise DataError(f"meta.retrieved[{index}] citation_label/doc_id/chunk_id must be strings", where=where,
                        fix="fix that document")
    text = d.get("text") or d.get("content")
    return Doc(n, text=text if isinstance(text, str) else in_prompt.get(n), **fields)


def printable(value: Any) -> Any:
    """`value` with every lone surrogate (a JSON "\\ud800" escape with no partner) replaced by U+FFFD,
    in every string and key: what the kit writes stays UTF-8 that any strict parser reads, and what it
    prints never fails to encode."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    return value


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
