"""Build the Kwanzaa chat JSONL from the human-edited YAML under data/kwanzaa/src.

passages.yaml is the catalogue of source passages (grouped by document); questions-*.yaml hold
one record per row: persona, category, query, the passages retrieved with their scores, and the
expected answer text with `[n]` citations. Everything else in a row (system prompt, the user turn
listing the documents, the answer_json's sources, retrieval_summary, integrity) is derived here,
so the rows cannot disagree with the catalogue.

Deterministic: the same YAML gives byte-identical JSONL (keys sorted, compact separators, no
timestamps, no randomness).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from kit.data import documents
from kit.data.answer import SCHEMA_VERSION, schema_errors
from kit.errors import DataError

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "kwanzaa"
URL_BASE = "https://corpus.kwanzaa-kit.example"
TOP_K = 5  # what the simulated retriever is asked for
MAX_LISTED = 3  # what a row may list: four documents would not fit in 2048 tokens
SPLITS = ("train", "eval")

PERSONAS = {
    "educator": "You are the Kwanzaa assistant for educators. You help teachers and students learn the "
                "history, principles and practices of Kwanzaa, explaining them clearly and accurately "
                "for the classroom.",
    "researcher": "You are the Kwanzaa assistant for researchers. You help scholars of African American "
                  "history and culture, and you are precise about names, dates and sources, separating "
                  "what the documents say from what they leave open.",
    "creator": "You are the Kwanzaa assistant for creators. You help writers, artists and event "
               "organisers work with Kwanzaa's symbols, principles and traditions respectfully, "
               "grounded in what the sources say.",
    "builder": "You are the Kwanzaa assistant for builders. You help developers who build applications "
               "on the Kwanzaa retrieval service, and you keep answers exact and machine-readable.",
}
GUIDELINES = (
    "Guidelines:\n"
    "- Cite the retrieved documents you use with their bracket numbers, like [1] or [1][2].\n"
    "- Prefer primary sources when the documents overlap or disagree.\n"
    "- Stay grounded in the retrieved context: add no facts that the documents do not support.\n"
    "- When the documents are missing, weakly relevant or do not answer the question, say clearly "
    "that the sources are insufficient, and do not guess.\n"
    "- Respond only with one valid answer_json object (version kwanzaa.answer.v1), with no text "
    "before or after it."
)
INSTRUCTION = "Answer as a single answer_json object (kwanzaa.answer.v1) and nothing else."
NO_DOCUMENTS = "Retrieved Documents: none. The search returned no documents for this query."

# category -> answer.completeness; the four objectives: grounded answers, synthesis, partial
# answers, refusals (four reasons) and strict format under pressure.
CATEGORIES = {
    "grounded": "complete",
    "synthesis": "complete",
    "partial": "partial",
    "format": "complete",
    "refusal_no_docs": "insufficient_data",
    "refusal_low_score": "insufficient_data",
    "refusal_out_of_scope": "insufficient_data",
    "refusal_future": "insufficient_data",
}
TONES = {"educator": "educational", "researcher": "formal", "creator": "conversational", "builder": "neutral"}
QUESTION_KEYS = {"id", "persona", "category", "query", "retrieved", "answer", "confidence", "unknowns"}
UNKNOWN_KEYS = ("unsupported_claims", "missing_context", "clarifying_questions", "out_of_scope")
CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Passage:
    ref: str  # doc_id#n, how questions name it
    doc_id: str
    chunk_id: str
    citation_label: str
    source_org: str
    year: int
    content_type: str
    license: str
    namespace: str
    canonical_url: str
    text: str


def _load_yaml(path: Path):
    import yaml

    if not path.is_file():
        raise DataError("source file not found", where=str(path), fix="run from the repository root or pass --src")
    try:
        return yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DataError(f"not valid YAML ({getattr(e, 'problem', e)})", where=where,
                        fix="fix the YAML syntax (quote a query that contains ': ' or starts with a symbol)") from None


def load_passages(path: Path) -> dict[str, Passage]:
    """Every passage of the catalogue, by ref `doc_id#n`."""
    doc = _load_yaml(path)
    passages: dict[str, Passage] = {}
    default_license = doc.get("license")
    for d in doc.get("documents") or []:
        where = f"{path} (document {d.get('doc_id', '?')})"
        for key in ("doc_id", "title", "source_org", "year", "content_type", "namespace", "chunks"):
            if key not in d:
                raise DataError(f"document is missing `{key}`", where=where, fix=f"add `{key}:`")
        if not isinstance(d["year"], int):
            raise DataError("`year` must be an integer", where=where, fix="write the year as e.g. 2004")
        for c in d["chunks"]:
            n, text = c.get("n"), " ".join(str(c.get("text", "")).split())
            words = len(text.split())
            if not isinstance(n, int) or not c.get("title") or not 60 <= words <= 150:
                raise DataError(f"chunk {n}: needs an integer `n`, a `title` and 60-150 words of `text` "
                                f"(has {words})", where=where, fix="fix the chunk")
            ref = f"{d['doc_id']}#{n}"
            if ref in passages:
                raise DataError(f"chunk {n} appears twice", where=where, fix="give each chunk its own `n`")
            passages[ref] = Passage(
                ref=ref, doc_id=d["doc_id"], chunk_id=f"{d['doc_id']}::chunk::{n}",
                citation_label=f"{d['title']}: {c['title']}", source_org=d["source_org"], year=d["year"],
                content_type=d["content_type"], license=d.get("license", default_license),
                namespace=d["namespace"], canonical_url=f"{URL_BASE}/{d['doc_id']}#chunk-{n}", text=text)
    if not passages:
        raise DataError("no passages", where=str(path), fix="add documents with chunks")
    return passages


def load_questions(path: Path, passages: dict[str, Passage]) -> list[dict]:
    records = _load_yaml(path) or []
    seen = set()
    for q in records:
        where = f"{path} (question {q.get('id', '?')})"
        missing = {"id", "persona", "category", "query", "answer"} - set(q)
        if missing or set(q) - QUESTION_KEYS:
            raise DataError(f"missing keys {sorted(missing)}, unknown keys {sorted(set(q) - QUESTION_KEYS)}",
                            where=where, fix=f"a question has the keys {sorted(QUESTION_KEYS)}")
        if q["id"] in seen:
            raise DataError("duplicate question id", where=where, fix="give each question its own id")
        seen.add(q["id"])
        if q["persona"] not in PERSONAS or q["category"] not in CATEGORIES:
            raise DataError(f"persona {q['persona']!r} or category {q['category']!r} is unknown", where=where,
                            fix=f"persona is one of {sorted(PERSONAS)}; category one of {sorted(CATEGORIES)}")
        _check_question(q, passages, where)
    return records


def _check_question(q: dict, passages: dict[str, Passage], where: str) -> None:
    retrieved = q.get("retrieved") or {}
    for ref in retrieved:
        if ref not in passages:
            raise DataError(f"retrieved passage {ref!r} is not in the catalogue", where=where,
                            fix="name passages as doc_id#n from passages.yaml")
    scores = list(retrieved.values())
    if scores != sorted(scores, reverse=True) or len(scores) > MAX_LISTED:
        raise DataError(f"retrieved scores must be listed best first, at most {MAX_LISTED}", where=where,
                        fix="reorder the retrieved passages (the order gives [1], [2], ...)")
    top = scores[0] if scores else 0.0
    refusal = CATEGORIES[q["category"]] == "insufficient_data"
    cited = {int(n) for n in CITATION.findall(q["answer"])}
    if refusal != documents.should_refuse(scores[0] if scores else None):
        raise DataError(f"top score {top} does not fit category {q['category']} (refuse iff top < "
                        f"{documents.REFUSE_BELOW_SCORE})",
                        where=where, fix="change the scores or the category")
    if refusal and cited:
        raise DataError("a refusal must not cite documents", where=where, fix="remove the [n] markers")
    if not refusal and not cited:
        raise DataError("an answer must cite at least one document", where=where, fix="add [n] markers")
    if any(not 1 <= n <= len(scores) for n in cited):
        raise DataError(f"answer cites {sorted(cited)} but only {len(scores)} documents are retrieved",
                        where=where, fix="cite only listed documents")
    if refusal and not (q.get("unknowns") or {}).get("missing_context"):
        raise DataError("a refusal needs unknowns.missing_context", where=where, fix="say what is missing")


def system_turn(persona: str) -> str:
    return f"{PERSONAS[persona]}\n\n{GUIDELINES}"


def user_turn(query: str, docs: list[tuple[Passage, float]]) -> str:
    if not docs:
        return f"{NO_DOCUMENTS}\n\nQuery: {query}\n\n{INSTRUCTION}"
    blocks = []
    for n, (p, score) in enumerate(docs, start=1):
        blocks.append(
            f"[{n}] {p.citation_label}\n"
            f"Relevance score: {score:.2f}\n"
            f"Source: {p.source_org} ({p.year})\n"
            f"Metadata: doc_id={p.doc_id}; chunk_id={p.chunk_id}; namespace={p.namespace}; "
            f"content_type={p.content_type}; license={p.license}\n"
            f"Content: {p.text}\n"
            f"URL: {p.canonical_url}")
    return f"{documents.HEADER}\n\n" + "\n\n".join(blocks) + f"\n\nQuery: {query}\n\n{INSTRUCTION}"


def _confidence(q: dict, completeness: str, top: float) -> float:
    if "confidence" in q:
        return q["confidence"]
    if completeness == "insufficient_data":
        return 0.9  # confident that the sources do not answer
    return round(min(0.95, top) if completeness == "complete" else top * 0.75, 2)


def _retrieval_confidence(docs: list) -> str:
    if not docs:
        return "none"
    top = docs[0][1]
    return "high" if top >= 0.8 else "medium" if top >= 0.6 else "low"


def answer_json(q: dict, docs: list[tuple[Passage, float]], namespaces: list[str]) -> dict:
    completeness = CATEGORIES[q["category"]]
    top = docs[0][1] if docs else 0.0
    cited = sorted({int(n) for n in CITATION.findall(q["answer"])})
    unknowns = {k: list((q.get("unknowns") or {}).get(k, [])) for k in UNKNOWN_KEYS[:3]}
    if (q.get("unknowns") or {}).get("out_of_scope"):
        unknowns["out_of_scope"] = list(q["unknowns"]["out_of_scope"])
    sources = []
    for n in cited:
        p, score = docs[n - 1]
        sources.append({"citation_label": p.citation_label, "canonical_url": p.canonical_url,
                        "source_org": p.source_org, "year": p.year, "content_type": p.content_type,
                        "license": p.license, "namespace": p.namespace, "doc_id": p.doc_id,
                        "chunk_id": p.chunk_id, "relevance_score": score})
    results = [{"rank": n, "score": score, "citation_label": p.citation_label, "canonical_url": p.canonical_url,
                "doc_id": p.doc_id, "chunk_id": p.chunk_id, "namespace": p.namespace}
               for n, (p, score) in enumerate(docs, start=1)]
    refusal = completeness == "insufficient_data"
    return {
        "version": SCHEMA_VERSION,
        "persona": q["persona"],
        "model_mode": "base_adapter_rag",
        "toggles": {"require_citations": True, "primary_sources_only": False, "creative_mode": False},
        "answer": {"text": " ".join(q["answer"].split()), "confidence": _confidence(q, completeness, top),
                   "tone": TONES[q["persona"]], "completeness": completeness},
        "sources": sources,
        "retrieval_summary": {"query": q["query"], "top_k": TOP_K, "namespaces": namespaces, "results": results},
        "unknowns": unknowns,
        "integrity": {"citation_required": not refusal, "citations_provided": bool(sources),
                      "retrieval_confidence": _retrieval_confidence(docs),
                      "fallback_behavior": "refusal" if refusal else "not_needed"},
    }


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def render_row(q: dict, row_id: str, passages: dict[str, Passage], namespaces: list[str]) -> dict:
    docs = [(passages[ref], float(score)) for ref, score in (q.get("retrieved") or {}).items()]
    answer = answer_json(q, docs, namespaces)
    errors = schema_errors(answer)
    if errors:
        raise DataError(f"answer_json fails the schema: {errors[0]}", where=f"question {q['id']}",
                        fix="fix the question record")
    top = docs[0][1] if docs else None
    meta = {
        "persona": q["persona"], "category": q["category"], "source_id": q["id"],
        "retrieved": [{"n": n, "citation_label": p.citation_label, "doc_id": p.doc_id, "chunk_id": p.chunk_id,
                       "canonical_url": p.canonical_url, "namespace": p.namespace, "score": s}
                      for n, (p, s) in enumerate(docs, start=1)],
        "top_score": top,
        "should_cite": documents.should_cite(top),
        "should_refuse": documents.should_refuse(top),
    }
    messages = [{"role": "system", "content": system_turn(q["persona"])},
                {"role": "user", "content": user_turn(q["query"], docs)},
                {"role": "assistant", "content": dumps(answer)}]
    return {"id": row_id, "messages": messages, "meta": meta}


def check_splits_disjoint(splits: dict[str, list[dict]], where: str) -> None:
    """No query (nor a near-duplicate of one) in both train and eval."""
    from kit.data.check import same_query

    for q in splits["eval"]:
        for t in splits["train"]:
            if same_query(q["query"], t["query"]):
                raise DataError(f"eval question {q['id']} repeats train question {t['id']}",
                                where=where, fix="write a different eval question")


def build(src_dir: Path = DATA_DIR / "src") -> dict[str, str]:
    """JSONL text of each split, by split name."""
    passages = load_passages(src_dir / "passages.yaml")
    namespaces = sorted({p.namespace for p in passages.values()})
    splits = {s: load_questions(src_dir / f"questions-{s}.yaml", passages) for s in SPLITS}
    check_splits_disjoint(splits, where=str(src_dir / "questions-eval.yaml"))
    out = {}
    for split, records in splits.items():
        rows = [render_row(q, f"{split}-{i:04d}", passages, namespaces) for i, q in enumerate(records, start=1)]
        out[split] = "".join(dumps(r) + "\n" for r in rows)
    return out


def write(texts: dict[str, str], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, text in texts.items():
        path = out_dir / f"{split}.jsonl"
        path.write_bytes(text.encode("utf-8"))
        paths.append(path)
    return paths


def stale(texts: dict[str, str], out_dir: Path) -> list[Path]:
    """The JSONL files under out_dir that differ from a fresh build."""
    return [out_dir / f"{s}.jsonl" for s, t in texts.items()
            if not (out_dir / f"{s}.jsonl").is_file() or (out_dir / f"{s}.jsonl").read_bytes() != t.encode("utf-8")]
