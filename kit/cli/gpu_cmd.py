"""`kit doctor`, `kit plan`, `kit qualify`: the machine, the memory plan, and a measured check."""

from __future__ import annotations

from pathlib import Path

import click

from kit.cli.output import FiniteFloatRange, console, emit, json_option, say, table
from kit.errors import EXIT_BAD_INPUT

DEFAULT_7B = "recipes/kwanzaa-olmo7b-qlora.yaml"
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
    c.print(table("GPUs", ["#", "name", "total GiB", "free GiB", "capability", "bf16"], rows) if rows
            else "[yellow]no GPU visible[/]")
    lib = m["libraries"]
    c.print(f"driver {m['driver']}  CUDA {m['cuda']}  bitsandbytes CUDA {m['bitsandbytes_cuda']}  "
            f"CPU {m['cpu']} ({m['cpu_count']} cores, torch threads {m['torch_threads']})")
    c.print("  ".join(f"{k} {v}" for k, v in lib.items()))
    c.print(f"published image: {'yes' if m['in_image'] else 'no'}")
    for w in m["warnings"]:
        c.print(f"[yellow]warning:[/] {w}")


@click.command("plan")
@click.option("--recipe", "-r", type=click.Path(path_type=Path), default=DEFAULT_7B, show_default=True)
@click.option("--gpu-memory", type=FiniteFloatRange(min=0.5, max=1e5), default=None,
              help="Plan for a card with this much free memory (GiB) instead of the detected one.")
@click.option("--gpu-name", default=None, help="Name of that card, for the time estimate (e.g. 'RTX 4090').")
@click.option("--seq-len", type=click.IntRange(min=16, max=SEQ_LEN_MAX), default=None,
              help="Tokens per sequence (default: the recipe's max_seq_len).")
@json_option
def plan_(recipe, gpu_memory, gpu_name, seq_len, as_json):
    """Estimated peak GPU memory of bf16 LoRA and 4-bit QLoRA, the choice and why, and the time."""
    from kit import plan
    from kit.recipe import load_recipe

    loaded = load_recipe(recipe)
    if gpu_memory is None:
        from kit import hardware

        m = hardware.detect()
        if m.gpus:
            gpu_memory, gpu_name = m.gpus[0].free_gib, gpu_name or m.gpus[0].name
    d = plan.decide(loaded.recipe, gpu_memory, seq_len)
    total_tokens, steps = _recipe_tokens(loaded)
    result = {"recipe": loaded.recipe.name, "seq_len": seq_len or loaded.recipe.data.max_seq_len,
              "gpu_memory_gib": gpu_memory, "gpu_name": gpu_name, "margin": plan.MARGIN, "strategy": d.strategy,
              "reason": d.reason, "estimates": d.estimates,
              "time": {s: plan.eta(s, gpu_name, total_tokens, steps) for s in ("lora", "qlora")}}
    emit(result, as_json, _render_plan)
    if d.strategy is None and gpu_memory is not None:
        if not as_json:
            console(stderr=True).print(f"Error: the recipe does not fit in {gpu_memory:g} GiB: {d.reason}")
        raise SystemExit(EXIT_BAD_INPUT)


def _recipe_tokens(loaded) -> tuple[int | None, int | None]:
    """Tokens the whole recipe trains on (rows x epochs) and its optimizer steps; None without data."""
    import math

    from kit.errors import KitError

    try:
        from kit.data import rows as data
        from kit.data.tokenizer import load_default_tokenizer

        tok = load_default_tokenizer()
        rows = data.encode_file(tok, loaded.resolve(loaded.recipe.data.train), 10**9, loaded.recipe.data.max_train_rows)
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
    c.print(table(f"{p['recipe']} at seq {p['seq_len']} on {p['gpu_memory_gib']} GiB ({p['gpu_name'] or 'unnamed card'})",
                  ["GiB", "bf16 LoRA", "4-bit QLoRA"], rows))
    verdict = f"[bold]{p['strategy']}[/]" if p["strategy"] else "[red]refused[/]"
    c.print(f"choice: {verdict}: {p['reason']}")


@click.command()
@click.option("--recipe", "-r", type=click.Path(path_type=Path), default=DEFAULT_7B, show_default=True)
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
