"""Training data from the Hugging Face Hub: a dataset repo's files at a pinned commit, read with
`datasets`, written out as canonical JSONL rows and fingerprinted by them.

The canonical rows of a split are its rows as `datasets` reads them (`Dataset.to_list()`), each
written as kit.io.canonical_json (sorted keys, no spaces, UTF-8, no NaN) and a newline, in the
files' order. Their sha256 is the split's fingerprint (data.train_sha256 / data.eval_sha256):
the same rows give the same sha256 whether the repo holds JSONL or Parquet (the bytes of a file,
its compression and row groups do not count), and the kit's own JSONL (data/kwanzaa/*.jsonl,
written canonically) has the same sha256 as a Hub copy of its rows. One caveat of reading through
Arrow: a struct's keys are the union over all rows (a key missing in one row reads as null) and a
column's numbers share one type, so a file whose rows differ in shape has canonical rows that
differ from its lines; its sha256 still pins exactly what trains.

The canonical JSONL is what the run copies to RUN/data/, so everything downstream (the manifest,
kit eval, kit verify) reads plain JSONL as for a local recipe. Offline (HF_HUB_OFFLINE=1) the
files come from the local Hugging Face cache, where an earlier download (or a copied cache) left
them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kit import io
from kit.errors import DataError
from kit.recipe import SPLITS, DataSpec, HubData

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def split_path(data: DataSpec, split: str, resolve: Callable[[str], Path], cache: Path) -> Path:
    """The JSONL file of one split: the recipe's local file, or the canonical rows of its Hub file
    written under CACHE/hub-data/."""
    local = getattr(data, split)
    return resolve(local) if local is not None else materialize(data.hub, split, cache)


def split_paths(data: DataSpec, resolve: Callable[[str], Path], cache: Path) -> tuple[Path, Path]:
    """(train, eval) JSONL files, each from where the recipe says (see split_path)."""
    return tuple(split_path(data, split, resolve, cache) for split in SPLITS)


def materialize(hub: HubData, split: str, cache: Path) -> Path:
    """Read hub.files[split] at hub.revision with `datasets`; write its canonical rows as JSONL."""
    rows = read_rows(hub_files(hub, split))
    path = Path(cache) / "hub-data" / hub.repo.replace("/", "--") / hub.revision / f"{split}.jsonl"
    io.atomic_write_bytes(path, canonical_jsonl(rows, f"data.hub.files.{split}"))
    return path


def canonical_jsonl(rows: list[dict], where: str) -> bytes:
    """The canonical form of rows: one canonical JSON object per line (see the module's docstring)."""
    try:
        return b"".join(io.canonical_json(row) + b"\n" for row in rows)
    except ValueError as e:  # NaN or Infinity in a row
        raise DataError(f"a row is not JSON ({e})", where=where, fix="fix the dataset's rows") from None


def rows_sha256(rows: list[dict]) -> str:
    """The fingerprint of rows: the sha256 of their canonical JSONL."""
    return io.sha256_bytes(canonical_jsonl(rows, "rows"))


def read_rows(files: list[Path]) -> list[dict]:
    """The rows of JSONL/JSON or Parquet files, in order, as `datasets` reads them."""
    import datasets

    kinds = {BUILDERS.get(p.suffix.lower()) for p in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(f"cannot read {', '.join(p.name for p in files)}: the files of a split must all be "
                        f"one of {', '.join(BUILDERS)}", where=str(files[0].parent),
                        fix="point data.hub.files at JSONL or Parquet files")
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    from datasets.exceptions import DatasetGenerationError

    try:
        ds = datasets.load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train")
    except (ValueError, TypeError, OSError, DatasetGenerationError) as e:
        raise DataError(f"datasets cannot read the file ({str(e).splitlines()[0][:200]})", where=str(files[0]),
                        fix="check that the file is JSONL or Parquet, one chat row per record") from None
    return ds.to_list()


def hub_files(hub: HubData, split: str) -> list[Path]:
    """The local copies of hub.files[split] at hub.revision (downloaded into the Hugging Face cache,
    or found there when offline), sorted by path."""
    pattern = hub.files[split]
    folder = _snapshot(hub)
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise DataError(f"no file matches {pattern!r} in {hub.repo}@{hub.revision[:12]}",
                        where=f"data.hub.files.{split}", fix="name a file (or glob) of the dataset repo at that commit")
    return files


def _snapshot(hub: HubData) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        # The token, if any, comes from HF_TOKEN or the HF login, never from a recipe.
        return Path(snapshot_download(hub.repo, repo_type="dataset", revision=hub.revision,
                                      allow_patterns=sorted(hub.files.values()),
                                      local_files_only=constants.HF_HUB_OFFLINE))
    except LocalEntryNotFoundError:
        raise DataError(f"{hub.repo}@{hub.revision[:12]} is not in the local Hugging Face cache and the hub cannot "
                        "be reached", where="data.hub",
                        fix="connect once (or unset HF_HUB_OFFLINE), or use local files (data.train / data.eval)") from None
    except HfHubHTTPError as e:
        raise DataError(f"the hub refused {hub.repo}@{hub.revision[:12]}: {str(e).splitlines()[0]}", where="data.hub",
                        fix="check data.hub.repo and the pinned revision, and HF_TOKEN if the dataset is gated") from None
