"""Recipe files: the strict YAML reader that gives every key its line (kit.recipe validates what
it reads), and the recipes shipped with the kit, found by name or path from any working folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit.errors import RecipeError


def parse_yaml(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    """The YAML mapping and the line of every key. Parsed once into nodes, refusing what a recipe
    never needs and an attacker would use: aliases (an alias bomb expands a few hundred bytes into
    billions of nodes), duplicate keys (which one wins depends on the parser), tags."""
    import yaml

    try:
        node = yaml.compose(text, Loader=_NoAliasLoader)
    except RecursionError:
        raise RecipeError("the YAML is nested deeper than any recipe", where=str(path),
                          fix="start from recipes/tiny.yaml") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        fix = ("write the values out in full" if "aliases" in problem
               else "check the indentation and quoting on that line")
        raise RecipeError(f"malformed YAML: {problem}", where=where, fix=fix) from None
    if not isinstance(node, yaml.MappingNode):
        raise RecipeError("a recipe must be a YAML mapping of sections", where=str(path),
                          fix="start from recipes/tiny.yaml")
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines, path)
    try:
        raw = _NoAliasLoader(text).construct_document(node)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
        raise RecipeError(f"malformed YAML: {str(e).splitlines()[0]}", where=str(path),
                          fix="use plain YAML scalars, lists and mappings") from None
    return raw, lines


class _NoAliasLoader(__import__("yaml").SafeLoader):
    """SafeLoader that refuses anchors and aliases (see parse_yaml)."""

    def compose_node(self, parent, index):
        import yaml

        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(None, None, "YAML anchors and aliases are not allowed in a recipe",
                                              event.start_mark)
        return super().compose_node(parent, index)


def _index_lines(node, prefix: tuple, out: dict[tuple, int], path: Path, depth: int = 0) -> None:
    import yaml

    if depth > 16:
        raise RecipeError("the YAML is nested deeper than any recipe", where=f"{path}:{node.start_mark.line + 1}",
                          fix="start from recipes/tiny.yaml")
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            if key in out:
                raise RecipeError(f"duplicate key `{'.'.join(map(str, key))}` (first on line {out[key]})",
                                  where=f"{path}:{key_node.start_mark.line + 1}", fix="keep one of the two")
            out[key] = key_node.start_mark.line + 1
            _index_lines(value_node, key, out, path, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[prefix + (i,)] = item.start_mark.line + 1
            _index_lines(item, prefix + (i,), out, path, depth + 1)


# ---- the recipes shipped with the kit: found by name or path from any working folder ----------

def install_root() -> Path:
    """The folder the kit is installed from (editable, in the image too: /opt/kwanzaa-kit), which
    holds recipes/, data/ and references/ next to the package."""
    return Path(__file__).resolve().parent.parent


def shipped_recipes() -> dict[str, Path]:
    """name -> file of every recipe shipped in the install's recipes/ folder."""
    return {p.stem: p for p in sorted((install_root() / "recipes").glob("*.yaml"))}


def find_recipe(ref: str | Path) -> Path:
    """A recipe file from what a user typed: a path that exists (relative to the working folder), else
    the same relative path in the install (`recipes/tiny.yaml` from /workspace), else a shipped
    recipe's name (`kwanzaa-olmo7b-qlora`, with or without `.yaml`)."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.is_dir():
        raise RecipeError("is a directory, not a recipe file", where=str(path), fix="pass the recipe's YAML file")
    if not path.is_absolute():
        in_install = install_root() / path
        if in_install.is_file():
            return in_install
        shipped = shipped_recipes()
        name = path.name.removesuffix(".yaml").removesuffix(".yml")
        if len(path.parts) == 1 and name in shipped:
            return shipped[name]
    names = ", ".join(shipped_recipes()) or "none"
    raise RecipeError("recipe file not found", where=str(path),
                      fix=f"pass a YAML file, or the name of a shipped recipe ({names}; `kit recipes` lists them)")
