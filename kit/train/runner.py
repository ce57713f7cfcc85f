"""One training run, from a recipe file to a complete run directory with its manifest.

recipe -> plan (device + strategy) -> data -> model -> train -> fingerprint (manifest).
The manifest is written before training starts (inputs, plan, flags, environment) and only ever
added to: a failed run keeps it, with its status and error beside them, and its log (logs/kit.log,
with the traceback); an interrupted one keeps its last checkpoint and resumes with
`kit train --resume`, which takes its flags from the manifest (kit.train.resume). The one process
working in a run holds its lock (kit.rundir.RunLock).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kit import container, determinism, fingerprint, hardware, io, plan, rundir
from kit.data import hub
from kit.data import rows as data
from kit.data.tokenizer import load_checked_tokenizer
from kit.errors import ResourceError, RunDirError
from kit.model import card, load, source
from kit.recipe import LoadedRecipe, load_recipe, with_overrides
from kit.train import checkpoint, distributed
from kit.train import resume as resuming
from kit.train.loop import Interrupted, run_loop
from kit.train.speed import speed_summary

log = logging.getLogger("kit")


@dataclass(frozen=True)
class Choice:
    """The training strategy and why: from the recipe, the planner, or the user's --strategy."""

    strategy: str
    reason: str
    source: str  # recipe | planner | user


def choose_strategy(loaded: LoadedRecipe, device: str, override: str | None) -> Choice:
    method = loaded.recipe.adapter.method
    if override:
        return Choice(override, f"--strategy {override} given on the command line", "user")
    if method != "auto":
        return Choice(method, f"the recipe sets adapter.method: {method}", "recipe")
    if not device.startswith("cuda"):
        return Choice("lora", "no GPU: LoRA on the CPU (QLoRA is only worth it to save GPU memory)", "planner")
    decision = plan.decide(loaded.recipe, hardware.detect().free_gib)
    return Choice(decision.strategy, decision.reason, "planner")


def prepare_run_dir(output: Path, resume: bool, create: bool = True) -> rundir.RunLock | None:
    """Check the output folder (empty, or a run to resume); unless create=False, create it and take
    its lock, held until released or the process ends (a worker of a launched run leaves the lock
    to its launcher). Resuming also clears what an interrupted write left behind."""
    output = Path(output)
    rundir.check_output_path(output, "run directory", folder=True)
    if resume:
        if not output.is_dir():
            raise RunDirError("run directory not found", where=str(output),
                              fix="pass the run directory of an interrupted `kit train`")
        lock = _lock(output)
        try:
            if not (output / rundir.RECIPE).is_file():
                raise RunDirError("nothing to resume: no recipe.json in the folder", where=str(output),
                                  fix="pass the run directory of an interrupted `kit train`")
            if rundir.read_manifest(output, started=True)["status"] == "complete":
                raise RunDirError("the run is already complete", where=str(output), fix="nothing to resume")
            if lock is not None:
                for name in rundir.clean_temp(output):
                    log.info("removed %s, left by an interrupted write", name)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return lock
    _refuse_if_not_empty(output)
    rundir.check_writable(output, "run directory")
    if not create:
        return None
    output.mkdir(parents=True, exist_ok=True)
    lock = _lock(output)
    try:
        _refuse_if_not_empty(output)  # another process may have started here in the meantime
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock


def _lock(output: Path) -> rundir.RunLock | None:
    return None if distributed.is_worker() else rundir.RunLock(output).acquire()


def _refuse_if_not_empty(output: Path) -> None:
    if not (output.is_dir() and any(output.iterdir())):
        return
    if rundir.is_locked(output):
        raise RunDirError("another kit process is working in this run directory", where=str(output),
                          fix="wait for it to finish (or stop it), or choose another --output")
    try:
        status = rundir.read_manifest(output)["status"]
    except RunDirError:
        status = None
    fix = (f"run `kit train --resume {output}`" if status in ("interrupted", "failed", "running")
           else "choose another --output, or delete the folder")
    raise RunDirError(f"the output folder is not empty (status: {status or 'unknown'})", where=str(output), fix=fix)


def _setup_logging(run: Path, rank: int = 0) -> logging.Handler:
    path = run / (rundir.LOG if rank == 0 else rundir.LOG.replace(".log", f".rank{rank}.log"))
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("kit")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


@dataclass
class Inputs:
    """Everything a run trains from, checked and fingerprinted before anything is written."""

    loaded: LoadedRecipe  # with the concrete strategy written in
    choice: Choice
    switches: dict
    tokenizer: object
    tokenizer_fp: dict
    train_path: Path
    eval_path: Path
    train_sha256: str
    eval_sha256: str
    rows: list
    base_path: Path
    base_fp: dict
    allow_data_change: bool


def gather_inputs(loaded: LoadedRecipe, strategy: str | None, allow_data_change: bool, dist,
                  run_copy: Path | None = None) -> Inputs:
    """Resolve, check and fingerprint every input; raise a KitError (exit 2) on bad input.
    run_copy: a resumed run's folder, whose own copies of the data are used."""
    recipe = loaded.recipe
    switches = determinism.apply(recipe.seed, recipe.determinism)
    choice = choose_strategy(loaded, dist.device, strategy)
    loaded = with_overrides(loaded, adapter={"method": choice.strategy})
    recipe = loaded.recipe
    load.skip_bitsandbytes(choice.strategy, recipe.training.optimizer)
    distributed.check_split(recipe.training.rows_per_step(), dist.world, f"{loaded.path}: training")
    loaded = _resolve_hub_ref(loaded)
    recipe = loaded.recipe
    base_path = source.resolve_base_model(recipe.model, loaded.path.parent)
    base_fp = source.fingerprint_base_model(base_path, recipe.model)  # safetensors only, complete, as pinned
    load.check_base_model(base_path, recipe.adapter.target_modules, f"{loaded.path}: adapter.target_modules")
    tok, tok_fp = load_checked_tokenizer(recipe.tokenizer, base_path)
    d = recipe.data
    if run_copy is not None:
        train_path, eval_path = run_copy / rundir.DATA / "train.jsonl", run_copy / rundir.DATA / "eval.jsonl"
    else:  # the recipe's local files, or data.hub's rows as canonical JSONL
        train_path, eval_path = hub.split_paths(d, loaded.resolve, source.cache_dir())
    train_sha = data.check_pinned(train_path, d.train_sha256, allow_data_change, "data.train_sha256")
    eval_sha = data.check_pinned(eval_path, d.eval_sha256, allow_data_change, "data.eval_sha256")
    rows = data.encode_file(tok, train_path, d.max_seq_len, d.max_train_rows)
    return Inputs(loaded, choice, switches, tok, tok_fp, train_path, eval_path, train_sha, eval_sha, rows,
                  base_path, base_fp, allow_data_change)


def _resolve_hub_ref(loaded: LoadedRecipe) -> LoadedRecipe:
    """A hub model named by a ref (refs/pr/2, main): the commit it points at now and its weight files'
    sha256 go into the run's resolved recipe (so recipe.json, the manifest and `kit verify` see a
    fully pinned run), and the download is checked against those hashes."""
    resolved = source.resolve_hub_revision(loaded)
    if resolved is not loaded:
        spec = resolved.recipe.model
        log.info("%s %s resolved to commit %s; recorded %d weight sha256", spec.id,
                 loaded.recipe.model.revision or source.DEFAULT_REF, spec.revision, len(spec.files_sha256))
    return resolved


def train_run(recipe_path: Path | LoadedRecipe | None, output: Path, strategy: str | None = None,
              allow_data_change: bool = False, resume: bool = False, on_step: Callable | None = None,
              on_start: Callable | None = None) -> dict:
    """Train one recipe into `output`; returns the manifest (on a worker rank > 0: {}).
    Bad input is refused before the run directory is created (on_start() is called once it is);
    a resumed run is continued with the flags it started with, under its lock."""
    load.quiet_transformers()
    output = Path(output)
    lock, previous = None, None
    try:
        if resume:
            lock = prepare_run_dir(output, resume=True)
            previous = rundir.read_manifest(output, started=True)
            started = resuming.check_flags(previous, strategy, allow_data_change, output)
            resuming.check_data(output, previous)
            loaded, strategy, allow_data_change = resuming.recipe(output), None, started["allow_data_change"]
            flags = started
        else:
            # a file, or a recipe already loaded and changed (kit train --random-weights)
            loaded = recipe_path if isinstance(recipe_path, LoadedRecipe) else load_recipe(recipe_path)
            if not distributed.is_worker():
                prepare_run_dir(output, resume=False, create=False)
            flags = {"strategy": strategy, "allow_data_change": allow_data_change}
        dist = distributed.current()
        inputs = gather_inputs(loaded, strategy, allow_data_change, dist, output if resume else None)
        manifest = _manifest(inputs, dist, flags)
        if resume:
            resuming.check_same_run(previous, manifest["inputs"], output)
            inputs.choice = Choice(**{k: previous["plan"][k] for k in ("strategy", "reason", "source")})
            manifest = resuming.continued(previous)
        elif not distributed.is_worker():  # with several processes, the launcher made it
            lock = prepare_run_dir(output, resume=False)
        if on_start:
            on_start()
        return _run(inputs, output, resume, on_step, dist, manifest)
    finally:
        if lock is not None:
            lock.release()


def _run(inputs: Inputs, output: Path, resume: bool, on_step, dist, manifest: dict) -> dict:
    """Train with the run's log open; a failure (a signal, an error) records its status and error
    beside everything the manifest already holds, never instead of it."""
    handler = _setup_logging(output, dist.rank)
    try:
        return _train(inputs, output, resume, on_step, dist, manifest)
    except BaseException as e:
        stopped = isinstance(e, (Interrupted, KeyboardInterrupt))
        log.exception("run %s: %s", "interrupted" if stopped else "failed", e)
        if dist.is_main:
            _record_stop(output, manifest, "interrupted" if stopped else "failed", f"{type(e).__name__}: {e}")
        raise
    finally:
        logging.getLogger("kit").removeHandler(handler)
        handler.close()


def _record_stop(run: Path, manifest: dict, status: str, error: str) -> None:
    try:
        io.atomic_write_json(run / rundir.MANIFEST, {**manifest, "status": status, "error": error})
    except OSError as e:  # a full disk: the manifest on disk stays as it was (status running)
        log.error("could not record the run's status in manifest.json: %s", e)


def _train(inp: Inputs, run: Path, resume: bool, on_step, dist, manifest: dict) -> dict:
    recipe, choice = inp.loaded.recipe, inp.choice
    log.info("strategy %s (%s); device %s x%d; determinism %s", choice.strategy, choice.reason, dist.device,
             dist.world, inp.switches)
    if not resume and dist.is_main:
        for src, name in ((inp.train_path, "train.jsonl"), (inp.eval_path, "eval.jsonl")):
            io.atomic_write_bytes(run / rundir.DATA / name, src.read_bytes())
        io.atomic_write_json(run / rundir.LOCAL, {"recipe_path": str(inp.loaded.path.resolve())})
        io.atomic_write_json(run / rundir.RECIPE, inp.loaded.resolved_dict())
    if dist.is_main:  # written before training: what the run is, whatever happens to it
        io.atomic_write_json(run / rundir.MANIFEST, manifest)
    dist.barrier()

    began = time.time()
    peft_model = load.load_for_training(inp.base_path, recipe, choice.strategy, dist.device, recipe.seed)
    trainable, n_params = peft_model.get_nb_trainable_parameters()  # counts 4-bit weights as unpacked
    log.info("trainable parameters: %d", trainable)
    if dist.is_main:
        checkpoint.check_disk(run / rundir.CHECKPOINTS, peft_model)
    try:
        records = run_loop(peft_model, inp.rows, recipe, run, dist.device, inp.tokenizer.pad_token_id, dist, on_step)
    except Exception as e:
        if type(e).__name__ == "OutOfMemoryError":
            raise out_of_memory(recipe, choice.strategy, run) from None
        raise
    if not dist.is_main:
        dist.barrier()
        return {}
    adapter_dir = rundir.temp_dir(run / rundir.ADAPTER)  # published whole, or not at all
    peft_model.save_pretrained(adapter_dir, safe_serialization=True)
    card.canonicalize_adapter_files(adapter_dir, recipe, inp.loaded.sha256(), choice.strategy)
    rundir.publish_dir(adapter_dir, run / rundir.ADAPTER)
    manifest["outputs"] = fingerprint.output_fingerprints(run, fingerprint.TRAINED)
    manifest["summary"] = {"steps": len(records), "trainable_parameters": trainable,
                           "final_loss": records[-1]["loss"] if records else None,
                           "train_tokens": sum(r["tokens"] for r in records),
                           "label_tokens": sum(r["label_tokens"] for r in records),
                           "seconds": round(time.time() - began, 3),
                           "speed": speed_summary(run, n_params, manifest["inputs"]["environment"]["hardware"])}
    manifest["status"] = "complete"
    io.atomic_write_json(run / rundir.MANIFEST, manifest)
    log.info("run complete: adapter sha256 %s", manifest["outputs"]["adapter"]["sha256"])
    dist.barrier()
    return manifest


def out_of_memory(recipe, strategy: str, run: Path):
    """The GPU ran out of memory: say what was measured and what the planner advises. The effective
    batch is never changed behind the user's back (no automatic halving)."""
    import torch

    peak = torch.cuda.max_memory_reserved() / 2**30 if torch.cuda.is_available() else 0.0
    total = torch.cuda.get_device_properties(0).total_memory / 2**30 if torch.cuda.is_available() else None
    d = plan.decide(recipe, total)
    other = "qlora" if strategy == "lora" else None
    advice = (f"`kit train --strategy {other}` (planned ~{d.estimates[other]['device_gib']:.1f} GiB)" if other
              else f"a shorter data.max_seq_len, or a card with more memory ({d.reason})")
    return ResourceError(f"out of GPU memory after reserving {peak:.1f} GiB of {total or 0:.1f} GiB with {strategy} "
                         f"(planned ~{d.estimates[strategy]['device_gib']:.1f} GiB); the batch was not changed",
                         where=str(run / rundir.LOG), fix=f"run `kit plan`, then try {advice}; the run's log is kept")


def _manifest(inp: Inputs, dist, flags: dict) -> dict:
    recipe, choice = inp.loaded.recipe, inp.choice
    hw = hardware.hardware_class(dist.device, dist.world, inp.switches["deterministic_algorithms"],
                                 inp.switches["cpu_threads"], dist.nodes)
    return {
        "schema": fingerprint.MANIFEST_SCHEMA,
        "kit_version": container.library_versions()["kwanzaa-kit"],
        "status": "running",
        "recipe_name": recipe.name,
        "plan": {"strategy": choice.strategy, "reason": choice.reason, "source": choice.source},
        "flags": flags,  # as given on the command line; `kit train --resume` takes them from here
        "determinism": inp.switches,
        "inputs": {
            "recipe": {"sha256": inp.loaded.sha256(), "file": rundir.RECIPE, "origin": _portable(inp.loaded.path)},
            "dataset": {"train": {"file": inp.train_path.name, "sha256": inp.train_sha256, "rows": len(inp.rows)},
                        "eval": {"file": inp.eval_path.name, "sha256": inp.eval_sha256},
                        "allow_data_change": inp.allow_data_change,
                        "sha256": _combine(inp.train_sha256, inp.eval_sha256)},
            "tokenizer": inp.tokenizer_fp,
            "base_model": {**inp.base_fp, "name": source.public_name(recipe.model)},
            "environment": fingerprint.environment(hw),
        },
    }


def _portable(path: Path) -> str:
    """The recipe's path relative to the working folder (never a home path in a manifest)."""
    try:
        return os.path.relpath(path.resolve(), Path.cwd())
    except ValueError:
        return path.name


def _combine(*digests: str) -> str:
    return io.sha256_bytes("\n".join(digests).encode())
