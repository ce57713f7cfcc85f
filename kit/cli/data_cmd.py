"""`kit data check` and `kit data build`: the Kwanzaa dataset, checked row by row and rebuilt
from its YAML sources."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kit.cli.output import console, emit, json_option, say, table
from kit.data.build import DATA_DIR as SHIPPED
from kit.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, DataError


@click.group()
def data() -> None:
    """Build and check the Kwanzaa chat dataset (data/kwanzaa)."""


@data.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--max-seq-len", default=2048, show_default=True, type=click.IntRange(min=1),
              help="Longest row allowed, in tokens (OLMo tokenizer + chat template).")
@json_option
@click.option("--markdown", is_flag=True, help="Print the data card's tables (data/kwanzaa/README.md).")
def check(paths: tuple[Path, ...], max_seq_len: int, as_json: bool, markdown: bool) -> None:
    """Check chat JSONL files (default: the shipped train and eval files).

    Every bad row is reported as FILE:LINE: REASON and the command exits 2.
    """
    from kit.data import check as datacheck

    paths = list(paths) or [SHIPPED / "train.jsonl", SHIPPED / "eval.jsonl"]
    for path in paths:
        if not path.is_file():
            state = "is a directory, not a file" if path.is_dir() else "is not a regular file" if path.exists() \
                else "not found"
            raise DataError(f"data file {state}", where=str(path),
                            fix="pass the path of a chat JSONL file, or run `kit data build` to make the shipped ones")
    report = datacheck.check_files(paths, max_seq_len)
    if report["problems"]:
        if as_json:
            click.echo(json.dumps(report, indent=2, sort_keys=True))
            sys.exit(EXIT_BAD_INPUT)
        for p in report["problems"]:
            row = f" ({p['id']})" if p["id"] else ""
            click.echo(f"{p['file']}:{p['line']}{row}: {p['reason']}", err=True)
        n_rows = len({(p["file"], p["line"]) for p in report["problems"]})
        raise DataError(f"{len(report['problems'])} problem(s) in {n_rows} row(s), listed above",
                        fix="fix those rows (shipped data: edit data/kwanzaa/src/*.yaml, then `kit data build`)")
    if markdown and not as_json:
        click.echo(datacheck.card_markdown(report), nl=False)
        return
    emit(report, as_json, _render_check)


def _render_check(report: dict) -> None:
    from kit.data import check as datacheck

    out = console()
    files = report["files"]
    rows = [[Path(f["path"]).name, f["rows"], f["sha256"][:12], *(f["tokens"][k] for k in datacheck.TOKEN_KEYS),
             f["longest_answer"]["tokens"]] for f in files]
    out.print(table(f"kit data check: all rows pass (max_seq_len {report['max_seq_len']}, tokens with the "
                    "OLMo tokenizer and chat template)",
                    ["file", "rows", "sha256", "p50 tokens", "p90", "p99", "max", "longest answer"], rows))
    out.print("longest answer: tokens of the longest assistant answer with its end-of-sequence token, what a "
              "model must generate to write it (evaluation.max_new_tokens must be at least the eval file's)")
    balance = []
    for field in ("persona", "category", "completeness"):
        for value in sorted({v for f in files for v in f[field]}):
            balance.append([field, value, *(f[field].get(value, 0) for f in files)])
    out.print(table("balance", ["field", "value", *(Path(f["path"]).name for f in files)], balance))


@data.command()
@click.option("--src", type=click.Path(path_type=Path, file_okay=False), default=SHIPPED / "src",
              show_default=True, help="Folder with passages.yaml and questions-{train,eval}.yaml.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=SHIPPED,
              show_default=True, help="Folder to write train.jsonl and eval.jsonl into.")
@click.option("--check", "check_only", is_flag=True,
              help="Write nothing; exit 1 if the JSONL under --out differs from a fresh build.")
def build(src: Path, out: Path, check_only: bool) -> None:
    """Render the chat JSONL from the YAML sources (deterministic: same YAML, same bytes)."""
    from kit import io
    from kit.data import build as databuild

    texts = databuild.build(src)
    if check_only:
        stale = databuild.stale(texts, out)
        if stale:
            for path in stale:
                click.echo(f"{path}: differs from a fresh build of {src}", err=True)
            click.echo("Run `kit data build` and commit the result.", err=True)
            sys.exit(EXIT_CHECK_FAILED)
        say(f"{', '.join(str(out / f'{s}.jsonl') for s in texts)}: up to date")
        return
    for path in databuild.write(texts, out):
        rows = path.read_bytes().count(b"\n")
        click.echo(f"{path}  {rows} rows  sha256 {io.sha256_file(path)}")


@data.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The converted JSONL (canonical: sorted keys, compact, UTF-8).")
@click.option("--id-prefix", help="Row ids are PREFIX-<line> (default: the input file's name without .jsonl).")
@json_option
def convert(path: Path, output: Path, id_prefix: str | None, as_json: bool) -> None:
    """Convert upstream's published rows ({"messages": [...]} only) to the kit's format.

    Adds each row's id, the documents' `Metadata:` lines (from the row's own answer) and `meta`
    (from the documents and their scores); never changes the system turn or the answer. Then run
    `kit data check OUTPUT`: what it still reports is upstream's data to fix.
    """
    from kit import io
    from kit.data import hub, upstream

    if output.resolve() == path.resolve():
        raise DataError("the output would overwrite the input", where=str(output), fix="write to another file")
    rows = upstream.convert_file(path, id_prefix)
    text = hub.canonical_jsonl(rows, str(path))
    io.atomic_write_bytes(output, text)
    result = {"input": str(path), "output": str(output), "rows": len(rows), "sha256": io.sha256_bytes(text)}
    emit(result, as_json, lambda r: click.echo(f"{r['output']}  {r['rows']} rows  sha256 {r['sha256']}\n"
                                               f"next: kit data check {r['output']}"))


COMMANDS = [data]
