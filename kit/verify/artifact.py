"""`kit verify --artifact`: a published adapter folder checked file by file against published sha256s.

The checksums must list the adapter's weights (safetensors) and its config: a file that lists
nothing, or not those, would let an artifact pass with nothing checked. Every listed name must lie
inside the folder (no absolute path, no `..`, no link out of it), and a folder holding pickle files
is refused: an adapter is published as safetensors only.
"""

from __future__ import annotations

from pathlib import Path

from kit import io, rundir
from kit.errors import ReferenceFileError, RunDirError
from kit.verify import reference

REQUIRED = (rundir.ADAPTER_WEIGHTS, rundir.ADAPTER_CONFIG)


def verify_artifact(folder: Path, checksums: Path | None = None) -> dict:
    """Each file the checksums list, re-hashed in FOLDER: ok, differs or missing."""
    folder = Path(folder)
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "not found"
        raise RunDirError(f"artifact folder {state}", where=str(folder), fix="pass the downloaded adapter folder")
    if checksums is None:
        checksums = folder / "checksums.sha256"
        if not checksums.is_file():
            raise ReferenceFileError("no checksums.sha256 in the artifact folder", where=str(folder),
                                     fix="pass --checksums references/<recipe>/<class>.checksums.sha256")
    expected = reference.read_checksums(checksums)
    missing = [name for name in REQUIRED if name not in expected]
    if missing:
        raise ReferenceFileError(f"the checksums do not list {' and '.join(missing)}: the adapter would pass "
                                 "unchecked", where=str(checksums),
                                 fix="use the published checksums of the adapter (they list its weights and config)")
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix in rundir.PICKLE_SUFFIXES)
    if pickles:
        raise RunDirError(f"the artifact holds pickle files ({', '.join(pickles[:3])}); an adapter is published as "
                          "safetensors only (a pickle can run code when loaded)", where=str(folder),
                          fix="download the safetensors adapter, and delete the pickle files")
    root = folder.resolve()
    files = []
    for name, digest in sorted(expected.items()):
        path = folder / name
        if path.exists() and not path.resolve().is_relative_to(root):
            raise RunDirError(f"{name} is a link to a file outside the artifact folder", where=str(path),
                              fix="replace the link with the published file")
        actual = io.sha256_file(path) if path.is_file() else None
        status = "ok" if actual == digest else ("missing" if actual is None else "differs")
        files.append({"file": name, "expected": digest, "actual": actual, "status": status})
    listed = set(expected) | {Path(checksums).name}
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in listed)
    return {"folder": str(folder), "checksums": str(checksums), "ok": all(f["status"] == "ok" for f in files),
            "files": files, "not_listed": extra}
