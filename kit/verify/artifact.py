"""`kit verify --artifact`: a published adapter folder checked file by file against published sha256s."""

from __future__ import annotations

from pathlib import Path

from kit import io
from kit.errors import ReferenceFileError, RunDirError
from kit.verify import reference


def verify_artifact(folder: Path, checksums: Path | None = None) -> dict:
    """Each file the checksums list, re-hashed in FOLDER: ok, differs or missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunDirError("artifact folder not found", where=str(folder), fix="pass the downloaded adapter folder")
    if checksums is None:
        checksums = folder / "checksums.sha256"
        if not checksums.is_file():
            raise ReferenceFileError("no checksums.sha256 in the artifact folder", where=str(folder),
                                     fix="pass --checksums references/<recipe>/<class>.checksums.sha256")
    expected = reference.read_checksums(checksums)
    files = []
    for name, digest in sorted(expected.items()):
        path = folder / name
        actual = io.sha256_file(path) if path.is_file() else None
        status = "ok" if actual == digest else ("missing" if actual is None else "differs")
        files.append({"file": name, "expected": digest, "actual": actual, "status": status})
    listed = set(expected) | {Path(checksums).name}
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in listed)
    return {"folder": str(folder), "checksums": str(checksums), "ok": all(f["status"] == "ok" for f in files),
            "files": files, "not_listed": extra}
