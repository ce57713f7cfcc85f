"""answer_json v1: the schema, strict parsing and validation of one response.

The schema (kit/schema/answer_json.v1.schema.json) is JSON Schema draft-07, validated with
`jsonschema`; URIs are checked with the `uri` format. On top of the schema this module applies
upstream's runtime rule: a response that requires citations, provides none and lists no sources
is rejected.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEMA_VERSION = "kwanzaa.answer.v1"
SCHEMA_FILE = "answer_json.v1.schema.json"


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
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


def parse_strict(text: str) -> tuple[Any, str | None]:
    """Parse the WHOLE response as JSON: leading/trailing whitespace allowed, nothing else.

    Returns (object, None) or (None, reason).
    """
    stripped = text.strip()
    if not stripped:
        return None, "empty response"
    try:
        return json.loads(stripped), None
    except json.JSONDecodeError as e:
        return None, f"not JSON: {e.msg} at line {e.lineno} column {e.colno}"


def schema_errors(obj: Any) -> list[str]:
    """Every schema violation of `obj`, as 'path: message' lines (empty list = valid)."""
    errors = []
    for err in sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        errors.append(f"{path}: {err.message}")
    if isinstance(obj, dict) and not errors:
        integrity = obj.get("integrity") or {}
        if (integrity.get("citation_required") is True and integrity.get("citations_provided") is False
                and not obj.get("sources")):
            errors.append("integrity: citations are required but none are provided and sources is empty")
    return errors
