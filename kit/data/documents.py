"""The retrieved documents of a row: the one parser of the user turn's `Retrieved Documents:` block,
and the retrieval-score thresholds that decide what a row should do.

A user turn lists each document as

    [n] <citation label>
    Relevance score: 0.83
    Source: <org> (<year>)
    Metadata: doc_id=...; chunk_id=...; namespace=...; content_type=...; license=...
    Content: <text>
    URL: <url>

then `Query: ...`. A document's entry runs from its `[n]` line to the next `[n]` line or the
`Query:` line; every line of it (label, source, content, URL) is text the answer may draw on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# A row should cite (and counts for retrieval utilization) when its top score is >= CITE_MIN_SCORE;
# it should refuse when its top score is < REFUSE_BELOW_SCORE or nothing was retrieved (upstream's
# objectives document; between the two it should answer, citing or not).
CITE_MIN_SCORE = 0.7
REFUSE_BELOW_SCORE = 0.6

HEADER = "Retrieved Documents:"
_ENTRY = re.compile(r"^[ \t]*\[(\d{1,6})\][ \t]*(.*)$", re.M)
_QUERY = re.compile(r"^[ \t]*Query:[ \t]*(.*)$", re.M)
FIELDS = ("Relevance score", "Source", "Metadata", "Content", "URL")
# field names in any case: upstream's published rows write "Relevance Score:"
_FIELD = re.compile(r"^[ \t]*(" + "|".join(FIELDS) + r"):[ \t]*(.*)$", re.M | re.I)
_FIELD_NAME = {name.lower(): name for name in FIELDS}
_SOURCE = re.compile(r"^(.*) \((\d{4})\)$")


@dataclass(frozen=True)
class ListedDocument:
    n: int
    label: str
    text: str  # the whole entry: label, score, source, metadata, content and URL lines
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def score(self) -> float:
        try:
            value = float(self.fields.get("Relevance score", "nan"))
        except ValueError:
            return math.nan
        return value if math.isfinite(value) else math.nan

    @property
    def metadata(self) -> dict[str, str]:
        return dict(kv.split("=", 1) for kv in self.fields.get("Metadata", "").split("; ") if "=" in kv)

    @property
    def source(self) -> dict:
        m = _SOURCE.match(self.fields.get("Source", ""))
        return {"source_org": m.group(1), "year": int(m.group(2))} if m else {}


def listed_documents(user_turn: str) -> dict[int, ListedDocument]:
    """The documents a user turn lists, by number (the first entry wins for a repeated number)."""
    start = user_turn.find(HEADER)
    if start < 0:
        return {}
    block = user_turn[start + len(HEADER):]
    if query := _QUERY.search(block):
        block = block[:query.start()]
    entries = list(_ENTRY.finditer(block))
    docs: dict[int, ListedDocument] = {}
    for m, nxt in zip(entries, entries[1:] + [None]):
        body = block[m.end():nxt.start() if nxt else len(block)]
        n = int(m.group(1))
        if n not in docs:
            docs[n] = ListedDocument(n, m.group(2).strip(), (m.group(2) + body).strip(), _fields(body))
    return docs


def _fields(body: str) -> dict[str, str]:
    """The entry's field lines by their canonical name (as dict() of them: a repeated field's last wins)."""
    return {_FIELD_NAME[name.lower()]: value for name, value in _FIELD.findall(body)}


def query_of(user_turn: str) -> str | None:
    m = _QUERY.search(user_turn)
    return m.group(1).strip() if m else None


def last_user_turn(messages) -> str:
    """The content of the last user message of a row ('' when there is none)."""
    users = [m.get("content") for m in (messages if isinstance(messages, list) else [])
             if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else ""


def should_cite(top_score: float | None) -> bool:
    return top_score is not None and top_score >= CITE_MIN_SCORE


def should_refuse(top_score: float | None) -> bool:
    return top_score is None or top_score < REFUSE_BELOW_SCORE
