#!/usr/bin/env python
"""The kit's import graph, by stage: which package imports which, checked to flow one way.

    python scripts/import_graph.py            # print the layer picture (docs/architecture.md holds it)
    python scripts/import_graph.py --check    # exit 1 on a cycle or an import that goes up the layers

Every `import kit...` / `from kit... import` in kit/ counts, at module level or inside a function
(a lazy import is still a dependency). Heavy third-party libraries are not part of the picture.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"

# The pipeline, bottom to top: a unit may import units of its own layer's lower rows and of the
# layers below it, never one above. Within a layer, units are independent of each other.
LAYERS = [
    ("foundation", ["errors", "io", "container"]),
    ("recipe files", ["recipe_files"]),
    ("recipe and machine", ["recipe", "hardware", "rundir"]),
    ("determinism", ["determinism"]),
    ("planning and fingerprints", ["plan", "fingerprint"]),
    ("data", ["data"]),
    ("model", ["model"]),
    ("train, evaluate", ["train", "evaluate"]),
    ("verify", ["verify"]),
    ("report", ["report"]),
    ("pipeline", ["pipeline"]),
    ("command line", ["cli"]),
]
UNIT_LAYER = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """kit.train.loop -> train; kit.io -> io; kit -> None (the package root holds only the version)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "kit" else None


def module_name(path: Path) -> str:
    rel = path.relative_to(KIT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The kit modules a file imports (absolute names)."""
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kit"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit") and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def graph() -> dict[str, set[str]]:
    """unit -> the units it imports (itself excluded)."""
    out: dict[str, set[str]] = {}
    for path in sorted(KIT.rglob("*.py")):
        unit = unit_of(module_name(path))
        if unit is None or unit == "__main__":
            continue
        deps = {unit_of(m) for m in imports_of(path)} - {None, unit, "__main__"}
        out.setdefault(unit, set()).update(d for d in deps if d in UNIT_LAYER)
    return out


def module_graph() -> dict[str, set[str]]:
    """module -> the kit modules it imports (a `from kit.x import name` counts kit.x.name only when
    that is a module)."""
    modules = {module_name(p): p for p in KIT.rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in modules and i != m} - {"kit"} for m, p in modules.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle between modules (one path each), found by depth-first search."""
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(g.get(m, ())):
            if state.get(d) == "open":
                found.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    return found


def problems(g: dict[str, set[str]]) -> list[str]:
    out = [f"kit.{u} is in no layer: add it to LAYERS" for u in sorted(g) if u not in UNIT_LAYER]
    out += ["import cycle: " + " -> ".join(c) for c in cycles(module_graph())]
    for unit, deps in sorted(g.items()):
        for dep in sorted(deps):
            if unit in UNIT_LAYER and UNIT_LAYER[dep] >= UNIT_LAYER[unit]:
                out.append(f"kit.{unit} (layer {UNIT_LAYER[unit]}) imports kit.{dep} (layer {UNIT_LAYER[dep]})")
    return out


def picture(g: dict[str, set[str]]) -> str:
    """The layers top to bottom, each unit with what it imports."""
    lines = []
    for i, (name, units) in reversed(list(enumerate(LAYERS))):
        lines.append(f"{i}. {name}")
        for unit in units:
            deps = ", ".join(sorted(g.get(unit, set()), key=lambda d: (-UNIT_LAYER[d], d))) or "-"
            lines.append(f"     {unit:<12} -> {deps}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on an import that goes up the layers")
    args = parser.parse_args(argv)
    g = graph()
    found = problems(g)
    if args.check:
        for p in found:
            print(p, file=sys.stderr)
        return 1 if found else 0
    print(picture(g), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
