"""Resuming a run: the same run, continued, or a refusal.

`kit train --resume RUN` takes everything from RUN: the resolved recipe, the strategy chosen when
it started, the flags it was started with (--allow-data-change, --strategy), and its process count.
A flag that would change the run is refused, and so are inputs, a hardware class or software that
differ from the ones recorded when it started: the result would be neither run.
"""

from __future__ import annotations

from pathlib import Path

from kit import io, rundir
from kit.errors import RunDirError
from kit.recipe import LoadedRecipe, from_resolved

_FIX_AGAIN = "resume it as it started (or train again into a new folder)"


def flags(manifest: dict) -> dict:
    """The flags a run was started with (manifests before `flags` kept only allow_data_change)."""
    recorded = manifest.get("flags") or {}
    dataset = manifest["inputs"]["dataset"]
    return {"strategy": recorded.get("strategy"),
            "allow_data_change": bool(recorded.get("allow_data_change", dataset.get("allow_data_change", False)))}


def check_flags(manifest: dict, strategy: str | None, allow_data_change: bool, run: Path) -> dict:
    """The run's own flags; refused when the command line asks for another strategy or data change."""
    started = flags(manifest)
    chosen = manifest["plan"]["strategy"]
    if strategy and strategy != chosen:
        raise RunDirError(f"--strategy {strategy} would switch a {chosen} run to {strategy} halfway", where=str(run),
                          fix=f"resume without --strategy (it continues with {chosen}), or train a new run")
    if allow_data_change and not started["allow_data_change"]:
        raise RunDirError("--allow-data-change was not given when this run started; resuming cannot change "
                          "its data", where=str(run), fix="resume without --allow-data-change")
    return started


def check(run: Path, strategy: str | None, allow_data_change: bool, nproc: int | None, nnodes: int = 1) -> int:
    """For the command line, before anything starts: the flags, and the process count per machine to
    resume with (the run's own layout; another one is refused)."""
    if not (Path(run) / rundir.MANIFEST).is_file() or not (Path(run) / rundir.RECIPE).is_file():
        missing = rundir.MANIFEST if not (Path(run) / rundir.MANIFEST).is_file() else rundir.RECIPE
        raise RunDirError(f"nothing to resume: no {missing} in the folder", where=str(run),
                          fix="pass the run directory of an interrupted `kit train`")
    manifest = rundir.read_manifest(run, started=True)
    if manifest["status"] == "complete":
        raise RunDirError("the run is already complete", where=str(run), fix="nothing to resume")
    check_flags(manifest, strategy, allow_data_change, run)
    hardware = manifest["inputs"]["environment"]["hardware"]
    world, nodes = hardware["world_size"], hardware.get("nodes") or 1
    if nnodes != nodes:
        raise RunDirError(f"the run started on {nodes} machine(s); resuming on {nnodes} would sum its gradients "
                          "in another order", where=str(run), fix=f"resume with --nnodes {nodes}")
    per_node = max(1, world // nodes)
    if nproc is not None and nproc != per_node:
        raise RunDirError(f"the run started on {per_node} process(es) per machine; resuming on {nproc} would sum its "
                          "gradients in another order", where=str(run),
                          fix=f"resume without --nproc (or with --nproc {per_node})")
    return per_node


def recipe(run: Path) -> LoadedRecipe:
    """The run's resolved recipe, placed where the recipe file was (for a local model's relative path)."""
    recipe_json = run / rundir.RECIPE
    origin = rundir.read_local(run).get("recipe_path")
    return LoadedRecipe(from_resolved(rundir.read_json(recipe_json, "recipe.json"), str(recipe_json)),
                        Path(origin) if origin else recipe_json)


def check_data(run: Path, manifest: dict) -> None:
    """The run's own copies of its data are the files it started with, and its logs are logs."""
    rundir.read_step_log(run / rundir.TRAIN_LOG, partial_ok=True)
    rundir.read_step_log(run / rundir.TIMING, timing=True, partial_ok=True)
    for part in ("train", "eval"):
        path = run / rundir.DATA / f"{part}.jsonl"
        recorded = manifest["inputs"]["dataset"][part]["sha256"]
        actual = io.sha256_file(path) if path.is_file() else None
        if actual != recorded:
            state = "is gone" if actual is None else f"has sha256 {actual[:12]}..., not the {recorded[:12]}... it had"
            raise RunDirError(f"the run's copy of its {part} data {state}", where=str(path),
                              fix="restore the file, or train again into a new folder")


def check_same_run(manifest: dict, current: dict, run: Path) -> None:
    """Inputs, hardware class and software as they were when the run started (`current`: the
    inputs as they are now, in the manifest's shape)."""
    for key in ("recipe", "dataset", "tokenizer", "base_model"):
        before, now = manifest["inputs"][key]["sha256"], current[key]["sha256"]
        if before != now:
            raise RunDirError(f"inputs.{key} changed since the run started ({before[:12]}... -> {now[:12]}...)",
                              where=str(run), fix=_FIX_AGAIN)
    for part, fix in (("hardware", "resume on the machine class it started on, with its --nproc"),
                      ("software", "resume in the environment it started in (the same lock file)")):
        before, now = manifest["inputs"]["environment"][part], current["environment"][part]
        diff = [f"{k}: {before.get(k)} -> {now.get(k)}" for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)]
        if diff:
            raise RunDirError(f"the run started with another {part} ({'; '.join(diff)}); resuming here would mix "
                              "two", where=str(run), fix=fix)


def continued(manifest: dict) -> dict:
    """The manifest of a resumed run: everything recorded at its start, running again; why it
    stopped before is kept under `stops`."""
    out = {k: v for k, v in manifest.items() if k != "error"}
    out["stops"] = [*manifest.get("stops", []), {"status": manifest["status"], "error": manifest.get("error")}]
    out["status"] = "running"
    return out

