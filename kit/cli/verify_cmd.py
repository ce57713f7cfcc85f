"""`kit verify`, `kit report` and `kit reproduce`: is this the published result, and say so publicly.

Exit codes: 0 bit-exact or equivalent, 1 mismatch (or a published file that differs), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path

import click

from kit.cli.output import byte_progress, console, emit, generation_progress, json_option, say, step_progress, table
from kit.cli.recipes_cmd import RECIPE, cap_gpu_memory, default_recipe, gpu_memory_option, recipe_notes
from kit.errors import EXIT_CHECK_FAILED, EXIT_OK, KitError, ReferenceFileError
from kit.verify.judge import InputsDifferError

_PATH = click.Path(path_type=Path)
_COLOUR = {"bit-exact": "green", "equivalent": "green", "mismatch": "red", "no-reference": "yellow"}


@click.command("verify")
@click.argument("run_dir", required=False, type=_PATH)
@click.option("--reference", "reference_file", type=_PATH, help="Reference JSON (default: references/<recipe>/<class>.json).")
@click.option("--allow-input-change", is_flag=True, help="Compare even when the inputs differ (the verdict is then mismatch).")
@click.option("--artifact", type=_PATH, help="Instead of a run: check a published adapter folder's files.")
@click.option("--checksums", type=_PATH, help="With --artifact: sha256sum file or JSON (default: ARTIFACT/checksums.sha256).")
@json_option
def verify_command(run_dir, reference_file, allow_input_change, artifact, checksums, as_json):
    """Bit-exact, equivalent or mismatch against the reference, with every cause named.

    \b
    kit verify RUN_DIR                          against references/<recipe>/<this hardware class>.json
    kit verify RUN_DIR --reference FILE         against another reference
    kit verify --artifact DIR --checksums FILE  a published adapter folder against published sha256s
    """
    from kit.verify import artifact as artifacts
    from kit.verify import judge

    if artifact:
        if run_dir or reference_file or allow_input_change:
            raise click.UsageError("--artifact goes alone (with --checksums), not with RUN_DIR or --reference")
        result = artifacts.verify_artifact(artifact, checksums)
        emit(result, as_json, _render_artifact)
        click.get_current_context().exit(EXIT_OK if result["ok"] else EXIT_CHECK_FAILED)
    if not run_dir:
        raise click.UsageError("pass RUN_DIR (or --artifact DIR)")
    if checksums:
        raise click.UsageError("--checksums goes with --artifact")
    from kit import rundir

    rundir.read_manifest(run_dir)  # a folder that is not a run is refused before it is locked
    with rundir.RunLock(run_dir):  # not while another command is writing the run
        result = judge.verify_run(run_dir, reference_file, allow_input_change)
    emit(result, as_json, _render_verdict)
    click.get_current_context().exit(result["exit_code"])


@click.command("report")
@click.argument("run_dir", type=_PATH)
@click.option("--reference", "reference_file", type=_PATH, help="Reference JSON (default: the one `kit verify` uses).")
@click.option("--output", "-o", type=_PATH, help="Folder for the report files (default: RUN_DIR/report).")
@click.option("--upload", "repo_id", is_flag=False, flag_value="", default=None, metavar="[REPO_ID]",
              help="Open a pull request adding the report (a dataset row and its files) to this HF dataset repo; "
                   "alone: the official reports repo ($KWANZAA_KIT_REPORTS_REPO overrides it).")
@click.option("--dry-run", is_flag=True, help="With --upload: print what would be sent, send nothing.")
@click.option("--bundle", "bundle_dir", type=_PATH,
              help="With --upload: also write the files the upload adds into this folder (a dataset folder).")
@json_option
def report_command(run_dir, reference_file, output, repo_id, dry_run, bundle_dir, as_json):
    """Write report.json, report.md and loss_curve.png; optionally open a PR on the Hub with them.

    \b
    kit report RUN_DIR                                     the report files in RUN_DIR/report
    kit report RUN_DIR --upload                            + a PR on the official reports dataset
    kit report RUN_DIR --upload REPO --dry-run --bundle D  what the PR would add, written into D

    The token comes from HF_TOKEN or `hf auth login`, never from the command line; without one
    nothing is sent. Nothing private is written: home paths, user and host names and tokens are
    scrubbed from every file.
    """
    from kit import fingerprint, rundir
    from kit.report import build as report

    if (dry_run or bundle_dir) and repo_id is None:
        raise click.UsageError("--dry-run and --bundle go with --upload [REPO_ID]")
    if repo_id is not None:
        from kit.report import dataset

        repo_id = repo_id or dataset.official_repo()
        _check_repo_id(repo_id)
    out_dir = output or Path(run_dir) / "report"
    rundir.check_output_path(out_dir, "report folder", folder=True)
    rundir.read_manifest(run_dir, complete=True)  # a folder that is not a run is refused before it is locked
    with rundir.RunLock(run_dir):
        fingerprint.check_outputs(run_dir)  # a report vouches for the files: verified before they are read
        rundir.check_writable(out_dir, "report folder", need_bytes=16 << 20)
        rep = report.build(run_dir, reference_file)
        files = report.write(rep, out_dir)
        result = {"verdict": rep["verdict"], "files": [str(f) for f in files]}
        if repo_id is not None:
            result["upload"] = _send(files, repo_id, rep, dry_run, out_dir, bundle_dir)
    emit(result, as_json, _render_report)


def _check_repo_id(repo_id: str) -> None:
    """OWNER/NAME as the Hub spells a repo id (huggingface_hub's own rule), before anything is built."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
        ok = repo_id.count("/") == 1
    except HFValidationError:
        ok = False
    if not ok:
        raise KitError(f"{repo_id[:100]!r} is not a Hub dataset repo id", where="--upload",
                       fix="pass OWNER/NAME (letters, digits, '-', '_', '.'), e.g. my-org/kwanzaa-reports")


def _send(files, repo_id, rep, dry_run, out_dir, bundle_dir) -> dict:
    from kit.report import dataset, upload

    return upload.send(files, repo_id or dataset.official_repo(), rep, dry_run, out_dir, bundle_dir)


@click.command("reproduce")
@click.option("--recipe", "-r", type=RECIPE, default=None,
              help="Recipe YAML or shipped name (default: the Kwanzaa recipe that fits this GPU; tiny without one).")
@click.option("--output", "-o", type=_PATH, help="Run directory (default: runs/<recipe>-<n>, the next free n).")
@gpu_memory_option("Plan (and hold torch's allocations) as if GPU 0 had this much free memory.")
@json_option
def reproduce_command(recipe, output, gpu_memory, as_json):
    """Train, evaluate, verify and report one recipe; exits with verify's code."""
    from kit import pipeline
    from kit.train.loop import Interrupted

    if recipe is None:
        recipe, why = default_recipe(gpu_memory)
        if not as_json:
            say(f"no --recipe: [bold]{recipe.stem}[/] ({why})")
    if not as_json:
        from kit.recipe import load_recipe

        for note in recipe_notes(recipe, load_recipe(recipe), gpu_memory):
            say(note)
    output = output or _next_run_dir(recipe)
    cap_gpu_memory(gpu_memory)
    on_step, close = step_progress(as_json)
    try:
        with byte_progress(as_json):
            result = pipeline.reproduce(recipe, output, on_stage=_stage_line(), on_step=on_step,
                                        on_batch=generation_progress(as_json))
    except Interrupted as e:
        close()
        say(f"[yellow]interrupted[/] after step {e.step}; continue with: kit train --resume {output}, "
            f"then kit eval {output} && kit verify {output}")
        raise SystemExit(128 + e.signum) from None
    except (InputsDifferError, ReferenceFileError) as e:  # the report is written; say what to run next
        raise _next_step(e, output) from None
    finally:
        close()
    emit(result, as_json, lambda r: _render_verdict(r["verification"]))
    click.get_current_context().exit(result["verification"]["exit_code"])


def _next_step(e: KitError, output: Path) -> KitError:
    """The verification's refusal, with a fix naming a command that has the flag it names."""
    if isinstance(e, InputsDifferError):
        fix = (f"train with the reference's recipe and data; or compare anyway: `kit verify {output} "
               "--allow-input-change` (the verdict is then mismatch)")
    elif "--reference" in (e.fix or ""):
        fix = f"compare with another reference: `kit verify {output} --reference FILE` (scripts/make_references.py makes one)"
    else:
        return e
    return type(e)(e.reason, where=e.where, fix=fix)


def _stage_line():
    stages = ("train", "evaluate", "verify", "report")
    return lambda stage, detail: say(f"[bold][{stages.index(stage) + 1}/4] {stage}[/] {detail}")


def _next_run_dir(recipe: Path) -> Path:
    n = 1
    while (Path("runs") / f"{recipe.stem}-{n}").exists():
        n += 1
    return Path("runs") / f"{recipe.stem}-{n}"


COMMANDS = [verify_command, report_command, reproduce_command]


# ---- rendering for people --------------------------------------------------------------------

def _render_verdict(r: dict) -> None:
    from rich.markup import escape

    out = console()
    ref = r["reference"]
    colour = _COLOUR[r["verdict"]]
    out.print(f"[bold {colour}]{r['verdict']}[/]  against {escape(ref['file'])} "
              f"({'same hardware class' if ref['same_class'] else 'another hardware class'})")
    if r["causes"]:
        effect = {"mismatch": "[red]mismatch[/]", "not-bit-exact": "[yellow]not bit-exact[/]", "info": "info"}
        out.print(table("causes", ["effect", "what", "what it means"],
                        [[effect[c["effect"]], escape(c["message"]), escape(c["meaning"])] for c in r["causes"]]))
    checks = r["checks"]
    n_in = sum(1 for c in checks if c["in_band"])
    out.print(f"{n_in} of {len(checks)} quantities inside the reference band (eval loss, metrics, loss per step)")


def _render_artifact(r: dict) -> None:
    from rich.markup import escape

    colour = {"ok": "green", "differs": "red", "missing": "red"}
    rows = [[escape(f["file"]), f"[{colour[f['status']]}]{f['status']}[/]", f["expected"][:16], (f["actual"] or "-")[:16]]
            for f in r["files"]]
    console().print(table(f"{escape(r['folder'])} vs {escape(r['checksums'])}", ["file", "", "expected", "actual"], rows))
    if r["not_listed"]:
        console().print(f"not in the checksums (not checked): {escape(', '.join(r['not_listed']))}")
    console().print("[green]every file matches[/]" if r["ok"] else "[red]some files differ from the published checksums[/]")


def _render_report(r: dict) -> None:
    from rich.markup import escape

    out = console()
    out.print(f"[bold {_COLOUR[r['verdict']]}]{r['verdict']}[/]; report written:")
    for f in r["files"]:
        out.print(f"  {escape(f)}", soft_wrap=True)
    up = r.get("upload")
    if not up:
        return
    if up.get("dry_run") or not up["sent"]:
        head = "dry run: nothing sent" if up.get("dry_run") else f"not sent ({escape(up['reason'])})"
        out.print(f"[yellow]{head}[/]. Would open a pull request on dataset {escape(up['repo_id'])}: "
                  f"{escape(up['commit_message'])}")
        card = up["card"]
        out.print(table("files", ["path in repo", "bytes", "sha256"],
                        [[escape(f["path_in_repo"]), f["size_bytes"], f["sha256"]] for f in up["files"]]
                        + [[f"{card['path_in_repo']} ({card['added']})", card["size_bytes"], card["sha256"]]]))
        if up.get("bundle"):
            out.print(f"bundle written: {escape(up['bundle'])}\nsend it later with:\n  {escape(up['how'])}",
                      soft_wrap=True)  # commands a person copies must not be cut
    else:
        card = " (with the dataset card, the repo had none)" if up.get("card_added") else ""
        out.print(f"[green]pull request opened[/]{card}: {escape(str(up.get('pr_url')))}")
    if up.get("bundle_dir"):
        b = up["bundle_dir"]
        out.print(f"written into {escape(b['folder'])}: {len(b['written'])} files"
                  f"{' (with the dataset card)' if b['card_added'] else ''}; send it with:\n  {escape(b['how'])}",
                  soft_wrap=True)
