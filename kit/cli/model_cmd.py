"""`kit pin`: pin a recipe's base model to a hub commit and its weight files' sha256."""

from __future__ import annotations

import json

import click

from kit.cli.output import console, emit, json_option
from kit.cli.recipes_cmd import RECIPE


@click.command()
@click.argument("recipe", type=RECIPE)
@click.option("--revision", default=None, help="Branch, tag, refs/pr/N or commit to resolve (default: the recipe's, else main).")
@click.option("--write", "write_back", is_flag=True, help="Write the pins into the recipe file (a copy you own).")
@json_option
def pin(recipe, revision, write_back, as_json):
    """Look up the commit and weight hashes of RECIPE's hub model (needs the hub once).

    Not needed to train: a run resolves the recipe's ref itself and records the same pins in its
    recipe.json and manifest."""
    from kit.model import pin as pinning

    result = pinning.pin(recipe, revision, write_back)
    emit(result, as_json, lambda r: _render(r, recipe, write_back))


def _render(r: dict, recipe, written: bool) -> None:
    c = console()
    c.print(f"{r['id']} at {r['asked']} is commit {r['revision']}: {len(r['files_sha256'])} safetensors files",
            soft_wrap=True)
    if written:
        c.print(f"[green]pinned in {recipe}[/]: commit it.")
    else:
        c.print("In the recipe's model section (or run again with --write on a recipe file you own):")
        c.print(f"  revision: {r['revision']}", highlight=False, soft_wrap=True)
        c.print(f"  files_sha256: {json.dumps(r['files_sha256'])}", highlight=False, soft_wrap=True)


COMMANDS = [pin]
