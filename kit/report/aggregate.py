"""Many reports at once (`kit reports`): who reproduced which recipe, on which hardware class, with
which verdict, and how each metric spreads against its reference band.

The rows (kit.report.dataset) come from a Hub dataset at a revision resolved to its commit, from a
local dataset folder (one with the card: what `kit report --bundle DIR` writes), or from a folder
of report.json files and upload bundles (upload-bundle.tar.gz); `datasets` reads them all, with
the card's column types.
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from pathlib import Path

from kit.errors import KitError
from kit.report import dataset
from kit.report.build import NO_REFERENCE
from kit.verify.judge import BIT_EXACT, EQUIVALENT, MISMATCH

VERDICTS = (BIT_EXACT, EQUIVALENT, MISMATCH, NO_REFERENCE)
QUANTITIES = ("eval_loss", *dataset.METRICS)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class ReportsSourceError(KitError):
    """A reports source that cannot be read: no such folder or Hub dataset, or not kit report rows."""


# ---- reading ---------------------------------------------------------------------------------

def load_rows(source: str, revision: str | None = None) -> tuple[list[dict], dict]:
    """The rows of SOURCE (deduplicated by report id) and where they came from:
    {"source", "kind": "hub" | "dataset folder" | "report files", "revision"}."""
    path = Path(source)
    if path.exists():
        if revision:
            raise ReportsSourceError("--revision applies to a Hub dataset, not a local folder", where=source,
                                     fix="drop --revision")
        if (path / dataset.CARD).is_file():
            ds, kind = _load_folder(path), "dataset folder"
        else:
            ds, kind = _load_report_files(path), "report files"
        resolved = None
    elif _REPO_ID.match(source):
        ds, resolved = _load_hub(source, revision)
        kind = "hub"
    else:
        raise ReportsSourceError("no such folder, and not a Hub dataset id (owner/name)", where=source,
                                 fix="pass a dataset folder, a folder of report.json files, or a Hub dataset id")
    rows = _checked(ds.to_list(), source)
    unique = list({r["report_id"]: r for r in reversed(rows)}.values())[::-1]  # the first of each id
    return unique, {"source": source, "kind": kind, "revision": resolved}


def _load_folder(path: Path):
    import datasets
    from datasets.exceptions import DatasetGenerationError

    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(str(path), split="train", features=dataset.features())
    except (ValueError, FileNotFoundError, TypeError, DatasetGenerationError) as e:  # no rows, rows of another shape
        why = str(e.__cause__ or e).splitlines()[0][:200] if str(e.__cause__ or e) else type(e).__name__
        raise ReportsSourceError(f"datasets cannot read the folder's rows ({why})",
                                 where=str(path / dataset.CARD),
                                 fix=f"the card's configs must point at {dataset.ROWS_GLOB} (`kit report --bundle` "
                                     "writes such a folder)") from None


def _load_report_files(path: Path):
    """report.json files and upload bundles under PATH, made into rows."""
    import datasets

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    rows = [dataset.row_from_report_file(p) for p in files if p.name == "report.json"]
    for bundle in (p for p in files if p.name.endswith(".tar.gz")):
        rows += _bundle_rows(bundle)
    if not rows:
        raise ReportsSourceError("no report.json, upload bundle or dataset card here", where=str(path),
                                 fix="pass a folder written by `kit report --bundle DIR`, or one holding report.json files")
    return datasets.Dataset.from_list(rows, features=dataset.features())


def _bundle_rows(bundle: Path) -> list[dict]:
    from kit import io

    try:
        with tarfile.open(bundle, "r:gz") as tar:
            return [io.loads(tar.extractfile(m).read().decode("utf-8")) for m in tar.getmembers()
                    if m.isfile() and m.name.startswith("data/") and m.name.endswith(".jsonl")]
    except (tarfile.TarError, OSError, UnicodeDecodeError, io.JsonProblem) as e:
        raise ReportsSourceError(f"not a readable upload bundle ({e})", where=str(bundle),
                                 fix="write it again with `kit report RUN_DIR --upload`") from None


def _load_hub(repo: str, revision: str | None):
    """The rows of a Hub dataset at REVISION (default main), resolved to its commit first so the
    result names exactly what was read."""
    import datasets
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    datasets.disable_progress_bars()
    try:
        commit = revision if revision and _COMMIT.match(revision) else \
            HfApi().dataset_info(repo, revision=revision or "main").sha
        return datasets.load_dataset(repo, revision=commit, split="train", features=dataset.features()), commit
    except (OfflineModeIsEnabled, httpx.TransportError, ConnectionError) as e:
        raise ReportsSourceError(f"the Hub cannot be reached ({type(e).__name__})", where=repo,
                                 fix="connect, unset HF_HUB_OFFLINE, or pass a local dataset folder") from None
    except HfHubHTTPError as e:
        raise ReportsSourceError(f"the Hub refused {repo}@{revision or 'main'}: {str(e).splitlines()[0]}", where=repo,
                                 fix="check the dataset id and --revision (and HF_TOKEN for a private repo)") from None


def _checked(rows: list[dict], source: str) -> list[dict]:
    if not rows:
        raise ReportsSourceError("the dataset has no rows", where=source, fix="add reports with `kit report --upload`")
    other = sorted({str(r.get("row_schema")) for r in rows} - {dataset.ROW_SCHEMA})
    if other:
        raise ReportsSourceError(f"rows of schema {', '.join(other)}, not {dataset.ROW_SCHEMA}", where=source,
                                 fix="read them with the kit version that wrote them")
    return rows


# ---- the summary -----------------------------------------------------------------------------

def summarize(rows: list[dict]) -> list[dict]:
    """One entry per (recipe, hardware class): reports, verdict counts, and per quantity (eval loss,
    each metric) the values' spread, the reference band most reports were compared with, and how
    many reports lie inside their band."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["recipe"], r["hardware_class"]), []).append(r)
    out = []
    for (recipe, hw_class), members in sorted(groups.items()):
        verdicts = Counter(r["verdict"] for r in members)
        out.append({"recipe": recipe, "hardware_class": hw_class,
                    "devices": sorted({r["gpu_name"] or r["device_name"] or "unknown" for r in members}),
                    "kit_versions": sorted({str(r["kit_version"]) for r in members}),
                    "reports": len(members), "verdicts": {v: verdicts.get(v, 0) for v in VERDICTS},
                    "metrics": {q: _spread(members, q) for q in QUANTITIES}})
    return out


def _spread(members: list[dict], q: str) -> dict:
    values = [r[q] for r in members if r[q] is not None]
    bands = Counter((r[f"{q}_low"], r[f"{q}_high"]) for r in members if r[f"{q}_low"] is not None)
    band = bands.most_common(1)[0][0] if bands else None
    flags = [r[f"{q}_in_band"] for r in members if r[f"{q}_in_band"] is not None]
    return {"n": len(values), "min": min(values, default=None), "max": max(values, default=None),
            "band": list(band) if band else None, "in_band": sum(flags), "outside_band": len(flags) - sum(flags)}


# ---- the picture -----------------------------------------------------------------------------

_VERDICT_COLOUR = {BIT_EXACT: "tab:green", EQUIVALENT: "tab:blue", MISMATCH: "tab:red", NO_REFERENCE: "tab:gray"}


def plot(rows: list[dict], groups: list[dict], path: Path) -> Path:
    """One panel per quantity with data: each report's value per (recipe, hardware class), coloured
    by verdict, over that class's reference band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [q for q in QUANTITIES if any(g["metrics"][q]["n"] for g in groups)] or ["eval_loss"]
    cols = min(3, len(shown))
    nrows = -(-len(shown) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows + 0.6), dpi=100, squeeze=False)
    labels = [f"{g['recipe']}\n{g['hardware_class']}" for g in groups]
    for ax, q in zip(axes.flat, shown):
        for x, g in enumerate(groups):
            band = g["metrics"][q]["band"]
            if band:
                ax.fill_between([x - 0.3, x + 0.3], band[0], band[1], color="tab:green", alpha=0.25, lw=0)
            members = [r for r in rows if (r["recipe"], r["hardware_class"]) == (g["recipe"], g["hardware_class"])
                       and r[q] is not None]
            for i, r in enumerate(members):
                offset = (i - (len(members) - 1) / 2) * min(0.08, 0.5 / max(len(members), 1))
                ax.plot(x + offset, r[q], "o", ms=5, color=_VERDICT_COLOUR.get(r["verdict"], "black"))
        ax.set_title(q, fontsize=10)
        ax.set_xticks(range(len(groups)), labels, fontsize=6)
        ax.set_xlim(-0.6, len(groups) - 0.4)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in _VERDICT_COLOUR.items()]
    handles.append(matplotlib.patches.Patch(color="tab:green", alpha=0.25, label="reference band"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(f"{len(rows)} reports: each metric per hardware class against its reference band", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def collect(source: str, revision: str | None, png: Path | None) -> dict:
    """`kit reports`: the rows of SOURCE summarised by recipe and hardware class, and the PNG."""
    rows, where = load_rows(source, revision)
    groups = summarize(rows)
    return {**where, "rows": len(rows), "groups": groups, "png": str(plot(rows, groups, png)) if png else None}
