"""What must never leave this machine: home paths, user and host names, tokens. Every string of a
report goes through `scrub` first, and so does what the CLI prints for people and every error line
(console output gets pasted into bug reports too); --json output keeps its paths exact and loses
its tokens only."""

from __future__ import annotations

import getpass
import os
import platform
import re
import socket
from pathlib import Path
from typing import Any

TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")
GENERIC_ACCOUNTS = {"root", "nobody"}  # names no person goes by: scrubbing them would only garble paths
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
_SECRET_KEY = re.compile(r"(^|[_-])(token|api_?key|secret|password|passwd|credentials?)$", re.I)


def private_values() -> dict[str, list[str]]:
    """What must never leave the machine: home folders, user names, host names, tokens."""
    homes, users = {os.environ.get("HOME"), str(Path.home())}, {os.environ.get(k) for k in ("USER", "LOGNAME", "USERNAME")}
    try:
        import pwd

        entry = pwd.getpwuid(os.getuid())
        homes.add(entry.pw_dir)
        users.add(entry.pw_name)
    except (ImportError, KeyError):
        pass
    try:
        users.add(getpass.getuser())
    except (KeyError, OSError):
        pass
    hosts = {socket.gethostname(), platform.node()}
    tokens = {os.environ.get(k) for k in TOKEN_ENV}

    def keep(values, min_len=2):
        return sorted({v.rstrip("/") if v != "/" else v for v in values if v and len(v) >= min_len and v != "/"},
                      key=len, reverse=True)

    return {"tokens": keep(tokens, 8), "homes": keep(homes), "hosts": keep(hosts),
            "users": keep(users - GENERIC_ACCOUNTS)}


def scrub_path(text: str, private: dict[str, list[str]]) -> str:
    """Tokens -> <redacted>, home folders -> ~ (a path stays one a shell understands)."""
    for token in private["tokens"]:
        text = text.replace(token, "<redacted>")
    text = _HF_TOKEN.sub("<redacted>", text)
    for home in private["homes"]:
        text = re.sub(rf"(?<![\w.-]){re.escape(home)}(?![\w.-])", "~", text)
    return text


def scrub_text(text: str, private: dict[str, list[str]]) -> str:
    """Tokens -> <redacted>, home folders -> ~, host names -> <host>, user names -> <user>."""
    text = scrub_path(text, private)
    for label, values in (("<host>", private["hosts"]), ("<user>", private["users"])):
        for v in values:
            text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(v)}(?![A-Za-z0-9_])", label, text)
    return text


def scrub(obj: Any, private: dict[str, list[str]] | None = None) -> Any:
    """A copy of a JSON-like value with every private string replaced and secret-named keys redacted."""
    private = private_values() if private is None else private
    if isinstance(obj, dict):
        return {scrub_text(str(k), private): "<redacted>" if _SECRET_KEY.search(str(k)) and v is not None
                else scrub(v, private) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, private) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, private)
    return obj
