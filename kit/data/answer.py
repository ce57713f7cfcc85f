"""answer_json v1: the schema, parsing and validation of one response.

A response is model output, so nothing in it may crash the kit: `parse_answer` turns any text into
a JSON value or a reason it is not one (not JSON, NaN/Infinity or a number too large to be finite,
an integer too long to convert, nesting deeper than kit.io.MAX_JSON_DEPTH), and remembers the
keys an object repeats: such a response parses, but `validation_errors` makes it schema-invalid
(JSON parsers disagree on which of two values is the real one).

The schema (kit/schema/answer_json.v1.schema.json) is JSON Schema draft-07, validated with
`jsonschema`; URIs are checked with the `uri` format. On top of the schema this module applies
upstream's runtime rule: a response that requires citations, provides none and lists no sources
is rejected.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from kit.io import MAX_JSON_DEPTH

SCHEMA_VERSION = "kwanzaa.answer.v1"
SCHEMA_FILE = "answer_json.v1.schema.json"
MAX_ERROR_CHARS = 200


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(resources.files("kit.data.schema").joinpath(SCHEMA_FILE).read_text("utf-8"))


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    # rfc3987 is not a dependency; check `uri` with a small, strict rule of our own.
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("uri")(_is_uri)
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return cls(schema(), format_checker=checker)


def _is_uri(value: object) -> bool:
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        return True  # the type is the schema's business, not the format's
    if any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[" (an unclosed IPv6 host)
        return False
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


@dataclass(frozen=True)
class ParsedAnswer:
    value: Any  # the JSON value; None when `error` says why there is none
    error: str | None = None
    duplicate_keys: tuple[str, ...] = ()  # keys an object of the response repeats, in order met


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NotJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"the number {text[:20]} is too large to be finite")
    return value


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def parse_answer(text: str) -> ParsedAnswer:
    """The WHOLE response (surrounding whitespace aside) as one JSON value, or why it is not one.
    Never raises: whatever a model writes is a scoring outcome."""
    stripped = text.strip()
    if not stripped:
        return ParsedAnswer(None, "empty response")
    repeated: list[str] = []

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                repeated.append(key)
            out[key] = value  # the last one, as Python's parser; the response is schema-invalid anyway
        return out

    try:
        value = json.loads(stripped, parse_constant=_refuse_constant, parse_float=_finite_float,
                           object_pairs_hook=keep_pairs)
    except json.JSONDecodeError as e:
        return ParsedAnswer(None, f"not JSON: {e.msg} at line {e.lineno} column {e.colno}")
    except _NotJson as e:
        return ParsedAnswer(None, f"not JSON: {e}")
    except RecursionError:
        return ParsedAnswer(None, f"not JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError:  # the one other ValueError json.loads raises: an integer too long to convert
        return ParsedAnswer(None, f"not JSON: an integer longer than {sys.get_int_max_str_digits()} digits")
    if _too_deep(value):
        return ParsedAnswer(None, f"not JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    return ParsedAnswer(value, None, tuple(repeated))


def parse_strict(text: str) -> tuple[Any, str | None]:
    """Parse the WHOLE response as strict JSON: leading/trailing whitespace allowed, nothing else,
    no repeated key. Returns (value, None) or (None, reason)."""
    parsed = parse_answer(text)
    if parsed.error is None and parsed.duplicate_keys:
        return None, f"not JSON: duplicate key {parsed.duplicate_keys[0]!r}"
    return parsed.value, parsed.error


def validation_errors(parsed: ParsedAnswer) -> list[str]:
    """Why a parsed response is not valid answer_json: each repeated key, then schema_errors."""
    dups = [f"(duplicate key) {key!r} appears more than once in an object" for key in parsed.duplicate_keys]
    return dups + schema_errors(parsed.value)


def schema_errors(obj: Any) -> list[str]:
    """Every schema violation of `obj`, as 'path: message' lines (empty list = valid); a message
    quotes the offending value, so it is cut at MAX_ERROR_CHARS (a model can write a long one)."""
    errors = []
    for err in sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        message = err.message if len(err.message) <= MAX_ERROR_CHARS else err.message[:MAX_ERROR_CHARS - 3] + "..."
        errors.append(f"{path}: {message}")
    if isinstance(obj, dict) and not errors:
        integrity = obj.get("integrity") or {}
        if (integrity.get("citation_required") is True and integrity.get("citations_provided") is False
                and not obj.get("sources")):
            errors.append("integrity: citations are required but none are provided and sources is empty")
    return errors
