"""Sending a report: a pull request on a Hugging Face dataset repo, a folder of the same files, or a
bundle to send later.

What a report adds to the repo (kit.report.dataset says why): the flat row under data/, the
report's files under reports/, and the dataset card (README.md) when the repo has none yet.
`--bundle DIR` writes exactly those files into DIR, which `datasets.load_dataset(DIR)` reads.
Nothing is sent without an explicit --upload, and nothing without the user's token, which comes
from HF_TOKEN or the HF login, never from the command line or a file the kit writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from kit import io
from kit.errors import KitError
from kit.report import dataset
from kit.report.scrub import scrub


class UploadError(KitError):
    """The Hub refused the upload (not logged in, no write access, no such dataset repo)."""


def upload_plan(files: list[Path], repo_id: str, report: dict) -> dict:
    """Exactly what --upload sends: a pull request on a dataset repo adding the row and these files
    (and the card, when the repo has none)."""
    digests = {p: io.sha256_file(p) for p in files}
    report_json = next(p for p in files if p.name == "report.json")
    row = scrub(dataset.row(report, digests[report_json], dataset.written_at(report_json)))
    row_path, folder = dataset.paths_in_repo(report, digests[report_json])
    row_bytes, card_bytes = dataset.row_bytes(row), dataset.card_text().encode()
    return {"repo_id": repo_id, "repo_type": "dataset", "create_pr": True,
            "commit_message": f"kit report: {report['run']['recipe_name']} on "
                              f"{report['run']['hardware_class_slug']}: {report['verdict']}",
            "commit_description": "\n".join(f"- {c['message']}" for c in report["causes"]) or "no causes",
            "row": row,
            "files": [{"path_in_repo": row_path, "size_bytes": len(row_bytes), "sha256": io.sha256_bytes(row_bytes)}]
                     + [{"path_in_repo": f"{folder}/{p.name}", "local": str(p), "size_bytes": p.stat().st_size,
                         "sha256": digests[p]} for p in files],
            "card": {"path_in_repo": dataset.CARD, "size_bytes": len(card_bytes), "sha256": io.sha256_bytes(card_bytes),
                     "added": "only when the repo has no README.md yet"}}


def contents(plan: dict, with_card: bool) -> dict[str, bytes]:
    """path in repo -> bytes, for every file of the plan (the card only when asked)."""
    out = {}
    for f in plan["files"]:
        out[f["path_in_repo"]] = Path(f["local"]).read_bytes() if "local" in f else dataset.row_bytes(plan["row"])
    if with_card:
        out[dataset.CARD] = dataset.card_text().encode()
    return out


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def upload(plan: dict) -> dict:
    """Open the pull request. Returns {"sent": True, "pr_url", "card_added"}, or {"sent": False,
    "reason"} when the Hub cannot be reached (write a bundle then); no token, or a refusal by the
    Hub, raises UploadError."""
    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if not get_token():
        raise UploadError("no Hugging Face token, so nothing was sent", where=plan["repo_id"],
                          fix="log in (`hf auth login`) or set HF_TOKEN; or write the files with --dry-run --bundle DIR")
    api = HfApi()
    try:
        card_added = not api.file_exists(plan["repo_id"], dataset.CARD, repo_type="dataset")
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)
                      for path, data in contents(plan, with_card=card_added).items()]
        info = api.create_commit(repo_id=plan["repo_id"], repo_type="dataset", operations=operations,
                                 create_pr=True, commit_message=plan["commit_message"],
                                 commit_description=plan["commit_description"])
    except (OfflineModeIsEnabled, httpx.TransportError, ConnectionError) as e:
        return {"sent": False, "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        fix = {401: "log in (`hf auth login`) or set HF_TOKEN to a token with write access",
               403: "use a token with write access to that repo, or open the PR on a repo you can write to",
               404: "check the dataset repo id (owner/name), and that it is a dataset repo"}.get(
                   status, "see the Hub's message, or upload the bundle later")
        raise UploadError(f"the Hub refused the upload (HTTP {status})", where=plan["repo_id"], fix=fix) from None
    return {"sent": True, "card_added": card_added, "pr_url": getattr(info, "pr_url", None),
            "commit_url": getattr(info, "commit_url", None)}


def how_to_send(repo_id: str, folder: str) -> str:
    return (f"hf upload {repo_id} {folder} . --repo-type dataset --create-pr   "
            f"(add --exclude README.md when the repo already has its card)")


def write_bundle_dir(plan: dict, folder: Path) -> dict:
    """The files the upload adds, at their repo paths under FOLDER; the card only when FOLDER has
    none, as on the Hub. Several reports written into one folder make one dataset."""
    folder = Path(folder)
    card_added = not (folder / dataset.CARD).exists()
    written = []
    for path, data in contents(plan, with_card=card_added).items():
        io.atomic_write_bytes(folder / path, data)
        written.append(path)
    return {"folder": str(folder), "written": written, "card_added": card_added,
            "how": how_to_send(plan["repo_id"], str(folder))}


def write_bundle(plan: dict, out_dir: Path) -> dict:
    """upload-bundle.tar.gz: the files at their repo paths (card included), plus UPLOAD.md saying how
    to send them."""
    import io as bytes_io
    import tarfile

    how = (f"kit report RUN_DIR --upload {plan['repo_id']}   (when online again), or:\n"
           f"mkdir bundle && tar xzf upload-bundle.tar.gz -C bundle && rm bundle/UPLOAD.md && "
           + how_to_send(plan["repo_id"], "bundle"))
    path = Path(out_dir) / "upload-bundle.tar.gz"
    members = list(contents(plan, with_card=True).items())
    members.append(("UPLOAD.md", f"# Upload later\n\n```sh\n{how}\n```\n".encode()))
    buffer = bytes_io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, bytes_io.BytesIO(data))
    io.atomic_write_bytes(path, buffer.getvalue())
    return {"bundle": str(path), "how": how}


def send(files: list[Path], repo_id: str, report: dict, dry_run: bool, out_dir: Path,
         bundle_dir: Path | None = None) -> dict:
    """--upload: the plan alone (dry run); a bundle when offline or the Hub cannot be reached; else
    the PR. --bundle DIR: also write the files into DIR."""
    plan = upload_plan(files, repo_id, report)
    if bundle_dir is not None:
        plan["bundle_dir"] = write_bundle_dir(plan, bundle_dir)
    if dry_run:
        return {"dry_run": True, "sent": False, **plan}
    if is_offline():
        return {"sent": False, "reason": "HF_HUB_OFFLINE is set", **plan, **write_bundle(plan, out_dir)}
    sent = upload(plan)
    return {**plan, **sent, **({} if sent["sent"] else write_bundle(plan, out_dir))}
