"""`kit eval` (score responses, or evaluate a run) and `kit compare` (two scorings side by side).

Scoring never fails the command: pass/fail is reported, not an error. Only bad input exits 2,
and `--fail-under-targets` makes a missed (or unmeasurable) target exit 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from kit.cli.output import console, emit, generation_progress, json_option, table
from kit.errors import EXIT_CHECK_FAILED, KitError

_PATH = click.Path(path_type=Path)


@click.command("eval")
@click.argument("run_dir", required=False, type=_PATH)
@click.option("--responses", type=_PATH, help="JSONL of {id, response}: raw model text to score.")
@click.option("--data", type=_PATH, help="Eval JSONL the responses answer (rows with meta).")
@click.option("--output", "-o", type=_PATH, help="Write the metrics JSON here.")
@click.option("--worst", default=10, show_default=True, type=click.IntRange(min=0), help="How many failing rows to show.")
@click.option("--fail-under-targets", is_flag=True, help="Exit 1 when a metric misses its target or has no data.")
@click.option("--base-only", is_flag=True,
              help="With RUN_DIR: evaluate the base model without the adapter (writes RUN/eval-base/).")
@json_option
def eval_command(run_dir: Path | None, responses: Path | None, data: Path | None, output: Path | None,
                 worst: int, fail_under_targets: bool, base_only: bool, as_json: bool) -> None:
    """Score the four objectives: JSON, citations, refusal, retrieval use.

    \b
    kit eval --responses R.jsonl --data EVAL.jsonl   score responses made elsewhere (no model)
    kit eval RUN_DIR                                 generate with the run's model, then score
    kit eval RUN_DIR --base-only                     the same for the base model alone
    kit compare RUN/eval-base/metrics.json RUN       base vs base + adapter, side by side
    """
    if run_dir and (responses or data):
        raise KitError("RUN_DIR and --responses/--data are two ways to evaluate, not one",
                       fix="pass RUN_DIR (generate with the run's model), or --responses R.jsonl --data EVAL.jsonl")
    if base_only and not run_dir:
        raise KitError("--base-only goes with RUN_DIR", fix="pass RUN_DIR --base-only")
    if output:
        from kit import rundir

        rundir.check_output_path(output, "metrics output", folder=False)
        rundir.check_writable(output.parent, "metrics output", need_bytes=16 << 20)
    if responses or data:
        if not (responses and data):
            raise KitError("--responses and --data go together", fix="pass both files, or only RUN_DIR")
        from kit.evaluate.score import score_files

        result = score_files(data, responses)
    elif run_dir:
        from kit.evaluate.runner import evaluate_run

        result = evaluate_run(run_dir, base_only=base_only, on_batch=None if as_json else generation_progress())
    else:
        raise KitError("nothing to score", fix="pass RUN_DIR, or --responses R.jsonl --data EVAL.jsonl")
    if output:
        from kit import io

        io.atomic_write_json(output, result)
    emit(result, as_json, lambda r: _render(r, worst, output))
    if fail_under_targets and not result["verdict"]["meets_targets"]:
        click.get_current_context().exit(EXIT_CHECK_FAILED)


@click.command("compare")
@click.argument("a", type=_PATH)
@click.argument("b", type=_PATH)
@click.option("--label-a", default="base", show_default=True, help="Name of A in the table.")
@click.option("--label-b", default="adapter", show_default=True, help="Name of B in the table.")
@json_option
def compare_command(a: Path, b: Path, label_a: str, label_b: str, as_json: bool) -> None:
    """Compare two scorings (metrics JSON files or run dirs holding eval/metrics.json)."""
    from kit.evaluate import compare
    from kit.evaluate.responses import printable

    result = {"labels": printable({"a": label_a, "b": label_b}), "paths": printable({"a": str(a), "b": str(b)}),
              "metrics": compare.compare(compare.read_metrics(a), compare.read_metrics(b))}
    emit(result, as_json, _render_compare)


COMMANDS = [eval_command, compare_command]


# ---- rendering for people --------------------------------------------------------------------

def _pct(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    return f"{100 * m['numerator'] / m['denominator']:.1f}%"


def _ratio(m: dict | None) -> str:
    return f"{m['numerator']}/{m['denominator']}" if m else "-"


def _target(t: dict) -> str:
    return f"{'≥' if t['op'] == '>=' else '≤'} {t['percent']}%"


def _verdict(ok: bool | None) -> str:
    return {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[yellow]no data[/]"}[ok]


def _text(value) -> str:
    """Any string from the inputs, safe to print: no lone surrogate, no rich markup."""
    from rich.markup import escape

    from kit.evaluate.responses import printable

    return escape(printable(str(value)))


def _render(result: dict, worst: int, output: Path | None) -> None:
    out = console()
    rows = []
    for name, m in result["metrics"].items():
        launch = _target(m["launch_target"]) if m["launch_target"] != m["target"] else ""
        rows.append([name, _pct(m), _ratio(m), _target(m["target"]), launch, _verdict(m["meets_target"])])
        for persona, p in m.get("by_persona", {}).items():
            rows.append([f"  {_text(persona)}", _pct(p), _ratio(p), "", "", _verdict(p["meets_target"])])
        for reason, count in m.get("invalid", {}).items():
            rows.append([f"  {_text(reason)}", "", str(count), "", "", ""])
        if "claims" in m:
            rows.append(["  claim sentences", _pct(m["claims"]), _ratio(m["claims"]), "", "", ""])
    out.print(table(f"Metrics over {result['n_rows']} rows", ["metric", "value", "n/d", "target", "launch", ""],
                    rows))
    failing = sorted((r for r in result["rows"] if r["failed"]), key=lambda r: (-len(r["failed"]), r["id"]))
    if failing and worst > 0:
        out.print(table(f"Worst rows ({min(worst, len(failing))} of {len(failing)} failing)",
                        ["id", "persona", "category", "failed", "why"],
                        [[_text(r["id"]), _text(r["persona"]), _text(r["category"]), ", ".join(r["failed"]),
                          _text(_why(r))]
                         for r in failing[:worst]]))
    v = result["verdict"]
    if v["meets_targets"]:
        out.print("[green]All targets met.[/]")
    else:
        out.print(f"[red]Targets missed:[/] {', '.join(v['missed_targets']) or '-'}"
                  f"  [yellow]no data:[/] {', '.join(v['no_data']) or '-'}")
    if result.get("timing"):
        t = result["timing"]
        out.print(f"Evaluated {t['rows']} rows in {t['seconds']:.1f} s on {t['device']} (generation "
                  f"{t['generate_seconds']:.1f} s, {t['new_tokens']:,} new tokens, {t['new_tokens_per_s'] or 0:,.0f}/s)")
    if output:
        out.print(f"Metrics written to {_text(output)}")


def _why(r: dict) -> str:
    """The first reason a person should look at, cut to one short line."""
    if r["parse_error"]:
        why = f"parse: {r['parse_error']}"
    elif r["schema_errors"]:
        why = f"schema: {r['schema_errors'][0]}"
    elif r["markers_invalid"]:
        m = r["markers_invalid"][0]
        why = f"marker [{m['n']}]: {m['reason']}"
    elif r["sources_invalid"]:
        s = r["sources_invalid"][0]
        why = f"source {s['source']}: {s['reason']}"
    elif r["sentences_unsupported"]:
        s = r["sentences_unsupported"][0]
        why = f"{s['reason']}: {s['sentence']}"
    else:
        why = f"refused={r['refused']} should_refuse={r['should_refuse']} sources={r['sources_cited']}"
    return why if len(why) <= 90 else why[:87] + "..."


def _render_compare(result: dict) -> None:
    la, lb = result["labels"]["a"], result["labels"]["b"]
    colour = {"better": "green", "worse": "red", "same": "white"}
    rows = []
    for name, c in result["metrics"].items():
        delta = "n/a" if c["delta"] is None else f"[{colour[c['change']]}]{100 * c['delta']:+.1f} pts[/]"
        rows.append([_text(name), f"{_pct(c['a'])} ({_ratio(c['a'])})", f"{_pct(c['b'])} ({_ratio(c['b'])})", delta,
                     _target(c["target"]), _verdict(c["b"]["meets_target"]) if c["b"] else ""])
    la, lb = _text(la), _text(lb)
    console().print(table(f"{la} vs {lb}", ["metric", la, lb, "delta", "target", lb], rows))
