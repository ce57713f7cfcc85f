"""A run's report: report.json (kwanzaa-kit.report.v1), report.md and loss_curve.png.

The report holds the verdict and its causes (kit.verify), the fingerprints, the metrics against
their targets and the reference band, the environment and the commands to reproduce. Every
string in it goes through `scrub` first: no home path, user name, host name or token leaves
this machine (kit.report.scrub). Sending it is kit.report.upload.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from kit import container, io, rundir
from kit.report.scrub import private_values, scrub, scrub_text
from kit.verify import judge as verify
from kit.verify import reference

SCHEMA = "kwanzaa-kit.report.v1"
FILES = ("report.json", "report.md", "loss_curve.png")
NO_REFERENCE = "no-reference"
VERDICT_TEXT = {
    verify.BIT_EXACT: "the same adapter bytes as the reference, on the same hardware class and software.",
    verify.EQUIVALENT: "not the same bytes (the causes say why), but the eval loss, every metric and every "
                       "loss-curve point lie inside the reference band.",
    verify.MISMATCH: "the run is not the published result: the causes below say where and by how much.",
    NO_REFERENCE: "there is no reference for this recipe yet, so nothing to compare with; publishing this "
                  "report helps make one.",
}


def build(run: Path, reference_path: Path | None = None, verification: dict | None = None) -> dict:
    """The report of RUN (complete and evaluated), compared with its reference when there is one.
    Differing inputs are compared, not refused: the report names them and the verdict is mismatch."""
    run = Path(run)
    results = reference.run_results(run)
    if verification is None and (reference_path or reference.locate(results["recipe_name"],
                                                                     results["environment"]["hardware"])):
        verification = verify.verify_run(run, reference_path, allow_input_change=True)
    manifest = rundir.read_manifest(run, complete=True)
    scored = rundir.read_metrics(run / rundir.EVAL / "metrics.json")
    checks = {c["name"]: c for c in (verification or {}).get("checks", [])}
    env = manifest["inputs"]["environment"]
    recipe_file = _recipe_file(manifest)
    ref_file = _portable_reference((verification or {}).get("reference", {}).get("file"))
    report = {
        "schema": SCHEMA,
        "kit_version": manifest.get("kit_version"),
        # when and by which kit source this report was made, and the image the run ran in (its id,
        # when the launcher passed it: container.IMAGE_ID_ENV)
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kit_commit": container.kit_revision(),
        "image_id": (env.get("image") or {}).get("image_id"),
        "run": {"name": run.name, "recipe_name": manifest["recipe_name"], "recipe_file": recipe_file,
                "status": manifest["status"], "plan": manifest["plan"], "summary": manifest.get("summary"),
                "determinism": manifest.get("determinism"),
                "hardware_class_slug": reference.hardware_slug(env["hardware"])},
        "verdict": verification["verdict"] if verification else NO_REFERENCE,
        "verdict_text": VERDICT_TEXT[verification["verdict"] if verification else NO_REFERENCE],
        "exit_code": verification["exit_code"] if verification else None,
        "causes": verification["causes"] if verification else [],
        "reference": {**verification["reference"], "file": ref_file} if verification else None,
        "fingerprints": {"inputs": {k: v["sha256"] for k, v in manifest["inputs"].items()},
                         "outputs": {k: v["sha256"] for k, v in manifest.get("outputs", {}).items()}},
        "eval_loss": {"value": results["eval_loss"], "band": _band(checks.get("eval_loss"))},
        "metrics": [{"name": name, **{k: m.get(k) for k in ("value", "numerator", "denominator", "target",
                                                            "meets_target")}, "band": _band(checks.get(name))}
                    for name, m in scored.get("metrics", {}).items()],
        "loss_curve": [{"step": p["step"], "loss": p["loss"], "band": _band(checks.get(f"loss[step {p['step']}]"))}
                       for p in results["loss_curve"]],
        "speed": _speed(manifest),
        "environment": {k: env.get(k) for k in ("hardware", "software", "driver", "image", "hardware_sha256",
                                                "software_sha256", "sha256")},
        "reproduce": _commands(recipe_file, ref_file),
    }
    return scrub(report)


def _speed(manifest: dict) -> dict:
    """Training tokens/s, MFU and peak memory; evaluation seconds (measured, not compared)."""
    train = (manifest.get("summary") or {}).get("speed") or {}
    ev = manifest.get("eval") or {}
    return {"train": {k: train.get(k) for k in ("tokens_per_s", "mfu", "peak_reserved_gib", "loop_seconds",
                                                 "padding_waste", "gpu")},
            "eval": {k: ev.get(k) for k in ("seconds", "generate_seconds", "rows", "new_tokens", "new_tokens_per_s")}}


def _band(check: dict | None) -> dict | None:
    if not check:
        return None
    return {k: check[k] for k in ("low", "high", "center", "in_band", "distance")}


def _recipe_file(manifest: dict) -> str:
    origin = manifest["inputs"]["recipe"].get("origin") or ""
    if origin and not origin.startswith("..") and not os.path.isabs(origin):
        return origin
    return f"recipes/{manifest['recipe_name']}.yaml"


def _portable_reference(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path).resolve()
    try:
        return str(p.relative_to(reference.references_dir().resolve().parent))
    except ValueError:
        return p.name


def _commands(recipe_file: str, ref_file: str | None) -> list[str]:
    ref = f" --reference {ref_file}" if ref_file else ""
    return [f"make reproduce REPRODUCE_ARGS='--recipe {recipe_file}'   # in the image (Docker + GPU), else the venv",
            f"kit reproduce --recipe {recipe_file}   # train, evaluate, verify, report in one",
            f"kit verify RUN_DIR{ref}",
            "kit report RUN_DIR --upload <hf-dataset-repo> --dry-run   # see what would be sent"]


# ---- writing ---------------------------------------------------------------------------------

def write(report: dict, out_dir: Path) -> list[Path]:
    """report.json, report.md and loss_curve.png in OUT_DIR (default RUN/report), each written
    atomically, in the order that never leaves a file pointing at one not yet there: the picture,
    then report.md that shows it, then report.json (what --upload sends) last."""
    out_dir = Path(out_dir)
    plot_loss_curve(report, out_dir / "loss_curve.png")
    io.atomic_write_text(out_dir / "report.md", scrub_text(render_markdown(report), private_values()))
    io.atomic_write_json(out_dir / "report.json", report)
    return [out_dir / name for name in FILES]


_YES_NO = {True: "yes", False: "no", None: "no data"}


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _band_text(b: dict | None, digits: int = 4) -> str:
    if not b:
        return "-"
    if b["low"] is None:
        return "no data" + ("" if b["in_band"] else " in the reference: **OUT**")
    return (f"[{_fmt(b['low'], digits)}, {_fmt(b['high'], digits)}] "
            + ("in" if b["in_band"] else f"**OUT** by {_fmt(b['distance'], digits)}"))


def render_markdown(r: dict) -> str:
    run, ref = r["run"], r["reference"]
    image = f", in image `{r['image_id']}`" if r.get("image_id") else ""
    lines = [f"# kwanzaa-kit report: {run['recipe_name']}", "",
             f"**Verdict: {r['verdict']}** — {r['verdict_text']}", "",
             f"Made {r['created']} by kwanzaa-kit {r['kit_version']} (commit `{r['kit_commit'] or 'unknown'}`){image}.", ""]
    if ref:
        same = "same hardware class" if ref["same_class"] else "another hardware class"
        lines += [f"Reference: `{ref['file']}` ({same}).", ""]
    lines += ["## Causes", ""]
    lines += [f"- **{c['effect']}** `{c['message']}` — {c['meaning']}" for c in r["causes"]] or ["- none"]
    lines += ["", "## Fingerprints (sha256)", "", "| what | sha256 |", "|---|---|"]
    lines += [f"| input {k} | `{v}` |" for k, v in r["fingerprints"]["inputs"].items()]
    lines += [f"| output {k} | `{v}` |" for k, v in r["fingerprints"]["outputs"].items()]
    lines += ["", "## Metrics", "", "| metric | value | n/d | target | meets target | reference band |",
              "|---|---|---|---|---|---|",
              f"| eval_loss | {_fmt(r['eval_loss']['value'], 7)} | | | | {_band_text(r['eval_loss']['band'], 7)} |"]
    for m in r["metrics"]:
        t = m.get("target") or {}
        lines.append(f"| {m['name']} | {_fmt(m['value'])} | {m['numerator']}/{m['denominator']} | "
                     f"{t.get('op', '')} {t.get('percent', '')}% | {_YES_NO[m['meets_target']]} | {_band_text(m['band'])} |")
    outside = [p for p in r["loss_curve"] if p["band"] and not p["band"]["in_band"]]
    final = _fmt(r["loss_curve"][-1]["loss"], 6) if r["loss_curve"] else "n/a"
    lines += ["", "## Loss curve", "", "![loss curve](loss_curve.png)", "",
              f"{len(r['loss_curve'])} steps, final loss {final}; "
              f"{len(outside)} outside the reference band.", ""]
    tr, ev = r["speed"]["train"], r["speed"]["eval"]
    mfu = f"{tr['mfu']:.1%}" if tr.get("mfu") is not None else "n/a"
    lines += ["## Speed (measured on this machine; not compared)", "", "| what | value |", "|---|---|",
              f"| training tokens/s (real tokens) | {_fmt(tr.get('tokens_per_s'))} |", f"| MFU (6N) | {mfu} |",
              f"| peak reserved GiB | {_fmt(tr.get('peak_reserved_gib'))} |",
              f"| training loop seconds | {_fmt(tr.get('loop_seconds'))} |",
              f"| evaluation seconds ({_fmt(ev.get('rows'))} rows) | {_fmt(ev.get('seconds'))} |",
              f"| generated tokens/s | {_fmt(ev.get('new_tokens_per_s'))} |", ""]
    lines += ["## Environment", "", "| what | value |", "|---|---|"]
    env = r["environment"]
    lines += [f"| {k} | {v} |" for k, v in env["hardware"].items()]
    lines += [f"| {k} | {v} |" for k, v in env["software"].items()]
    lines += [f"| driver | {env['driver']} |", f"| image | {env['image']} |", "",
              "## Reproduce", "", "```sh", *r["reproduce"], "```", ""]
    return "\n".join(lines)


def plot_loss_curve(r: dict, path: Path) -> None:
    """The run's training loss per step over the reference band (when there is one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [p["step"] for p in r["loss_curve"]]
    banded = [p for p in r["loss_curve"] if p["band"] and p["band"]["low"] is not None]
    if banded:
        x = [p["step"] for p in banded]
        ax.fill_between(x, [p["band"]["low"] for p in banded], [p["band"]["high"] for p in banded], alpha=0.25,
                        color="tab:green", label="reference band")
        ax.plot(x, [p["band"]["center"] for p in banded], "--", color="tab:green", lw=1, label="reference center")
    ax.plot(steps, [p["loss"] for p in r["loss_curve"]], "o-", color="tab:blue", ms=3, label="this run")
    out = [p for p in banded if not p["band"]["in_band"]]
    if out:
        ax.plot([p["step"] for p in out], [p["loss"] for p in out], "x", color="tab:red", ms=8, label="outside band")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="optimizer step", ylabel="training loss", title=f"{r['run']['recipe_name']}: {r['verdict']}")
    ax.legend()
    fig.tight_layout()
    import io as bytes_io

    png = bytes_io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    plt.close(fig)
    io.atomic_write_bytes(path, png.getvalue())
