"""`kit reports`: the community's reproductions at a glance, by recipe and hardware class."""

from __future__ import annotations

from pathlib import Path

import click

from kit.cli.output import console, emit, json_option, table

_PATH = click.Path(path_type=Path)


@click.command("reports")
@click.argument("source")
@click.option("--revision", help="Hub dataset: the commit, branch or tag to read (default main; the commit it "
                                 "resolves to is printed).")
@click.option("--png", type=_PATH, default=Path("kit-reports.png"), show_default=True,
              help="Where to write the picture: each metric per hardware class against its reference band.")
@json_option
def reports_command(source, revision, png, as_json):
    """Who reproduced which recipe, where, with which verdict: reports counted by recipe and
    hardware class, each metric's spread against its reference band.

    \b
    kit reports OWNER/NAME --revision COMMIT   a Hub dataset of reports (default: main)
    kit reports DIR                            a dataset folder (`kit report --bundle DIR`), or a
                                               folder of report.json files and upload bundles
    """
    from kit.report import aggregate

    emit(aggregate.collect(source, revision, png), as_json, _render)


COMMANDS = [reports_command]


def _render(r: dict) -> None:
    from rich.markup import escape

    from kit.report import aggregate

    out = console()
    pinned = f" at {r['revision']}" if r["revision"] else ""
    out.print(f"{r['rows']} reports from {escape(r['source'])} ({r['kind']}{pinned})", soft_wrap=True)
    out.print(_folded(table("reports by recipe and hardware class",
                    ["recipe", "hardware class", "devices", "reports", *aggregate.VERDICTS],
                    [[escape(g["recipe"]), escape(g["hardware_class"]), escape(", ".join(g["devices"])), g["reports"],
                      *(g["verdicts"][v] for v in aggregate.VERDICTS)] for g in r["groups"]])))
    rows = []
    for g in r["groups"]:
        for q, m in g["metrics"].items():
            if m["n"]:
                band = f"[{m['band'][0]:.4g}, {m['band'][1]:.4g}]" if m["band"] else "no band"
                rows.append([escape(g["recipe"]), escape(g["hardware_class"]), q, m["n"],
                             f"{m['min']:.4g} .. {m['max']:.4g}", band,
                             f"{m['in_band']} in, {m['outside_band']} out" if m["band"] else "-"])
    out.print(_folded(table("each metric's spread against the reference band",
                            ["recipe", "hardware class", "metric", "reports", "min .. max", "band", "reports"], rows)))
    if r["png"]:
        out.print(f"picture: {escape(r['png'])}", soft_wrap=True)


def _folded(t):
    """Hardware classes and metric names are read whole: wrap them, never cut them."""
    for column in t.columns:
        column.overflow = "fold"
    return t
