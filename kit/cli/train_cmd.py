"""`kit train` and `kit hash`."""

from __future__ import annotations

from pathlib import Path

import click

from kit import rundir
from kit.cli.output import byte_progress, console, emit, json_option, say, step_progress, table
from kit.cli.recipes_cmd import RECIPE, cap_gpu_memory, default_recipe, gpu_memory_option, recipe_notes
from kit.errors import EXIT_CHECK_FAILED, KitError, ResourceError


class RunFailed(KitError):
    """A run that started and then failed (not bad input): exit 1, one line, the log named."""

    exit_code = EXIT_CHECK_FAILED


@click.command()
@click.option("--recipe", "-r", "recipe", type=RECIPE, default=None,
              help="Recipe YAML, or a shipped recipe's name (`kit recipes`). Default: on a GPU, the Kwanzaa recipe "
                   "that fits its free memory (bf16 LoRA, else QLoRA); without one, the tiny CPU recipe.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Run directory to create (default: runs/<recipe name>).")
@click.option("--strategy", type=click.Choice(["lora", "qlora"]), default=None,
              help="Override the recipe's (or the planner's) choice; recorded in the manifest.")
@click.option("--allow-data-change", is_flag=True, help="Train on data whose sha256 is not the recipe's (recorded).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Continue an interrupted run from its last checkpoint, with the flags it started with.")
@click.option("--nproc", type=click.IntRange(min=1, max=1024), default=None,
              help="Data-parallel processes on this machine (one per GPU; gloo on CPUs). Part of the hardware "
                   "class. Default 1; with --resume, the run's own.")
@click.option("--nnodes", type=click.IntRange(min=1, max=4096), default=1, show_default=True,
              help="Machines in the run, each running this command with --nproc processes.")
@click.option("--node-rank", type=click.IntRange(min=0), default=0, show_default=True,
              help="This machine's place, 0 .. nnodes-1 (node 0 writes the run's outputs).")
@click.option("--rdzv-endpoint", metavar="HOST:PORT", default=None,
              help="With --nnodes > 1: where the nodes meet (node 0's address and a free port), the same on every node.")
@click.option("--rdzv-timeout", type=click.IntRange(min=1, max=86400), default=900, show_default=True, metavar="SECONDS",
              help="With --nnodes > 1: how long a node waits for the others to start.")
@gpu_memory_option("Plan as if GPU 0 had this much free memory, and hold torch's allocations to it: "
                   "shows which recipe a smaller card runs, and that it fits.")
@click.option("--random-weights", is_flag=True,
              help="DEMO: seeded random weights of the recipe's architecture stand in for the base model (no "
                   "download); the run is named <recipe>-random-weights and is not the Kwanzaa adapter.")
@json_option
def train(recipe, output, strategy, allow_data_change, resume_dir, nproc, nnodes, node_rank, rdzv_endpoint,
          rdzv_timeout, gpu_memory, random_weights, as_json):
    """Train one recipe into a run directory: adapter, log, manifest."""
    from kit.train import distributed, resume

    if resume_dir and (recipe or output or gpu_memory or random_weights):
        raise click.UsageError("--resume takes the run directory alone (its recipe is in it)")
    if node_rank >= nnodes:
        raise click.BadParameter(f"{node_rank} is not below --nnodes {nnodes}", param_hint="--node-rank")
    _check_endpoint(nnodes, rdzv_endpoint)
    if ((nproc or 1) > 1 or nnodes > 1) and (gpu_memory or random_weights):
        raise click.UsageError("--gpu-memory and --random-weights run in one process: leave out --nproc and --nnodes")
    if resume_dir:
        output, to_train = resume_dir, None
        if not distributed.is_worker() and node_rank == 0:  # the run's own flags and layout
            nproc = resume.check(resume_dir, strategy, allow_data_change, nproc, nnodes)
    else:
        to_train = _recipe_to_train(recipe, gpu_memory, random_weights, quiet=as_json or distributed.is_worker())
        output = output or Path("runs") / (to_train.recipe.name if random_weights else to_train.path.stem)
    nproc = nproc or 1
    if (nproc > 1 or nnodes > 1) and not distributed.is_worker():
        _launch(nproc, to_train, output, strategy, allow_data_change, resume_dir, as_json, nnodes, node_rank,
                rdzv_endpoint, rdzv_timeout)
        return
    if distributed.is_worker():
        _work(to_train, output, strategy, allow_data_change, resume_dir, as_json)
        return
    if random_weights and gpu_memory:
        # built (on the CPU, and cached) before the cap, so the cap is all the GPU memory training has
        from kit.model import source

        source.materialize_random(to_train.recipe.model)
    cap_gpu_memory(gpu_memory)
    # a shipped or given recipe goes by its file (the run records where it came from); the random-weights
    # stand-in exists only loaded
    manifest = _train_here(to_train if random_weights else to_train and to_train.path, output, strategy,
                           allow_data_change, resume_dir, as_json)
    if manifest:
        emit(_train_summary(manifest, output), as_json, _render_train)


def _train_here(recipe, output, strategy, allow_data_change, resume_dir, as_json) -> dict:
    """Train in this process; a run that started and then failed is one line naming its log."""
    from kit.train import runner
    from kit.train.loop import Interrupted

    def banner():  # once the inputs are checked: a refusal stays one line
        say(f"[bold]kit train[/] {('--resume ' + str(output)) if resume_dir else _name(recipe)} -> {output}")

    on_step, close = step_progress(as_json)
    try:
        with byte_progress(as_json):
            return runner.train_run(recipe, output, strategy, allow_data_change, bool(resume_dir), on_step=on_step,
                                    on_start=banner)
    except Interrupted as e:
        close()
        say(f"[yellow]interrupted[/] after step {e.step} (signal {e.signum}); a checkpoint was saved. "
            f"Continue with: kit train --resume {output}")
        raise SystemExit(128 + e.signum) from None
    except (KitError, KeyboardInterrupt):
        raise
    except OSError as e:  # a full disk, a folder made read-only: the manifest and the last checkpoint stay
        if not (Path(output) / rundir.LOG).is_file():
            raise
        raise ResourceError(f"the run stopped: {e.strerror or e}", where=str(e.filename or output),
                            fix=f"free some disk space (or make the folder writable), then `kit train --resume "
                                f"{output}`") from None
    except Exception as e:  # the run started and failed: its manifest says so, its log has the traceback
        if not (Path(output) / rundir.LOG).is_file():
            raise
        raise RunFailed(f"the run failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e) else ''}",
                        where=str(Path(output) / rundir.LOG),
                        fix=f"the traceback is in that log; `kit train --resume {output}` continues from the last "
                            "checkpoint") from None
    finally:
        close()


def _name(recipe) -> str:
    """A loaded recipe's name, or the recipe file as given."""
    return recipe.recipe.name if hasattr(recipe, "recipe") else str(recipe)


def _check_endpoint(nnodes: int, endpoint: str | None) -> None:
    """Several nodes meet at HOST:PORT; checked before anything is made or started."""
    import re

    if nnodes == 1:
        if endpoint:
            raise click.BadParameter("a rendezvous endpoint is for several nodes: add --nnodes N, or leave it out",
                                     param_hint="--rdzv-endpoint")
        return
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):([0-9]{1,5})", endpoint or "")
    if not match or not 1 <= int(match[2]) <= 65535:
        raise click.BadParameter(f"{(endpoint or '')[:80]!r} is not HOST:PORT" if endpoint else
                                 "several nodes need one: node 0's address and a free port, the same on every node",
                                 param_hint="--rdzv-endpoint")


def _check_nproc(nproc: int) -> None:
    """One process per GPU, or per CPU core without one: more would only queue on the same device."""
    import os

    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else (os.cpu_count() or 1)
    if nproc > available:
        kind = "GPU(s)" if torch.cuda.is_available() else "CPU core(s)"
        raise click.BadParameter(f"{nproc} processes on {available} {kind}", param_hint="--nproc")


def _work(recipe, output, strategy, allow_data_change, resume_dir, as_json) -> None:
    """One rank of a multi-process run: train, and on failure leave the launcher one line to report."""
    from kit.train import distributed, runner
    from kit.train.loop import Interrupted

    rank = distributed.worker_rank()
    on_step, close = step_progress(as_json or rank != 0)
    try:
        runner.train_run(recipe, output, strategy, allow_data_change, bool(resume_dir), on_step=on_step)
    except Interrupted as e:
        distributed.write_worker_error(output, 128 + e.signum, f"interrupted after step {e.step}; a checkpoint was "
                                       f"saved. Continue with: kit train --resume {output}")
        raise SystemExit(128 + e.signum) from None
    except click.ClickException as e:
        distributed.write_worker_error(output, e.exit_code, f"Error: {e.format_message()}")
        raise SystemExit(e.exit_code) from None
    except Exception as e:
        log = output / ("logs/kit.log" if rank == 0 else f"logs/kit.rank{rank}.log")
        distributed.write_worker_error(output, 1, f"Error: rank {rank} failed: {type(e).__name__}: "
                                       f"{str(e).splitlines()[0] if str(e) else ''} (the traceback is in {log})")
        raise SystemExit(1) from None
    finally:
        close()


def _recipe_to_train(recipe: Path | None, gpu_memory: float | None, random_weights: bool, quiet: bool):
    """The recipe to train, loaded: the given one, or the planner's pick; with --random-weights, its
    labelled stand-in. Says which and why, and what a hub ref will be resolved to."""
    from kit.model import source
    from kit.recipe import load_recipe

    if recipe is None:
        recipe, why = default_recipe(gpu_memory)
        if not quiet:
            say(f"no --recipe: [bold]{recipe.stem}[/] ({why})")
    loaded = load_recipe(recipe)
    if random_weights:
        loaded = source.random_stand_in(loaded)
        if not quiet:
            say(f"[yellow]--random-weights:[/] seeded random weights of {recipe.stem}'s architecture stand in for its "
                f"base model: this run ({loaded.recipe.name}) shows the recipe's memory, speed and pipeline, "
                "[bold]not[/] the Kwanzaa adapter")
    elif not quiet:
        for note in recipe_notes(recipe, loaded, gpu_memory):
            say(note)
    return loaded


def _launch(nproc, loaded, output, strategy, allow_data_change, resume_dir, as_json, nnodes=1, node_rank=0,
            rdzv_endpoint=None, rdzv_timeout=900) -> None:
    """Check the split and the folder here (the recipe is loaded: `loaded`, or the resumed run's),
    then train in nproc processes (per node) and report."""
    from kit.train import distributed, resume, runner

    if resume_dir:
        loaded = resume.recipe(output)
    recipe = loaded.path
    distributed.check_split(loaded.recipe.training.rows_per_step(), nproc * nnodes, f"{recipe}: training")
    _check_nproc(nproc)
    if node_rank == 0:
        runner.prepare_run_dir(output, bool(resume_dir))
    # another node makes nothing before the rendezvous: on a shared disk its folder would be node 0's,
    # still being checked; its ranks write their logs there once node 0 has made it
    args = ["train", "--resume", str(output)] if resume_dir else ["train", "--recipe", str(recipe), "--output", str(output)]
    args += (["--strategy", strategy] if strategy else []) + (["--allow-data-change"] if allow_data_change else [])
    nodes = f" x {nnodes} nodes (this is node {node_rank})" if nnodes > 1 else ""
    say(f"[bold]kit train[/] on {nproc} processes{nodes} -> {output}")
    try:
        distributed.launch(nproc, args + (["--json"] if as_json else []), output, nnodes, node_rank, rdzv_endpoint,
                           rdzv_timeout)
    except distributed.WorkerFailed as e:
        click.echo(e.message if e.message.startswith(("Error:", "interrupted")) else f"Error: {e.message}", err=True)
        raise SystemExit(e.exit_code) from None
    if node_rank == 0:
        emit(_train_summary(rundir.read_manifest(output, complete=True), output), as_json, _render_train)


def _train_summary(manifest: dict, output: Path) -> dict:
    return {"run_dir": str(output), "status": manifest["status"], "plan": manifest["plan"],
            "adapter_sha256": manifest["outputs"]["adapter"]["sha256"], "summary": manifest["summary"],
            "inputs": {k: v["sha256"] for k, v in manifest["inputs"].items()}}


def _render_train(s: dict) -> None:
    c = console()
    c.print(f"[green]trained[/] {s['run_dir']}  strategy [bold]{s['plan']['strategy']}[/] ({s['plan']['reason']})")
    rows = [[k, v] for k, v in s["inputs"].items()] + [["adapter (output)", s["adapter_sha256"]]]
    c.print(table("fingerprints (sha256)", ["what", "sha256"], rows))
    sm = s["summary"]
    c.print(f"{sm['steps']} steps, final loss {sm['final_loss']:.4f}, {sm['trainable_parameters']:,} trainable "
            f"parameters, {sm['seconds']:.1f} s")
    sp = sm.get("speed") or {}
    if sp.get("tokens_per_s"):
        mfu = f", MFU {sp['mfu']:.1%}" if sp.get("mfu") is not None else ""
        peak = f", peak reserved {sp['peak_reserved_gib']:.2f} GiB" if "peak_reserved_gib" in sp else ""
        c.print(f"speed: {sp['tokens_per_s']:,.0f} tokens/s (steps {sp['rate_steps']}){mfu}{peak}")


@click.command("hash")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@json_option
def hash_(run_dir, as_json):
    """Recompute a run's fingerprints from its files and compare them with its manifest."""
    from kit.fingerprint import rehash

    result = rehash(run_dir)
    emit(result, as_json, _render_hash)
    if not result["ok"]:
        raise SystemExit(1)


def _render_hash(r: dict) -> None:
    rows = [[c["key"], "[green]ok[/]" if c["ok"] else "[red]DIFFERS[/]", str(c["recomputed"])[:16],
             str(c["recorded"])[:16]] for c in r["checks"]]
    console().print(table(f"kit hash {r['run']}", ["fingerprint", "", "recomputed", "manifest"], rows))
    console().print("[green]every fingerprint matches[/]" if r["ok"] else "[red]some files differ from the manifest[/]")


COMMANDS = [train, hash_]
