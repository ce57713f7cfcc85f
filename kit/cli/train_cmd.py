"""`kit train` and `kit hash`."""

from __future__ import annotations

from pathlib import Path

import click

from kit import rundir
from kit.cli.output import console, emit, json_option, say, table
from kit.errors import EXIT_CHECK_FAILED, KitError, ResourceError

DEFAULT_RECIPE = "recipes/tiny.yaml"


class RunFailed(KitError):
    """A run that started and then failed (not bad input): exit 1, one line, the log named."""

    exit_code = EXIT_CHECK_FAILED


@click.command()
@click.option("--recipe", "-r", "recipe", type=click.Path(path_type=Path), default=None,
              help=f"Recipe YAML (default: {DEFAULT_RECIPE}, the embedded small recipe).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Run directory to create (default: runs/<recipe name>).")
@click.option("--strategy", type=click.Choice(["lora", "qlora"]), default=None,
              help="Override the recipe's (or the planner's) choice; recorded in the manifest.")
@click.option("--allow-data-change", is_flag=True, help="Train on data whose sha256 is not the recipe's (recorded).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Continue an interrupted run from its last checkpoint.")
@click.option("--nproc", type=click.IntRange(min=1, max=1024), default=None,
              help="Data-parallel processes (one per GPU; gloo on CPUs). Part of the run's hardware class. "
                   "Default 1; with --resume, the run's own.")
@json_option
def train(recipe, output, strategy, allow_data_change, resume_dir, nproc, as_json):
    """Train one recipe into a run directory: adapter, log, manifest."""
    from kit.train import distributed, resume, runner
    from kit.train.loop import Interrupted

    if resume_dir and (recipe or output):
        raise click.UsageError("--resume takes the run directory alone (its recipe is in it)")
    if resume_dir:
        output = resume_dir
        nproc = resume.check(resume_dir, strategy, allow_data_change, nproc)  # the run's own flags
    else:
        recipe = recipe or Path(DEFAULT_RECIPE)
        output = output or Path("runs") / recipe.stem
        nproc = nproc or 1
    if nproc > 1 and not distributed.is_worker():
        _check_nproc(nproc)
        _launch(nproc, recipe, output, strategy, allow_data_change, resume_dir, as_json)
        return
    def banner():  # once the inputs are checked: a refusal stays one line
        if not distributed.is_worker():
            say(f"[bold]kit train[/] {('--resume ' + str(output)) if resume_dir else recipe} -> {output}")

    progress = _progress(as_json or distributed.is_worker())
    try:
        manifest = runner.train_run(recipe, output, strategy, allow_data_change, bool(resume_dir), on_step=progress,
                                    on_start=banner)
    except Interrupted as e:
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
    if manifest and not distributed.is_worker():  # the launcher reports for its workers
        emit(_train_summary(manifest, output), as_json, _render_train)


def _check_nproc(nproc: int) -> None:
    """One process per GPU, or per CPU core without one: more would only queue on the same device."""
    import os

    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else (os.cpu_count() or 1)
    if nproc > available:
        kind = "GPU(s)" if torch.cuda.is_available() else "CPU core(s)"
        raise click.BadParameter(f"{nproc} processes on {available} {kind}", param_hint="--nproc")


def _launch(nproc, recipe, output, strategy, allow_data_change, resume_dir, as_json) -> None:
    """Check the recipe and the folder here, then train in nproc processes and report."""
    from kit import rundir
    from kit.recipe import load_recipe
    from kit.train import distributed, runner

    if not resume_dir:
        load_recipe(recipe)
    runner.prepare_run_dir(output, bool(resume_dir))
    args = ["train", "--resume", str(output)] if resume_dir else ["train", "--recipe", str(recipe), "--output", str(output)]
    args += (["--strategy", strategy] if strategy else []) + (["--allow-data-change"] if allow_data_change else [])
    say(f"[bold]kit train[/] on {nproc} processes -> {output}")
    code = distributed.launch(nproc, args + ["--json"])
    if code != 0:
        raise SystemExit(code)
    emit(_train_summary(rundir.read_json(output / rundir.MANIFEST), output), as_json, _render_train)


def _progress(quiet: bool):
    def on_step(rec, total):
        if not quiet:
            say(f"  step {rec.step:>4}/{total}  loss {rec.loss:.4f}  grad-norm {rec.grad_norm:.3f}  lr {rec.lr:.2e}")
    return on_step


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
