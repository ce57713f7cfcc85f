"""The whole job, in the order the data flows: train -> evaluate -> verify -> report.

`reproduce` is what `kit reproduce` (and `make reproduce`, and the image's `reproduce`) runs. It
owns the flow; the CLI only prints what each stage says. A verification that cannot be made (no
reference for this recipe, or a run on other inputs) still leaves a report behind before the
refusal is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kit.errors import KitError
from kit.evaluate.runner import evaluate_run
from kit.report import build as report
from kit.train.runner import train_run
from kit.verify import judge


def reproduce(recipe: Path, output: Path, on_stage: Callable[[str, str], None] = lambda stage, detail: None,
              on_step: Callable | None = None, on_batch: Callable | None = None) -> dict:
    """Train `recipe` into `output`, evaluate it, verify it against its reference and write its report.
    Returns {run_dir, verification, report_files}; raises the verification's KitError after reporting."""
    # the stage line once the inputs are checked: a refused recipe is one line, as with `kit train`
    train_run(recipe, output, on_step=on_step, on_start=lambda: on_stage("train", f"{recipe} -> {output}"))
    on_stage("evaluate", "greedy generation on the eval set, then scoring")
    evaluate_run(output, on_batch=on_batch)
    on_stage("verify", "against the published reference for this hardware class")
    try:
        verification = judge.verify_run(output)
    except KitError:  # no reference, or other inputs: still leave a report behind
        files = report.write(report.build(output), output / "report")
        on_stage("report", str(files[1]))
        raise
    files = report.write(report.build(output, verification=verification), output / "report")
    on_stage("report", str(files[1]))
    return {"run_dir": str(output), "verification": verification, "report_files": [str(f) for f in files]}
