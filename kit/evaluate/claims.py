"""Text of an answer as the hallucination proxy reads it: `[n]` markers, sentences, content words.

Word-level on purpose (docs/metrics.md says what that can and cannot see): a sentence is
supported when enough of its content words appear in the documents it cites.
"""

from __future__ import annotations

import re

# A marker names a document by its number; numbers have at most 6 digits, as in the prompt's list
# (kit.data.documents), so a longer bracketed number is text, never a huge integer.
_N = r"\d{1,6}(?!\d)"
MARKER = re.compile(rf"\[({_N}(?:\s*,\s*{_N})*)\]")
# only at the start of a run of stops, taken whole: linear time on any text (no backtracking)
_SENTENCE_END = re.compile(rf"(?<![.!?])[.!?]++(?:\s*\[{_N}(?:\s*,\s*{_N})*\])*(?=\s|$)|\n+")
ABBREVIATIONS = frozenset("dr mr mrs ms prof st jr sr vs v etc e.g i.e u.s no vol ca".split())
STOPWORDS = frozenset("""
a about above after again against all also although am an and any are as at be because been before
being below between both but by can could did do does doing down during each either few for from
further had has have having he her here hers herself him himself his how however i if in into is it
its itself just may me might more most much must my myself neither nor not now of off on once only
or other our ours out over own same she should since so some such than that the their theirs them
themselves then there these they this those through thus to too under until up upon very was we were
what when where which while who whom whose why will with within without would yet you your yours
according source sources document documents retrieved context provided states state says said notes
also based yes""".split())


def markers(text: str) -> set[int]:
    """Every n of `[n]` or `[n, m]` in the text (any bracketed integer of up to 6 digits counts)."""
    return {int(x) for m in MARKER.finditer(text) for x in m.group(1).split(",")}


def sentences(text: str) -> list[str]:
    """Split at . ! ? followed by whitespace (keeping the [n] markers that follow) and at every line
    break; not after a known abbreviation (Dr., v., e.g.) or a single capital initial. Nothing else
    joins two sentences: an uncited clause never rides on its neighbour's marker."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        words = text[max(start, m.start() - 16):m.start()].split()  # enough for any abbreviation
        last = words[-1] if words else ""
        if m.group() == "." and (last.lower() in ABBREVIATIONS or (len(last) == 1 and last.isupper())):
            continue
        if piece := text[start:m.end()].strip():
            out.append(piece)
        start = m.end()
    if tail := text[start:].strip():
        out.append(tail)
    return out


def content_words(text: str) -> set[str]:
    """Lower-cased words of >= 3 letters or any number, minus stop words; a plural -s is dropped."""
    words = set()
    for w in re.findall(r"[^\W_]+", text.lower()):
        if w in STOPWORDS or (len(w) < 3 and not w.isdigit()):
            continue
        words.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return words
