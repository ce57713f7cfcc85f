"""Reports as a Hugging Face dataset: one flat row per report, and the dataset card that makes the
rows readable by the Hub viewer and `datasets.load_dataset`.

A report upload (kit.report.upload) adds, in one pull request:
    data/<recipe>/<hardware class>/<report id>.jsonl     the row (one line, the columns of ROW_SCHEMA)
    reports/<recipe>/<hardware class>/<report id>/       report.json, report.md, loss_curve.png
    README.md                                             the card, only when the repo has none yet
The card's `configs:` points the default config at data/**/*.jsonl (the rows, never the report
files) and its `dataset_info.features` names every column's type, so rows made on different
machines (a driver on one, none on another) load as one table.

This is the one place that builds a row: the upload, `--bundle` and `kit reports` use it.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from kit import io
from kit.evaluate.score import TARGETS

ROW_SCHEMA = "kwanzaa-kit.report-row.v1"
# Where `kit report --upload` (no repo named) sends a report; KWANZAA_KIT_REPORTS_REPO overrides it.
OFFICIAL_REPO = "kwanzaa-kit/reproductions"
REPO_ENV = "KWANZAA_KIT_REPORTS_REPO"
CARD = "README.md"
ROWS_GLOB = "data/**/*.jsonl"
METRICS = tuple(TARGETS)
BAND_COLUMNS = ("", "_low", "_high", "_in_band")  # value, the reference band, and whether it is inside
SOFTWARE = {"python_version": "python", "torch_version": "torch", "transformers_version": "transformers",
            "peft_version": "peft", "bitsandbytes_version": "bitsandbytes", "cuda_version": "cuda",
            "lock_sha256": "lock_sha256"}

# column: type ("string", "float64", "int64", "bool", or ["string"] for a list of strings)
COLUMNS: dict[str, str | list[str]] = {
    "row_schema": "string", "report_id": "string", "report_sha256": "string", "date": "string",
    "kit_version": "string", "kit_commit": "string",
    "recipe": "string", "recipe_file": "string", "recipe_sha256": "string", "dataset_sha256": "string",
    "tokenizer_sha256": "string", "base_model_sha256": "string", "environment_sha256": "string",
    "hardware_class": "string", "device_type": "string", "device_name": "string", "gpu_name": "string",
    "world_size": "int64", "compute_capability": "string", "deterministic": "bool", "cpu_threads": "int64",
    "driver": "string", **dict.fromkeys(SOFTWARE, "string"), "image_digest": "string",
    "strategy": "string", "verdict": "string", "reference_file": "string", "reference_same_class": "bool",
    "causes": ["string"],
    **{f"eval_loss{s}": "bool" if s == "_in_band" else "float64" for s in BAND_COLUMNS},
    **{f"{m}{s}": "bool" if s == "_in_band" else "float64" for m in METRICS for s in BAND_COLUMNS},
    "loss_steps": "int64", "loss_steps_outside_band": "int64", "final_train_loss": "float64",
    "adapter_sha256": "string", "tokens_per_s": "float64", "mfu": "float64", "peak_reserved_gib": "float64",
    "eval_new_tokens_per_s": "float64", "report_path": "string",
}


def official_repo() -> str:
    """The dataset repo official reports go to: KWANZAA_KIT_REPORTS_REPO, else OFFICIAL_REPO."""
    return os.environ.get(REPO_ENV, "").strip() or OFFICIAL_REPO


def report_id(report: dict, report_sha256: str) -> str:
    """<adapter sha256, 12 hex>-<report.json sha256, 8 hex>: one report, whoever sends it and how often."""
    adapter = (report["fingerprints"]["outputs"].get("adapter") or "none")[:12]
    return f"{adapter}-{report_sha256[:8]}"


def paths_in_repo(report: dict, report_sha256: str) -> tuple[str, str]:
    """(the row file, the folder of the report files) in the dataset repo."""
    where = f"{report['run']['recipe_name']}/{report['run']['hardware_class_slug']}/{report_id(report, report_sha256)}"
    return f"data/{where}.jsonl", f"reports/{where}"


def row(report: dict, report_sha256: str, written: dt.datetime) -> dict:
    """The flat row of one report (report.json, kwanzaa-kit.report.v1): every column of COLUMNS.
    `written` is when report.json was written (its modification time)."""
    run, env, fp = report["run"], report["environment"], report["fingerprints"]
    hw, sw, image = env.get("hardware") or {}, env.get("software") or {}, env.get("image") or {}
    ref = report.get("reference") or {}
    speed = (report.get("speed") or {}).get("train") or {}
    curve = report.get("loss_curve") or []
    out = {
        "row_schema": ROW_SCHEMA, "report_id": report_id(report, report_sha256), "report_sha256": report_sha256,
        "date": written.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kit_version": report.get("kit_version"), "kit_commit": image.get("revision"),
        "recipe": run["recipe_name"], "recipe_file": run.get("recipe_file"),
        "recipe_sha256": fp["inputs"].get("recipe"), "dataset_sha256": fp["inputs"].get("dataset"),
        "tokenizer_sha256": fp["inputs"].get("tokenizer"), "base_model_sha256": fp["inputs"].get("base_model"),
        "environment_sha256": env.get("sha256"),
        "hardware_class": run["hardware_class_slug"], "device_type": hw.get("device_type"),
        "device_name": hw.get("device_name"),
        "gpu_name": hw.get("device_name") if hw.get("device_type") == "cuda" else None,
        "world_size": hw.get("world_size"), "compute_capability": hw.get("compute_capability"),
        "deterministic": hw.get("deterministic"), "cpu_threads": hw.get("cpu_threads"),
        "driver": env.get("driver"), **{col: sw.get(key) for col, key in SOFTWARE.items()},
        "image_digest": image.get("base_image_digest"),
        "strategy": (run.get("plan") or {}).get("strategy"),
        "verdict": report["verdict"], "reference_file": ref.get("file"), "reference_same_class": ref.get("same_class"),
        "causes": [c["message"] for c in report.get("causes") or []],
        **_banded("eval_loss", report["eval_loss"]["value"], report["eval_loss"].get("band")),
        "loss_steps": len(curve),
        "loss_steps_outside_band": sum(1 for p in curve if p.get("band") and not p["band"]["in_band"]),
        "final_train_loss": curve[-1]["loss"] if curve else None,
        "adapter_sha256": fp["outputs"].get("adapter"),
        "tokens_per_s": speed.get("tokens_per_s"), "mfu": speed.get("mfu"),
        "peak_reserved_gib": speed.get("peak_reserved_gib"),
        "eval_new_tokens_per_s": ((report.get("speed") or {}).get("eval") or {}).get("new_tokens_per_s"),
        "report_path": paths_in_repo(report, report_sha256)[1],
    }
    metrics = {m["name"]: m for m in report.get("metrics") or []}
    for name in METRICS:
        m = metrics.get(name) or {}
        out.update(_banded(name, m.get("value"), m.get("band")))
    return {col: _typed(out[col], kind) for col, kind in COLUMNS.items()}


def _banded(name: str, value, band: dict | None) -> dict:
    """value, band low/high and in_band; a band with no data (a metric with no items) counts as none."""
    band = band if band and band.get("low") is not None else None
    return {name: value, f"{name}_low": band and band["low"], f"{name}_high": band and band["high"],
            f"{name}_in_band": band and band["in_band"]}


def _typed(value, kind):
    """Numbers as the column's type (an int loss is a float64 column), everything else as it is."""
    if value is None:
        return None
    if kind == "float64" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "string" and not isinstance(value, str):
        return str(value)
    return value


def row_from_report_file(path: Path) -> dict:
    """The row of a report.json on disk; the date is when the file was written."""
    from kit.errors import KitError

    report = io.read_json(path, KitError, "report file", "pass a report.json written by `kit report`",
                          "write it again with `kit report RUN_DIR`")
    if not isinstance(report, dict) or report.get("schema") != "kwanzaa-kit.report.v1":
        raise KitError("not a kwanzaa-kit.report.v1 report", where=str(path),
                       fix="pass a report.json written by `kit report`")
    return row(report, io.sha256_file(path), written_at(path))


def written_at(path: Path) -> dt.datetime:
    """When a report.json was written (its modification time), the row's `date`."""
    return dt.datetime.fromtimestamp(Path(path).stat().st_mtime, dt.UTC)


def row_bytes(r: dict) -> bytes:
    """The row file's content: one line of canonical JSON."""
    return io.canonical_json(r) + b"\n"


# ---- the dataset card ------------------------------------------------------------------------

def features():
    """The columns as `datasets.Features` (what the card declares and `kit reports` reads with)."""
    import datasets

    def feature(kind):
        return datasets.List(datasets.Value(kind[0])) if isinstance(kind, list) else datasets.Value(kind)

    return datasets.Features({col: feature(kind) for col, kind in COLUMNS.items()})


def card_text() -> str:
    """README.md of a reports dataset: YAML (configs + features) and what a row holds."""
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(license="cc-by-4.0", pretty_name="kwanzaa-kit reproduction reports",
                           tags=["reproducibility", "kwanzaa-kit"])
    MetadataConfigs({"default": {"data_files": [{"split": "train", "path": ROWS_GLOB}]}}).to_dataset_card_data(data)
    DatasetInfosDict({"default": datasets.DatasetInfo(features=features())}).to_dataset_card_data(data)
    metric_list = ", ".join(f"`{m}`" for m in METRICS)
    body = f"""
# kwanzaa-kit reproduction reports

Each row is one `kit report` of one run: who reproduced which recipe, on which hardware class,
with which software, and whether the result was `bit-exact`, `equivalent` or a `mismatch`
against the published reference. Rows are added by pull requests (`kit report RUN --upload`).

```python
from datasets import load_dataset
rows = load_dataset("<this repo>", split="train")
```

`kit reports <this repo> --revision <commit>` prints the table by recipe and hardware class and
plots each metric against its reference band.

| files | what |
|---|---|
| `{ROWS_GLOB}` | the rows (schema `{ROW_SCHEMA}`), one file per report |
| `reports/<recipe>/<hardware class>/<report id>/` | the whole report: report.json, report.md, loss_curve.png |

Columns: the kit version and commit (`kit_commit`: the image's source revision, null outside the
image), `date` (UTC, when report.json was written), the recipe name and sha256, the inputs'
sha256 (dataset, tokenizer, base model), the hardware class and GPU name, the driver and
software versions, the base image digest, the verdict and its causes, `eval_loss` and each metric
({metric_list}) with its reference band (`_low`, `_high`, `_in_band`; null where the reference
has no data), the adapter sha256, and training tokens/s. No home path, user name, host name or
token is in any file: the kit scrubs them before writing.
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"
