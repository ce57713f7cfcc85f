"""`kit pin`: pin a recipe's base model to a hub commit and its weight files' sha256."""

from __future__ import annotations

from pathlib import Path

import click

from kit.cli.output import console, emit, json_option


@click.command()
@click.argument("recipe", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit to resolve.")
@click.option("--write", "write_back", is_flag=True, help="Write the pins into the recipe file.")
@json_option
def pin(recipe, revision, write_back, as_json):
    """Look up the commit sha and weight hashes of RECIPE's hub model (needs the hub once)."""
    from kit.model import pin as pinning

    result = pinning.pin(recipe, revision, write_back)
    emit(result, as_json, lambda r: _render(r, recipe, write_back))


def _render(r: dict, recipe: Path, written: bool) -> None:
    c = console()
    c.print(f"{r['id']}@{r['revision']}: {len(r['files_sha256'])} safetensors files")
    if written:
        c.print(f"[green]pinned in {recipe}[/]: commit it.")
    else:
        c.print("Put these in the recipe's model section (or run again with --write):")
        c.print(f"  revision: {r['revision']}", highlight=False)
        c.print(f"  files_sha256: {r['files_sha256']}", highlight=False)


COMMANDS = [pin]
