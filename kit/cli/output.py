"""How every command speaks: `--json` for machines, rich tables for people, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines).")


class FiniteFloatRange(click.FloatRange):
    """A number in a range, and a number at all: click's FloatRange lets `nan` through (no
    comparison with NaN is false)."""

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def emit(result: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `result` as JSON (exact paths, no tokens), or hand it, scrubbed as a report is (no home
    path, user or host name, token), to `render` for people."""
    from kit.report.scrub import private_values, scrub, scrub_path

    private = private_values()
    if as_json:
        text = json.dumps(result, indent=2, sort_keys=True, default=str)
        click.echo(scrub_path(text, {**private, "homes": []}))
    else:
        render(scrub(result, private))


def say(message: str) -> None:
    """A progress line for people, on stderr so that stdout stays clean for --json. Never wrapped:
    these lines carry commands and paths that people copy. Scrubbed as a report is."""
    from kit.report.scrub import private_values, scrub_text

    console(stderr=True).print(scrub_text(message, private_values()), soft_wrap=True)


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
