"""Sending a report: a pull request on a Hugging Face dataset repo, or a bundle to send later.

The token comes from HF_TOKEN or the HF login, never from the command line or a file the kit writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from kit import io
from kit.errors import KitError


class UploadError(KitError):
    """The Hub refused the upload (not logged in, no write access, no such dataset repo)."""


def upload_plan(files: list[Path], repo_id: str, report: dict) -> dict:
    """Exactly what --upload sends: a pull request on a dataset repo with these files."""
    digests = {p: io.sha256_file(p) for p in files}
    report_sha = digests[next(p for p in files if p.name == "report.json")]
    adapter = (report["fingerprints"]["outputs"].get("adapter") or "none")[:12]
    folder = f"reports/{report['run']['recipe_name']}/{report['run']['hardware_class_slug']}/{adapter}-{report_sha[:8]}"
    return {"repo_id": repo_id, "repo_type": "dataset", "create_pr": True,
            "commit_message": f"kit report: {report['run']['recipe_name']} on "
                              f"{report['run']['hardware_class_slug']}: {report['verdict']}",
            "commit_description": "\n".join(f"- {c['message']}" for c in report["causes"]) or "no causes",
            "files": [{"path_in_repo": f"{folder}/{p.name}", "local": str(p), "size_bytes": p.stat().st_size,
                       "sha256": digests[p]} for p in files]}


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def upload(plan: dict) -> dict:
    """Open the pull request. Returns {"sent": True, "pr_url"}, or {"sent": False, "reason"} when
    the Hub cannot be reached (write a bundle then); a refusal by the Hub raises UploadError."""
    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    operations = [CommitOperationAdd(path_in_repo=f["path_in_repo"], path_or_fileobj=f["local"]) for f in plan["files"]]
    try:
        info = HfApi().create_commit(repo_id=plan["repo_id"], repo_type="dataset", operations=operations,
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
    return {"sent": True, "pr_url": getattr(info, "pr_url", None), "commit_url": getattr(info, "commit_url", None)}


def write_bundle(plan: dict, out_dir: Path) -> dict:
    """upload-bundle.tar.gz: the files at their repo paths, plus UPLOAD.md saying how to send them."""
    import io as bytes_io
    import tarfile

    how = (f"kit report RUN_DIR --upload {plan['repo_id']}   (when online again), or:\n"
           f"mkdir bundle && tar xzf upload-bundle.tar.gz -C bundle && "
           f"hf upload {plan['repo_id']} bundle . --repo-type dataset --create-pr "
           f"--commit-message \"{plan['commit_message']}\"")
    path = Path(out_dir) / "upload-bundle.tar.gz"
    members = [(f["path_in_repo"], Path(f["local"]).read_bytes()) for f in plan["files"]]
    members.append(("UPLOAD.md", f"# Upload later\n\n```sh\n{how}\n```\n".encode()))
    buffer = bytes_io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, bytes_io.BytesIO(data))
    io.atomic_write_bytes(path, buffer.getvalue())
    return {"bundle": str(path), "how": how}


def send(files: list[Path], repo_id: str, report: dict, dry_run: bool, out_dir: Path) -> dict:
    """--upload: the plan alone (dry run); a bundle when offline or the Hub cannot be reached; else the PR."""
    plan = upload_plan(files, repo_id, report)
    if dry_run:
        return {"dry_run": True, "sent": False, **plan}
    if is_offline():
        return {"sent": False, "reason": "HF_HUB_OFFLINE is set", **plan, **write_bundle(plan, out_dir)}
    sent = upload(plan)
    return {**plan, **sent, **({} if sent["sent"] else write_bundle(plan, out_dir))}
