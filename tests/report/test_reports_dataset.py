"""Reports as a Hub dataset: the flat row, the card, --bundle, the upload against a mocked hub, and
`kit reports` reading them back with `datasets`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from kit.report import aggregate, dataset, upload

FAKE_TOKEN = "hf_FAKEfakeFAKEfake1234567890"
CPU = {"device_type": "cpu", "cpu_arch": "x86_64", "cpu_isa": "avx2", "nodes": 1, "world_size": 1,
       "deterministic": True, "cpu_threads": 2}
H100 = {"device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "nodes": 1,
        "world_size": 1,
        "deterministic": True, "cpu_threads": 16}


def _band(low, high, value):
    return {"low": low, "high": high, "center": (low + high) / 2, "in_band": low <= value <= high,
            "distance": 0.0 if low <= value <= high else min(abs(value - low), abs(value - high))}


def sample_report(hw: dict, verdict: str, eval_loss: float, parse_rate: float, adapter: str) -> dict:
    """A kwanzaa-kit.report.v1 report as kit.report.build writes it (the fields a row reads)."""
    from kit.verify.reference import hardware_slug

    slug = hardware_slug(hw)
    return {
        "schema": "kwanzaa-kit.report.v1", "kit_version": "0.1.0",
        "run": {"name": "run", "recipe_name": "tiny", "recipe_file": "recipes/tiny.yaml", "status": "complete",
                "plan": {"strategy": "lora", "reason": "recipe", "source": "recipe"}, "hardware_class_slug": slug},
        "verdict": verdict, "verdict_text": "...", "exit_code": 1 if verdict == "mismatch" else 0,
        "causes": [{"message": "eval_loss outside the band", "effect": "mismatch"}] if verdict == "mismatch" else [],
        "reference": {"file": f"references/tiny/{slug}.json", "same_class": True},
        "fingerprints": {"inputs": {"recipe": "1" * 64, "dataset": "2" * 64, "tokenizer": "3" * 64,
                                    "base_model": "4" * 64, "environment": "5" * 64},
                         "outputs": {"adapter": adapter * 64, "train_log": "7" * 64}},
        "eval_loss": {"value": eval_loss, "band": _band(2.0, 2.1, eval_loss)},
        "metrics": [{"name": "parse_rate", "value": parse_rate, "numerator": int(parse_rate * 8), "denominator": 8,
                     "band": _band(0.5, 0.75, parse_rate)},
                    {"name": "citation_accuracy", "value": None, "numerator": 0, "denominator": 0,
                     "band": {"low": None, "high": None, "center": None, "in_band": True, "distance": None}}],
        "loss_curve": [{"step": 1, "loss": 3.0, "band": _band(2.9, 3.1, 3.0)},
                       {"step": 2, "loss": 2.5, "band": _band(2.4, 2.45, 2.5)}],
        "speed": {"train": {"tokens_per_s": 960.0, "mfu": None, "peak_reserved_gib": None},
                  "eval": {"new_tokens_per_s": 87.3}},
        "environment": {"hardware": hw, "driver": "550.54.15" if hw["device_type"] == "cuda" else None,
                        "software": {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.17.0", "peft": "0.21.2",
                                     "cuda": "12.8" if hw["device_type"] == "cuda" else None, "lock_sha256": "8" * 64},
                        "image": {"base_image_digest": "sha256:" + "9" * 64, "revision": "a" * 40}
                        if hw["device_type"] == "cuda" else None, "sha256": "5" * 64},
    }


def write_report(report: dict, folder: Path) -> list[Path]:
    """report.json plus stand-ins for report.md and loss_curve.png, as `kit report` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    (folder / "report.md").write_text(f"# {report['verdict']}\n")
    (folder / "loss_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return [folder / name for name in ("report.json", "report.md", "loss_curve.png")]


THREE = [(CPU, "bit-exact", 2.05, 0.625, "a"), (CPU, "equivalent", 2.08, 0.5, "b"), (H100, "mismatch", 2.3, 0.25, "c")]


@pytest.fixture
def three_reports(tmp_path) -> list[tuple[dict, list[Path]]]:
    out = []
    for i, args in enumerate(THREE):
        rep = sample_report(*args)
        out.append((rep, write_report(rep, tmp_path / "runs" / f"run-{i}" / "report")))
    return out


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


def _bundle(three_reports, folder: Path) -> list[dict]:
    return [upload.send(files, "kwanzaa-kit/reproductions", rep, dry_run=True, out_dir=files[0].parent,
                        bundle_dir=folder) for rep, files in three_reports]


# ---- the row ---------------------------------------------------------------------------------

def test_a_row_is_flat_and_has_every_column_the_card_declares():
    rep = sample_report(H100, "mismatch", 2.3, 0.25, "c")
    row = dataset.row(rep, "f" * 64, __import__("datetime").datetime(2026, 1, 2, 3, 4, 5))
    assert list(row) == list(dataset.COLUMNS)
    assert not any(isinstance(v, dict) for v in row.values())
    assert row["verdict"] == "mismatch" and row["recipe"] == "tiny" and row["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert row["hardware_class"] == "cuda-nvidia-h100-80gb-hbm3-cc9.0-w1-t16-det" and row["driver"] == "550.54.15"
    assert row["eval_loss"] == 2.3 and (row["eval_loss_low"], row["eval_loss_high"]) == (2.0, 2.1)
    assert row["eval_loss_in_band"] is False and row["parse_rate_in_band"] is False
    assert row["citation_accuracy"] is None and row["citation_accuracy_in_band"] is None  # no data: no band
    assert row["loss_steps"] == 2 and row["loss_steps_outside_band"] == 1
    assert row["kit_commit"] == "a" * 40 and row["image_digest"] == "sha256:" + "9" * 64
    assert row["adapter_sha256"] == "c" * 64 and row["tokens_per_s"] == 960.0
    assert row["causes"] == ["eval_loss outside the band"]


def test_the_official_repo_is_named_and_the_environment_overrides_it(monkeypatch):
    monkeypatch.delenv(dataset.REPO_ENV, raising=False)
    assert dataset.official_repo() == dataset.OFFICIAL_REPO == "kwanzaa-kit/reproductions"
    monkeypatch.setenv(dataset.REPO_ENV, "my-lab/kwanzaa-reports")
    assert dataset.official_repo() == "my-lab/kwanzaa-reports"


# ---- the folder the upload would write, read back with datasets -------------------------------

def test_three_bundled_reports_load_as_three_rows_with_the_cards_configs(three_reports, tmp_path, datasets_cache):
    import datasets

    folder = tmp_path / "reports-dataset"
    results = _bundle(three_reports, folder)
    assert [r["bundle_dir"]["card_added"] for r in results] == [True, False, False]  # the card once
    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/**/*.jsonl"}]}]
    rows = sorted(folder.glob("data/**/*.jsonl"))
    assert len(rows) == 3 and all(len(p.read_text().splitlines()) == 1 for p in rows)
    assert len(list(folder.glob("reports/**/report.json"))) == 3  # the whole reports ride along, not as rows
    ds = datasets.load_dataset(str(folder), split="train")
    assert ds.num_rows == 3
    assert {"verdict", "recipe", "hardware_class", "eval_loss", "parse_rate_low"} <= set(ds.column_names)
    assert sorted(ds["verdict"]) == ["bit-exact", "equivalent", "mismatch"]


def test_the_row_that_leaves_the_machine_is_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    rep = sample_report(CPU, "mismatch", 2.3, 0.25, "c")
    rep["causes"] = [{"message": f"pushed with {FAKE_TOKEN}", "effect": "mismatch"}]
    plan = upload.upload_plan(write_report(rep, tmp_path / "r"), "kwanzaa-kit/reproductions", rep)
    assert plan["row"]["causes"] == ["pushed with <redacted>"]
    row_file = plan["files"][0]["path_in_repo"]
    assert FAKE_TOKEN.encode() not in upload.contents(plan, with_card=False)[row_file]


def test_the_bundle_holds_exactly_what_the_upload_would_add(three_reports, tmp_path):
    rep, files = three_reports[0]
    result = _bundle([three_reports[0]], tmp_path / "b")[0]
    written = sorted(str(p.relative_to(tmp_path / "b")) for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert written == sorted([f["path_in_repo"] for f in result["files"]] + ["README.md"])
    for f in result["files"]:
        assert __import__("hashlib").sha256((tmp_path / "b" / f["path_in_repo"]).read_bytes()).hexdigest() == f["sha256"]


def test_kit_reports_counts_verdicts_by_class_and_writes_the_png(three_reports, tmp_path, datasets_cache):
    folder = tmp_path / "reports-dataset"
    _bundle(three_reports, folder)
    result = aggregate.collect(str(folder), None, tmp_path / "out" / "reports.png")
    assert result["rows"] == 3 and result["kind"] == "dataset folder"
    by_class = {g["hardware_class"]: g for g in result["groups"]}
    cpu, gpu = by_class["cpu-x86_64-avx2-w1-t2-det"], by_class["cuda-nvidia-h100-80gb-hbm3-cc9.0-w1-t16-det"]
    assert cpu["reports"] == 2 and cpu["verdicts"] == {"bit-exact": 1, "equivalent": 1, "mismatch": 0, "no-reference": 0}
    assert gpu["reports"] == 1 and gpu["verdicts"]["mismatch"] == 1 and gpu["devices"] == ["NVIDIA H100 80GB HBM3"]
    loss = cpu["metrics"]["eval_loss"]
    assert (loss["n"], loss["min"], loss["max"], loss["band"], loss["in_band"]) == (2, 2.05, 2.08, [2.0, 2.1], 2)
    assert gpu["metrics"]["parse_rate"]["outside_band"] == 1
    assert cpu["metrics"]["citation_accuracy"] == {"n": 0, "min": None, "max": None, "band": None, "in_band": 0,
                                                   "outside_band": 0}
    png = Path(result["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_kit_reports_reads_report_files_and_offline_bundles_too(three_reports, tmp_path, datasets_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rep, files = three_reports[2]
    offline = upload.send(files, "kwanzaa-kit/reproductions", rep, dry_run=False, out_dir=tmp_path / "runs")
    assert offline["sent"] is False and Path(offline["bundle"]).is_file()
    rows, where = aggregate.load_rows(str(tmp_path / "runs"))  # 3 report.json + the bundle of the third
    assert where["kind"] == "report files" and len(rows) == 3  # the bundle's row is the third report's own
    assert sorted(r["verdict"] for r in rows) == ["bit-exact", "equivalent", "mismatch"]


def test_kit_reports_cli_prints_the_table_and_json(three_reports, tmp_path, datasets_cache, monkeypatch):
    from click.testing import CliRunner

    from kit.cli import cli

    monkeypatch.setenv("COLUMNS", "200")
    folder = tmp_path / "reports-dataset"
    _bundle(three_reports, folder)
    runner = CliRunner()
    out = runner.invoke(cli, ["reports", str(folder), "--png", str(tmp_path / "r.png"), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rows"] == 3
    text = runner.invoke(cli, ["reports", str(folder), "--png", str(tmp_path / "r.png")])
    assert text.exit_code == 0 and "3 reports from" in text.output and "cuda-nvidia-h100" in text.output
    missing = runner.invoke(cli, ["reports", str(tmp_path / "nothing-here")])
    assert missing.exit_code == 2 and "not a Hub dataset id" in missing.output


def test_kit_reports_pins_a_hub_dataset_to_the_commit_its_revision_names(tmp_path, monkeypatch, three_reports,
                                                                          datasets_cache):
    import datasets
    from huggingface_hub import HfApi

    folder = tmp_path / "reports-dataset"
    _bundle(three_reports, folder)
    asked = {}
    commit = "c0ffee" + "0" * 34

    class Info:
        sha = commit

    def dataset_info(self, repo_id, revision=None, **kwargs):
        asked["info"] = (repo_id, revision)
        return Info()

    real_load = datasets.load_dataset

    def load_dataset(path, revision=None, **kwargs):  # the hub, served from the local folder
        asked["load"] = (path, revision)
        return real_load(str(folder), **kwargs)

    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    result = aggregate.collect("kwanzaa-kit/reproductions", None, None)
    assert asked == {"info": ("kwanzaa-kit/reproductions", "main"), "load": ("kwanzaa-kit/reproductions", commit)}
    assert result["revision"] == commit and result["rows"] == 3 and result["kind"] == "hub"


# ---- the upload against a mocked hub ---------------------------------------------------------

class _Commit:
    pr_url = "https://huggingface.co/datasets/kwanzaa-kit/reproductions/discussions/7"
    commit_url = "https://huggingface.co/datasets/kwanzaa-kit/reproductions/commit/abc"


@pytest.fixture
def hub(monkeypatch):
    """A dataset repo in memory: create_commit records each PR and merges it; file_exists reads it."""
    from huggingface_hub import HfApi

    repo: dict[str, bytes] = {}
    commits: list[dict] = []

    def create_commit(self, repo_id, operations, **kwargs):
        added = {op.path_in_repo: op.path_or_fileobj for op in operations}
        commits.append({"repo_id": repo_id, "paths": sorted(added), **kwargs})
        repo.update(added)
        return _Commit()

    def file_exists(self, repo_id, filename, **kwargs):
        return filename in repo

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "file_exists", file_exists)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return {"repo": repo, "commits": commits}


def test_upload_opens_a_pr_with_the_row_and_writes_the_card_only_once(three_reports, hub):
    for rep, files in three_reports[:2]:
        result = upload.send(files, "kwanzaa-kit/reproductions", rep, dry_run=False, out_dir=files[0].parent)
        assert result["sent"] is True and result["pr_url"] == _Commit.pr_url
    first, second = hub["commits"]
    assert first["create_pr"] is True and first["repo_type"] == "dataset" and "token" not in first
    assert "README.md" in first["paths"] and "README.md" not in second["paths"]
    for c in (first, second):
        rows = [p for p in c["paths"] if p.startswith("data/")]
        assert len(rows) == 1 and rows[0].startswith("data/tiny/cpu-x86_64-avx2-w1-t2-det/")
        assert json.loads(hub["repo"][rows[0]])["row_schema"] == dataset.ROW_SCHEMA
        assert sum(p.startswith("reports/tiny/") for p in c["paths"]) == 3


def test_no_token_means_nothing_is_sent_and_exit_2(three_reports, hub, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from kit.cli import cli

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)  # no stored login either
    rep, files = three_reports[0]
    with pytest.raises(upload.UploadError, match="no Hugging Face token") as refused:
        upload.send(files, "kwanzaa-kit/reproductions", rep, dry_run=False, out_dir=files[0].parent)
    assert hub["commits"] == [] and refused.value.exit_code == 2 and "hf auth login" in str(refused.value)
    result = CliRunner().invoke(cli, ["report", "runs/none", "--bundle", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--upload" in result.output


def test_upload_without_a_repo_goes_to_the_official_one(monkeypatch, three_reports):
    from kit.cli import verify_cmd

    sent = {}
    monkeypatch.setattr(upload, "send", lambda files, repo_id, *a, **k: sent.setdefault("repo", repo_id) and {})
    monkeypatch.setenv(dataset.REPO_ENV, "my-lab/kwanzaa-reports")
    rep, files = three_reports[0]
    verify_cmd._send(files, "", rep, True, files[0].parent, None)
    assert sent["repo"] == "my-lab/kwanzaa-reports"


# ---- end to end on the tiny run (slow) --------------------------------------------------------

@pytest.mark.slow
def test_report_dry_run_bundle_is_a_dataset_that_kit_reports_aggregates(run_copy, tiny_reference, run_kit, tmp_path):
    folder = tmp_path / "bundle"
    env = {"HF_DATASETS_CACHE": str(tmp_path / "hf-datasets-cache")}
    run_kit("report", str(run_copy), "--reference", str(tiny_reference), "--upload", "kwanzaa-kit/reproductions",
            "--dry-run", "--bundle", str(folder), "--json", env=env, check=True)
    import datasets

    datasets.config.HF_DATASETS_CACHE = tmp_path / "hf-datasets-cache"
    ds = datasets.load_dataset(str(folder), split="train")
    assert ds.num_rows == 1 and ds[0]["recipe"] == "tiny" and ds[0]["verdict"] == "bit-exact"
    assert ds[0]["hardware_class"].startswith("cpu-")
    proc = run_kit("reports", str(folder), "--png", str(tmp_path / "r.png"), "--json", env=env, check=True)
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 1 and summary["groups"][0]["verdicts"]["bit-exact"] == 1
    assert (tmp_path / "r.png").is_file()


def test_rows_of_another_schema_are_refused(tmp_path):
    rows = [copy.deepcopy(dataset.row(sample_report(CPU, "bit-exact", 2.05, 0.6, "a"), "f" * 64,
                                      __import__("datetime").datetime(2026, 1, 1)))]
    rows[0]["row_schema"] = "kwanzaa-kit.report-row.v0"
    with pytest.raises(aggregate.ReportsSourceError, match="report-row.v0"):
        aggregate._checked(rows, "x")


def test_a_dataset_folder_whose_rows_are_not_report_rows_is_refused(tmp_path, datasets_cache):
    (tmp_path / "data").mkdir()
    (tmp_path / "README.md").write_text(dataset.card_text())
    (tmp_path / "data" / "a.jsonl").write_text('{"row_schema": 3, "other": [1]}\n')
    with pytest.raises(aggregate.ReportsSourceError, match="datasets cannot read the folder's rows") as e:
        aggregate.load_rows(str(tmp_path))
    assert e.value.exit_code == 2 and "README.md" in str(e.value)
