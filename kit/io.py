"""Files: one sha256 helper, one strict JSON/JSONL reader, and atomic writes.

Reading: every file a user can hand the kit (recipe, data, responses, manifests, references,
checksums) is read through `loads` / `read_json` / `read_jsonl`, which turn anything malformed
(not UTF-8, not JSON, NaN or Infinity, a duplicate key, a number too long to convert, nesting
deeper than the parser can follow) into one KitError naming the file and line, never a traceback.
Writing: every file is written to a temporary file in the same folder, fsync'ed and renamed, so a
reader (or a crash, a full disk, a kill) never leaves half a file; JSON is written strictly (no NaN).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: files and folders are made as open() and mkdir() would make them
MAX_JSON_DEPTH = 64  # no file of the kit nests deeper; deeper input is refused, not recursed into


# ---- hashing ---------------------------------------------------------------------------------

def sha256_file(path: Path, on_block=None) -> str:
    """on_block(n_bytes) after each MiB read: a progress bar over many GB of weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            if on_block:
                on_block(len(block))
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes a JSON value is hashed as."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256_json(obj: Any) -> str:
    return sha256_bytes(canonical_json(obj))


# ---- strict JSON -----------------------------------------------------------------------------

class JsonProblem(ValueError):
    """Why a text is not acceptable JSON, in words a person can act on."""


def _no_constant(name: str):
    raise JsonProblem(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e400: JSON's grammar allows it, no float holds it
        raise JsonProblem(f"{text[:24]} is too large to be a finite number")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise JsonProblem(f"duplicate key {key!r}")
        out[key] = value
    return out


def _depth(text: str) -> int:
    """The deepest nesting of brackets outside strings (cheap, and safe on any input)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str, lone_surrogates: bool = False) -> Any:
    """Parse JSON strictly: no NaN/Infinity (nor a number too large to be finite), no duplicate keys,
    bounded depth, no lone surrogate (`"\\ud800"` parses, but no UTF-8 file can hold it) unless
    `lone_surrogates` (a reader that makes every string printable itself); raises JsonProblem."""
    if _depth(text) > MAX_JSON_DEPTH:
        raise JsonProblem(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                           object_pairs_hook=_no_duplicates)
    except JsonProblem:
        raise
    except json.JSONDecodeError as e:
        raise JsonProblem(f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer longer than Python converts
        raise JsonProblem(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if not lone_surrogates and _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonProblem("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text") from None
    return value


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text (raises ValueError on NaN/Infinity rather than writing non-JSON)."""
    return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, allow_nan=False)


def read_text(path: Path, error: type, what: str, fix_missing: str) -> str:
    """A UTF-8 text file a user pointed at; `error` (a KitError type) names the file otherwise."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} is a directory, not a file", where=str(path), fix=fix_missing)
    if not path.is_file():  # a pipe or a device would be read forever, or block: never opened
        state = "is not a regular file" if path.exists() else "not found"
        raise error(f"{what} {state}", where=str(path), fix=fix_missing)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text (byte {e.start})", where=str(path),
                    fix="save it as UTF-8 text") from None
    except OSError as e:
        raise error(f"{what} cannot be read ({e.strerror})", where=str(path), fix=fix_missing) from None


def read_json(path: Path, error: type, what: str, fix_missing: str, fix_broken: str) -> Any:
    """A JSON file, strictly parsed; missing or malformed -> `error` naming the file."""
    text = read_text(path, error, what, fix_missing)
    try:
        return loads(text)
    except JsonProblem as e:
        raise error(f"{what} is not valid JSON ({e})", where=str(path), fix=fix_broken) from None


def read_jsonl(path: Path, error: type, what: str = "file", fix: str = "each line must be one JSON object",
               missing_ok: bool = False, lone_surrogates: bool = False) -> list[tuple[str, Any]]:
    """(file:line, value) for every non-blank line of a JSONL file, strictly parsed (see loads)."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    text = read_text(path, error, what, "check the path")
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            out.append((where, loads(line, lone_surrogates)))
        except JsonProblem as e:
            raise error(f"line is not valid JSON ({e})", where=where, fix=fix) from None
    return out


# ---- atomic writes ---------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk names no file: say which one could not be written
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """An empty folder in PARENT (mode as mkdir would make it), for a whole output written at once."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj) + "\n")


def append_jsonl(path: Path, obj: Any) -> None:
    """One compact line, flushed and fsync'ed (a log: lines are added, never rewritten)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
