"""How every command speaks: `--json` for machines, rich tables for people, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines).")


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def emit(result: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `result` as JSON, or hand it to `render` for people."""
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        render(result)


def say(message: str) -> None:
    """A progress line for people, on stderr so that stdout stays clean for --json. Never wrapped:
    these lines carry commands and paths that people copy."""
    console(stderr=True).print(message, soft_wrap=True)


def table(title: str, columns: list[str], rows: list[list[Any]]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t


def generation_progress() -> Callable[[int, int], None]:
    """A `say` line per generated batch, with the seconds since this was made: a 7B eval takes minutes."""
    import time

    began = time.perf_counter()
    return lambda done, total: say(f"  generated {done}/{total} rows ({time.perf_counter() - began:.0f} s)")
