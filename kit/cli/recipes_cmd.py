"""`kit recipes`, and how every command finds a recipe: by path or by name, from any working folder,
and, when none is given, the one the planner picks for this machine."""

from __future__ import annotations

from pathlib import Path

import click

from kit.cli.output import console, emit, json_option, table

MEASURED = "recipes/measured.json"  # in the install: each shipped recipe's measured memory and time


class RecipeRef(click.ParamType):
    """A recipe YAML path, or a shipped recipe's name (`kwanzaa-olmo7b-qlora`)."""

    name = "RECIPE"

    def convert(self, value, param, ctx) -> Path:
        from kit.recipe import find_recipe

        return value if isinstance(value, Path) and value.is_file() else find_recipe(value)


RECIPE = RecipeRef()


def gpu_memory_option(help_text: str):
    from kit.cli.output import FiniteFloatRange

    return click.option("--gpu-memory", type=FiniteFloatRange(min=0.5, max=1e5), default=None, metavar="GIB",
                        help=help_text)


def default_recipe(gpu_memory_gib: float | None) -> tuple[Path, str]:
    """With no recipe given: on a GPU, the Kwanzaa recipe the planner picks for its free memory (or
    for `gpu_memory_gib`, a cap below it); with no GPU, the tiny recipe. Returns (file, why); refuses
    a card too small for either Kwanzaa recipe, and a memory cap with no GPU to apply it to."""
    from kit import hardware, plan
    from kit.errors import ResourceError
    from kit.recipe import load_recipe, shipped_recipes

    shipped = shipped_recipes()
    machine = hardware.detect()
    if not machine.gpus:
        if gpu_memory_gib is not None:
            raise click.UsageError("--gpu-memory caps a GPU's memory, and no GPU is visible here (`kit doctor` says why)")
        return shipped[plan.CPU_RECIPE], plan.choose_recipe({}, None).reason
    free = machine.gpus[0].free_gib
    seen = free if gpu_memory_gib is None else min(gpu_memory_gib, free)
    choice = plan.choose_recipe({n: load_recipe(shipped[n]).recipe for n in plan.KWANZAA_RECIPES}, seen)
    where = (f"{machine.gpus[0].name}, {free:.1f} GiB free" + (f", capped at {seen:g} GiB" if seen < free else ""))
    if choice.name is None:
        raise ResourceError(f"no Kwanzaa recipe fits this GPU ({where}): {choice.reason}", where="GPU 0",
                            fix="use a card with more free memory, or free this one")
    return shipped[choice.name], f"{where}: {choice.reason}"


def recipe_notes(path: Path, loaded, gpu_memory_gib: float | None = None) -> list[str]:
    """What a person should know before a recipe they named runs: a hub ref this run will resolve and
    record, and, for a Kwanzaa recipe, when the planner would run the other one on this GPU."""
    from kit import hardware, plan
    from kit.model import source
    from kit.recipe import load_recipe, shipped_recipes

    notes, spec = [], loaded.recipe.model
    if source.needs_resolving(spec):
        notes.append(f"{spec.id} at {spec.revision or source.DEFAULT_REF} (a ref, not a commit): this run resolves it "
                     "and records the commit and each weight file's sha256 in RUN/recipe.json and the manifest; "
                     f"to pin the recipe itself: kit pin {path.stem}")
    shipped = shipped_recipes()
    if loaded.recipe.name in plan.KWANZAA_RECIPES and shipped.get(loaded.recipe.name) == path.resolve():
        machine = hardware.detect()
        if machine.gpus:
            free = min(machine.gpus[0].free_gib, gpu_memory_gib or machine.gpus[0].free_gib)
            choice = plan.choose_recipe({n: load_recipe(shipped[n]).recipe for n in plan.KWANZAA_RECIPES}, free)
            if choice.name and choice.name != loaded.recipe.name:
                notes.append(f"note: on this GPU the planner runs {choice.name} ({choice.reason}); training "
                             f"{loaded.recipe.name} as asked")
    return notes


def cap_gpu_memory(gpu_memory_gib: float | None) -> None:
    """Hold this process's torch allocations to `gpu_memory_gib` on GPU 0, so a run planned for a
    smaller card shows that it fits one (the CUDA context comes on top, as on the smaller card)."""
    if gpu_memory_gib is None:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # what an earlier step reserved does not count against the cap
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, gpu_memory_gib * 2**30 / total), 0)


@click.command("recipes")
@json_option
def recipes_command(as_json):
    """The shipped recipes: model, method, what each is for, and its measured memory and time."""
    from kit import io
    from kit.errors import RecipeError
    from kit.recipe import install_root, load_recipe, shipped_recipes

    measured = io.read_json(install_root() / MEASURED, RecipeError, "measured results", "reinstall the kit",
                            "reinstall the kit")
    rows = []
    for name, path in shipped_recipes().items():
        r = load_recipe(path).recipe
        model = {"hub": r.model.id, "local": r.model.path}.get(r.model.source) or f"random-init {r.model.architecture}"
        rows.append({"name": name, "file": str(path), "model": model, "source": r.model.source,
                     "revision": r.model.revision, "method": r.adapter.method, "description": r.description,
                     "measured": measured.get(name, [])})
    emit({"recipes": rows}, as_json, _render)


def _render(result: dict) -> None:
    c = console()
    rows = []
    for r in result["recipes"]:
        first = True
        for m in r["measured"] or [{}]:
            rows.append([r["name"] if first else "", r["model"] if first else "", r["method"] if first else "",
                         _measured_text(m)])
            first = False
    c.print(table("shipped recipes (kit train --recipe NAME)", ["recipe", "model", "method", "measured"], rows))
    c.print("Run with no --recipe, `kit train` picks for this machine: the LoRA recipe where bf16 fits, QLoRA "
            "otherwise, the tiny one without a GPU (`kit plan` says which and why).")


def _measured_text(m: dict) -> str:
    if not m:
        return "not measured yet"
    parts = [f"{m['what']}:"]
    if m.get("peak_reserved_gib") is not None:
        parts.append(f"{m['peak_reserved_gib']} GiB peak reserved")
    if m.get("tokens_per_s") is not None:
        parts.append(f"{m['tokens_per_s']:,} tok/s")
    if m.get("seconds") is not None:
        parts.append(f"{m['seconds']:,} s")
    return " ".join(parts) + f" ({m['device']}, {m['date']})"


COMMANDS = [recipes_command]
