"""`kit doctor`, `kit plan`, `kit qualify`: the machine, the memory plan, and a measured check."""

from __future__ import annotations

from pathlib import Path

import click

from kit.cli.output import console, emit, json_option, say, table
from kit.cli.recipes_cmd import RECIPE, gpu_memory_option
from kit.errors import EXIT_BAD_INPUT

DEFAULT_7B = "kwanzaa-olmo7b-qlora"
SEQ_LEN_MAX = 131072  # a recipe's data.max_seq_len bound


@click.command()
@json_option
def doctor(as_json):
    """The machine as a run will see it: GPUs, memory, drivers, versions, warnings."""
    from kit import hardware

    emit(hardware.detect().as_dict(), as_json, _render_doctor)


def _render_doctor(m: dict) -> None:
    c = console()
    rows = [[g["index"], g["name"], f"{g['total_gib']:.1f}", f"{g['free_gib']:.1f}", g["compute_capability"],
             "yes" if g["bf16"] else "no"] for g in m["gpus"]]
    seen = f" (the driver sees {', '.join(m['driver_gpus'])})" if m["driver_gpus"] else ""
    c.print(table("GPUs", ["#", "name", "total GiB", "free GiB", "capability", "bf16"], rows) if rows
            else f"[yellow]torch sees no GPU[/]{seen}")
    lib = m["libraries"]
    driver = (f"driver {m['driver'] or 'none found'}" + (f" (runs CUDA <= {m['driver_cuda']})" if m["driver_cuda"] else "")
              + (f"; this build's CUDA {m['cuda']} needs >= {m['min_driver']}" if m["min_driver"] else "; CPU build"))
    c.print(f"{driver}  bitsandbytes CUDA {m['bitsandbytes_cuda']}  "
            f"CPU {m['cpu']} ({m['cpu_count']} cores, torch threads {m['torch_threads']}, kernels dispatch at "
            f"{m['cpu_isa']})")
    c.print("  ".join(f"{k} {v}" for k, v in lib.items()))
    c.print(f"published image: {'yes' if m['in_image'] else 'no'}")
    for w in m["warnings"]:
        c.print(f"[yellow]warning:[/] {w}")


@click.command("plan")
@click.option("--recipe", "-r", type=RECIPE, default=None,
              help="Plan this recipe (default: the two Kwanzaa recipes, and which one to run).")
@gpu_memory_option("Plan for a card with this much free memory (GiB) instead of the detected one.")
@click.option("--gpu-name", default=None, help="Name of that card, for the time estimate (e.g. 'RTX 4090').")
@click.option("--seq-len", type=click.IntRange(min=16, max=SEQ_LEN_MAX), default=None,
              help="Tokens per sequence (default: the recipe's max_seq_len).")
@click.option("--nproc", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="Plan for this many data-parallel GPUs (memory is per GPU; the time is the whole run's).")
@json_option
def plan_(recipe, gpu_memory, gpu_name, seq_len, nproc, as_json):
    """Peak GPU memory of bf16 LoRA and 4-bit QLoRA, the recipe to run and why, its command line, the time."""
    if gpu_memory is None:
        from kit import hardware

        m = hardware.detect()
        if m.gpus:
            gpu_memory, gpu_name = m.gpus[0].free_gib, gpu_name or m.gpus[0].name
    result = _plan_recipe(recipe, gpu_memory, gpu_name, seq_len, nproc) if recipe else \
        _plan_kwanzaa(gpu_memory, gpu_name, seq_len, nproc)
    emit(result, as_json, _render_plan)
    if result["strategy"] is None and gpu_memory is not None:
        if not as_json:
            console(stderr=True).print(f"Error: nothing fits in {gpu_memory:g} GiB: {result['reason']}")
        raise SystemExit(EXIT_BAD_INPUT)


def _plan_kwanzaa(gpu_memory, gpu_name, seq_len, nproc) -> dict:
    """Both Kwanzaa recipes, each with its own method and batching, and the one `kit train` runs."""
    from kit import plan
    from kit.recipe import load_recipe, shipped_recipes

    loaded = {n: load_recipe(shipped_recipes()[n]) for n in plan.KWANZAA_RECIPES}
    choice = plan.choose_recipe({n: lr.recipe for n, lr in loaded.items()}, gpu_memory)
    lora, qlora = plan.KWANZAA_RECIPES
    strategy = run = None
    if choice.name:  # a Kwanzaa recipe on a GPU, the tiny one without
        strategy = (loaded.get(choice.name) or load_recipe(shipped_recipes()[choice.name])).recipe.adapter.method
        run = {"recipe": choice.name, "command": f"kit train --recipe {choice.name}"}
    return _result({"lora": loaded[lora], "qlora": loaded[qlora]}, choice.name or qlora, gpu_memory, gpu_name,
                   seq_len, strategy, choice.reason, run, nproc)


def _plan_recipe(recipe, gpu_memory, gpu_name, seq_len, nproc) -> dict:
    """One recipe: the method the planner picks for it, and what to run to get that method."""
    from kit import plan
    from kit.recipe import load_recipe, shipped_recipes

    loaded = load_recipe(recipe)
    r = loaded.recipe
    d = plan.decide(r, gpu_memory, seq_len)
    shipped = shipped_recipes()
    name = r.name if shipped.get(r.name) == recipe.resolve() else str(recipe)
    run, reason = None, d.reason
    if d.strategy and r.adapter.method in ("auto", d.strategy):
        run = {"recipe": name, "command": f"kit train --recipe {name}"}
    elif d.strategy and r.name in plan.KWANZAA_RECIPES:
        sibling = plan.KWANZAA_RECIPES[0 if d.strategy == "lora" else 1]
        run = {"recipe": sibling, "command": f"kit train --recipe {sibling}"}
        reason += f"; this recipe sets {r.adapter.method}, so run {sibling}, the Kwanzaa recipe for {d.strategy}"
    elif d.strategy:
        run = {"recipe": name, "command": f"kit train --recipe {name} --strategy {d.strategy}"}
    return _result({"lora": loaded, "qlora": loaded}, r.name, gpu_memory, gpu_name, seq_len, d.strategy, reason, run,
                   nproc)


def _result(by_method: dict, name: str, gpu_memory, gpu_name, seq_len, strategy, reason, run, nproc=1) -> dict:
    from kit import plan
    from kit.train.distributed import check_split

    for lr in by_method.values():
        check_split(lr.recipe.training.rows_per_step(), nproc, f"{lr.path}: training")
    est, time = {}, {}
    for method, lr in by_method.items():
        seq = seq_len or lr.recipe.data.max_seq_len
        est[method] = plan.estimate(lr.recipe, method, seq, gpu_memory).as_dict()
        total_tokens, steps = _recipe_tokens(lr)
        time[method] = plan.eta(method, gpu_name, total_tokens, steps, nproc)
    recipes = {m: lr.recipe.name for m, lr in by_method.items()}
    return {"recipe": name, "recipes": recipes, "seq_len": seq_len or by_method["lora"].recipe.data.max_seq_len,
            "gpu_memory_gib": gpu_memory, "gpu_name": gpu_name, "margin": plan.MARGIN, "strategy": strategy,
            "reason": reason, "estimates": est, "time": time, "nproc": nproc,
            "rows_per_gpu_per_step": by_method["lora"].recipe.training.rows_per_step() // nproc,
            "run": run and {**run, "command": run["command"] + (f" --nproc {nproc}" if nproc > 1 else "")}}


def _recipe_tokens(loaded) -> tuple[int | None, int | None]:
    """Tokens the whole recipe trains on (rows x epochs) and its optimizer steps; None without data."""
    import math

    from kit.errors import KitError

    try:
        from kit.data import hub
        from kit.data import rows as data
        from kit.data.tokenizer import load_default_tokenizer
        from kit.model.source import cache_dir

        tok = load_default_tokenizer()
        train = hub.split_path(loaded.recipe.data, "train", loaded.resolve, cache_dir())
        rows = data.encode_file(tok, train, 10**9, loaded.recipe.data.max_train_rows)
    except KitError:
        return None, None
    t = loaded.recipe.training
    steps = math.ceil(len(rows) / (t.micro_batch_size * t.grad_accum_steps)) * t.epochs
    return sum(len(r.input_ids) for r in rows) * t.epochs, (min(steps, t.max_steps) if t.max_steps else steps)


def _render_plan(p: dict) -> None:
    c = console()
    names = sorted({k for e in p["estimates"].values() for k in e["components_gib"]})
    rows = [[n] + [p["estimates"][s]["components_gib"].get(n, "") for s in ("lora", "qlora")] for n in names]
    rows.append(["peak reserved (torch)"] + [p["estimates"][s]["peak_gib"] for s in ("lora", "qlora")])
    rows.append(["on the device (+ CUDA context)"] + [p["estimates"][s]["device_gib"] for s in ("lora", "qlora")])
    rows.append(["fits"] + [p["estimates"][s]["fits"] for s in ("lora", "qlora")])
    for s in ("lora", "qlora"):
        t = p["time"][s]
        p["time"][s]["text"] = (f"{t['seconds'] / 60:.1f} min ({t['tokens_per_s']} tok/s, {t['basis']})"
                                if t["seconds"] else t["basis"])
    rows.append(["whole recipe"] + [p["time"][s]["text"] for s in ("lora", "qlora")])
    heads = [f"bf16 LoRA ({p['recipes']['lora']})", f"4-bit QLoRA ({p['recipes']['qlora']})"] \
        if p["recipes"]["lora"] != p["recipes"]["qlora"] else ["bf16 LoRA", "4-bit QLoRA"]
    memory = f"{p['gpu_memory_gib']} GiB" if p["gpu_memory_gib"] is not None else "no GPU"
    c.print(table(f"seq {p['seq_len']} on {memory} ({p['gpu_name'] or 'unnamed card'})", ["GiB", *heads], rows))
    verdict = f"[bold]{p['run']['recipe']}[/] ({p['strategy']})" if p["run"] else "[red]refused[/]"
    c.print(f"choice: {verdict}: {p['reason']}")
    if p["run"]:
        c.print(f"run: [bold]{p['run']['command']}[/]", soft_wrap=True)


@click.command()
@click.option("--recipe", "-r", type=RECIPE, default=DEFAULT_7B, show_default=True)
@click.option("--strategy", "strategies", type=click.Choice(["lora", "qlora", "both"]), default="both", show_default=True)
@click.option("--seq-lens", default="2048", show_default=True, help="Comma-separated sequence lengths.")
@click.option("--steps", type=click.IntRange(min=2, max=10000), default=6, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Steps left out of the timing.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Also write the JSON here.")
@json_option
def qualify(recipe, strategies, seq_lens, steps, warmup, output, as_json):
    """Run the recipe's architecture with random weights for a few steps: memory, speed, ETA."""
    from kit.io import atomic_write_json
    from kit.recipe import load_recipe
    from kit.train import qualify as q

    try:
        lens = [int(x) for x in seq_lens.split(",") if x.strip()]
    except ValueError:
        lens = []
    if not lens or not all(16 <= n <= SEQ_LEN_MAX for n in lens) or len(lens) > 64:
        raise click.BadParameter(f"{seq_lens[:80]!r} is not a comma-separated list of lengths from 16 to "
                                 f"{SEQ_LEN_MAX}", param_hint="--seq-lens")
    if warmup >= steps:
        raise click.BadParameter(f"{warmup} warm-up steps leave none of the {steps} steps to time",
                                 param_hint="--warmup")
    if output:
        from kit import rundir

        rundir.check_output_path(output, "qualify output", folder=False)
        rundir.check_writable(output.parent, "qualify output", need_bytes=1 << 20)
    loaded = load_recipe(recipe)
    chosen = ["lora", "qlora"] if strategies == "both" else [strategies]
    total_tokens, _ = _recipe_tokens(loaded)

    def show(r):
        say(f"  {r['strategy']:>5} seq {r['seq_len']:>5}: peak reserved {r['peak_reserved_gib']:.2f} GiB "
            f"(planned {r['planned_peak_gib']:.2f}, {r['plan_error']:+.1%}), {r['tokens_per_s']:.0f} tok/s")

    result = q.qualify(loaded, chosen, lens, steps, warmup, total_tokens, on_result=show)
    if output:
        atomic_write_json(output, result)
    emit(result, as_json, _render_qualify)


def _render_qualify(r: dict) -> None:
    rows = [[x["strategy"], x["seq_len"], x["peak_reserved_gib"], x["planned_peak_gib"], f"{x['plan_error']:+.1%}",
             x["tokens_per_s"], x["mfu"], x["eta_full_recipe_s"]] for x in r["results"]]
    console().print(table(f"kit qualify {r['recipe']} on {r['gpu']}",
                          ["strategy", "seq", "peak reserved GiB", "planned GiB", "plan error", "tok/s", "MFU",
                           "ETA whole recipe s"], rows))


COMMANDS = [doctor, plan_, qualify]
