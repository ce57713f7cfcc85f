"""kit report and kit reproduce: a readable report with no secret in it, and sending it (mocked hub)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from kit.report import build as report
from kit.report import dataset
from kit.verify import reference

from conftest import kit_here, manifest, write_recipe

FAKE_TOKEN = "hf_FAKEfakeFAKEfake1234567890"
PRIVATE = {"tokens": ["sekrit-token-value"], "homes": ["/home/amara"], "hosts": ["amara-laptop"], "users": ["amara"]}


# ---- scrubbing -------------------------------------------------------------------------------

def test_scrub_replaces_home_user_host_and_tokens():
    text = "/home/amara/runs/x on amara-laptop by amara with hf_abcdefghijklmnopqrstuvwx and sekrit-token-value"
    assert report.scrub_text(text, PRIVATE) == "~/runs/x on <host> by <user> with <redacted> and <redacted>"


def test_scrub_leaves_words_that_only_contain_a_user_name():
    assert report.scrub_text("amaranth amara_x amara.", PRIVATE) == "amaranth amara_x <user>."


def test_scrub_redacts_secret_named_keys_but_keeps_tokenizer_fields():
    obj = {"hf_token": "x", "api_key": "y", "tokenizer": {"sha256": "z"}, "label_tokens": 5,
           "nested": [{"path": "/home/amara/a"}], "n": 3, "ok": True, "none": None}
    assert report.scrub(obj, PRIVATE) == {"hf_token": "<redacted>", "api_key": "<redacted>",
                                          "tokenizer": {"sha256": "z"}, "label_tokens": 5,
                                          "nested": [{"path": "~/a"}], "n": 3, "ok": True, "none": None}


def test_private_values_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HOME", "/tmp/fake-home-kz")
    monkeypatch.setenv("USER", "fakeuser-kz")
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    private = report.private_values()
    assert "/tmp/fake-home-kz" in private["homes"] and "fakeuser-kz" in private["users"]
    assert FAKE_TOKEN in private["tokens"] and private["hosts"]
    assert "/" not in private["homes"]


# ---- the report (slow: needs the evaluated tiny run) -----------------------------------------

@pytest.mark.slow
def test_report_writes_json_markdown_and_png_naming_the_verdict(run_copy, tiny_reference):
    proc = kit_here("report", str(run_copy), "--reference", str(tiny_reference), "--json")
    assert proc.exit_code == 0, proc.output
    out = json.loads(proc.stdout)
    files = [Path(f) for f in out["files"]]
    assert [f.name for f in files] == ["report.json", "report.md", "loss_curve.png"]
    assert all(f.is_file() and f.parent == run_copy / "report" for f in files)
    rep = json.loads(files[0].read_text())
    assert rep["schema"] == "kwanzaa-kit.report.v1" and rep["verdict"] == "bit-exact" == out["verdict"]
    assert rep["fingerprints"]["outputs"]["adapter"] == manifest(run_copy)["outputs"]["adapter"]["sha256"]
    assert {m["name"] for m in rep["metrics"]} >= {"parse_rate", "hallucination_rate"}
    assert all(p["band"]["in_band"] for p in rep["loss_curve"])
    md = files[1].read_text()
    assert "**Verdict: bit-exact**" in md and "kit reproduce --recipe recipes/tiny.yaml" in md
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_no_report_file_holds_a_token_home_path_or_user_name(evaluated_run, tiny_reference, run_kit, tmp_path):
    home = tmp_path / "home" / "fakeuser-kz"
    run = home / "runs" / "tiny"
    shutil.copytree(evaluated_run, run)
    m = manifest(run)  # as if a build step had leaked them into the environment record
    m["inputs"]["environment"]["image"] = {"built_in": str(home / "src"), "by": "fakeuser-kz",
                                           "HF_TOKEN": FAKE_TOKEN, "log": f"pushed with {FAKE_TOKEN}"}
    (run / "manifest.json").write_text(json.dumps(m))
    env = {"HF_TOKEN": FAKE_TOKEN, "HOME": str(home), "USER": "fakeuser-kz"}
    run_kit("report", str(run), "--reference", str(tiny_reference), env=env, check=True)
    files = sorted((run / "report").iterdir())
    assert {f.name for f in files} == set(report.FILES)
    for f in files:
        data = f.read_bytes()
        for secret in (FAKE_TOKEN, str(home), "fakeuser-kz"):
            assert secret.encode() not in data, f"{secret} in {f.name}"
    image = json.loads((run / "report" / "report.json").read_text())["environment"]["image"]
    assert image == {"built_in": "~/src", "by": "<user>", "HF_TOKEN": "<redacted>", "log": "pushed with <redacted>"}


# ---- sending (in-process, the hub mocked) ----------------------------------------------------

def _invoke(*args):
    return kit_here(*args, catch_exceptions=False)


class _Commit:
    pr_url = "https://huggingface.co/datasets/kwanzaa/reports/discussions/7"
    commit_url = "https://huggingface.co/datasets/kwanzaa/reports/commit/abc"


@pytest.fixture
def hub(monkeypatch):
    """HfApi.create_commit replaced: records its calls, never touches the network."""
    from huggingface_hub import HfApi

    calls = []

    def create_commit(self, *args, **kwargs):
        calls.append((args, kwargs))
        return _Commit()

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "file_exists", lambda self, *args, **kwargs: False)  # an empty dataset repo
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return calls


@pytest.mark.slow
def test_upload_opens_a_pull_request_on_the_dataset_repo(run_copy, tiny_reference, hub):
    result = _invoke("report", str(run_copy), "--reference", str(tiny_reference), "--upload", "kwanzaa/reports",
                     "--json")
    assert result.exit_code == 0, result.output
    (args, kwargs), = hub
    assert kwargs["repo_id"] == "kwanzaa/reports" and kwargs["repo_type"] == "dataset"
    assert kwargs["create_pr"] is True and "token" not in kwargs  # from HF_TOKEN / the login, never an argument
    assert kwargs["commit_message"] == f"kit report: tiny on {reference.hardware_slug(_hw(run_copy))}: bit-exact"
    paths = [op.path_in_repo for op in kwargs["operations"]]
    row, *files, card = paths
    assert row.startswith("data/tiny/cpu-") and row.endswith(".jsonl") and card == "README.md"
    assert [p.rsplit("/", 1)[1] for p in files] == list(report.FILES)
    assert all(p.startswith("reports/tiny/cpu-") for p in files)
    assert json.loads(result.output)["upload"]["pr_url"] == _Commit.pr_url


@pytest.mark.slow
def test_dry_run_lists_paths_sizes_and_sha256_and_sends_nothing(run_copy, tiny_reference, hub):
    result = _invoke("report", str(run_copy), "--reference", str(tiny_reference), "--upload", "kwanzaa/reports",
                     "--dry-run", "--json")
    assert result.exit_code == 0 and hub == []
    up = json.loads(result.output)["upload"]
    assert up["dry_run"] is True and up["sent"] is False
    row, *files = up["files"]
    row_bytes = dataset.row_bytes(up["row"])
    assert (row["size_bytes"], row["sha256"]) == (len(row_bytes), hashlib.sha256(row_bytes).hexdigest())
    for f in files:
        local = Path(f["local"])
        assert f["size_bytes"] == local.stat().st_size
        assert f["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()


@pytest.mark.slow
def test_offline_writes_a_bundle_and_says_how_to_send_it(run_copy, tiny_reference, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = _invoke("report", str(run_copy), "--reference", str(tiny_reference), "--upload", "kwanzaa/reports")
    assert result.exit_code == 0 and hub == []
    assert "upload-bundle.tar.gz" in result.output and "hf upload kwanzaa/reports" in result.output
    with tarfile.open(run_copy / "report" / "upload-bundle.tar.gz") as tar:
        names = tar.getnames()
    assert "UPLOAD.md" in names and sum(n.endswith(tuple(report.FILES)) for n in names) == 3


@pytest.mark.slow
def test_a_connection_error_writes_the_bundle_instead(run_copy, tiny_reference, monkeypatch):
    import httpx
    from huggingface_hub import HfApi

    def unreachable(self, *args, **kwargs):
        raise httpx.ConnectError("no route to host")

    monkeypatch.setattr(HfApi, "create_commit", unreachable)
    monkeypatch.setattr(HfApi, "file_exists", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    result = _invoke("report", str(run_copy), "--reference", str(tiny_reference), "--upload", "kwanzaa/reports",
                     "--json")
    up = json.loads(result.output)["upload"]
    assert result.exit_code == 0 and up["sent"] is False and "ConnectError" in up["reason"]
    assert Path(up["bundle"]).is_file()


@pytest.mark.slow
def test_a_refused_upload_exits_2_saying_how_to_log_in(run_copy, tiny_reference, monkeypatch):
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    def unauthorized(self, *args, **kwargs):
        response = httpx.Response(401, request=httpx.Request("POST", "https://huggingface.co/api/commit"))
        raise HfHubHTTPError("401 Unauthorized", response=response)

    monkeypatch.setattr(HfApi, "create_commit", unauthorized)
    monkeypatch.setattr(HfApi, "file_exists", lambda self, *args, **kwargs: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)  # a token the Hub does not accept
    result = _invoke("report", str(run_copy), "--reference", str(tiny_reference), "--upload", "kwanzaa/reports")
    assert result.exit_code == 2 and "HTTP 401" in result.output and "hf auth login" in result.output


def test_dry_run_without_upload_is_a_usage_error():
    assert _invoke("report", "runs/none", "--dry-run").exit_code == 2


def test_artifact_and_a_run_dir_together_are_a_usage_error():
    assert _invoke("verify", "runs/none", "--artifact", "adapter").exit_code == 2


def _hw(run: Path) -> dict:
    return manifest(run)["inputs"]["environment"]["hardware"]


# ---- reproduce (slow: trains and evaluates the tiny recipe; with a reference: tests/test_recipe_choice.py)

@pytest.mark.slow
def test_reproduce_without_a_reference_still_reports_then_exits_2_naming_the_recipe(run_kit, tmp_path):
    out = tmp_path / "repro"
    recipe = write_recipe(tmp_path / "tiny.yaml", training__max_steps=1)  # the stages, not the training, matter here
    proc = run_kit("reproduce", "--recipe", str(recipe), "--output", str(out),
                   env={reference.REFERENCES_ENV: str(tmp_path / "none")})
    assert proc.returncode == 2 and "no reference for recipe 'tiny'" in proc.stderr.splitlines()[-1]
    rep = json.loads((out / "report" / "report.json").read_text())
    assert rep["verdict"] == "no-reference" and rep["reference"] is None
    assert "no reference for this recipe yet" in (out / "report" / "report.md").read_text()
