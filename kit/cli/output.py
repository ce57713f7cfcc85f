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


# ---- progress bars (stderr; never under --json) ---------------------------------------------

class Bar:
    """One rich progress bar on stderr for one long step: started at the first update, stopped at the
    last (or by close(), which callers put in a `finally`, so an error never leaves the terminal
    without its cursor). Lines printed through it stay above the bar."""

    def __init__(self, description: str, unit: str):
        self.description, self.unit = description, unit
        self._live = self._task = None

    def update(self, done: float, total: float, **fields) -> None:
        if self._live is None:
            import atexit

            self._live = _progress(self.unit)
            self._live.start()
            atexit.register(self.close)
            self._task = self._live.add_task(self.description, total=total, **fields)
        self._live.update(self._task, completed=done, total=total, **fields)
        if done >= total:
            self.close()

    def print(self, message: str) -> None:
        if self._live is not None:
            self._live.console.print(message, soft_wrap=True)
        else:
            say(message)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _progress(unit: str):
    from rich import progress as rp

    counts = [rp.DownloadColumn(), rp.TransferSpeedColumn()] if unit == "bytes" else \
        [rp.MofNCompleteColumn(), rp.TextColumn(unit)]
    extra = [rp.TextColumn("{task.fields[rate]}"), rp.TextColumn("{task.fields[loss]}")] if unit == "steps" else []
    return rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), *counts, *extra, rp.TimeElapsedColumn(),
                       rp.TextColumn("ETA"), rp.TimeRemainingColumn(), console=console(stderr=True))


def step_progress(quiet: bool, resumed_note: str = "") -> tuple[Callable, Callable[[], None]]:
    """(on_step, close) for training: a bar of optimizer steps with tokens/s and ETA, and one line
    per step (loss, grad-norm, lr) above it."""
    import time

    if quiet:
        return (lambda rec, total: None), (lambda: None)
    bar, began, tokens = Bar("training", "steps"), [None], [0]

    def on_step(rec, total) -> None:
        now = time.perf_counter()
        if began[0] is None:  # the first step also pays for warm-up: the rate counts from its end
            began[0] = now
        else:
            tokens[0] += rec.tokens
        rate = f"{tokens[0] / (now - began[0]):,.0f} tok/s" if now > began[0] and tokens[0] else ""
        bar.print(f"  step {rec.step:>4}/{total}  loss {rec.loss:.4f}  grad-norm {rec.grad_norm:.3f}  lr {rec.lr:.2e}")
        bar.update(rec.step, total, rate=rate, loss=f"loss {rec.loss:.4f}")

    return on_step, bar.close


def generation_progress(quiet: bool = False) -> Callable[[int, int], None] | None:
    """A bar of generated eval rows with ETA (greedy decoding of a 7B eval set takes minutes)."""
    if quiet:
        return None
    bar = Bar("generating", "rows")
    return lambda done, total: bar.update(done, total)


def byte_progress(quiet: bool):
    """A context in which the download and the hashing of the base model show bars (bytes, rate, ETA)."""
    import contextlib

    from kit.model import source

    @contextlib.contextmanager
    def context():
        if quiet:
            yield
            return
        bars: dict[str, Bar] = {}

        def report(what: str, done: int, total: int) -> None:
            bars.setdefault(what, Bar(what, "bytes")).update(done, total)

        token = source.progress.set(report)
        try:
            yield
        finally:
            source.progress.reset(token)
            for b in bars.values():
                b.close()

    return context()
