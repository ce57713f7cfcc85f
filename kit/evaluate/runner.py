"""Evaluation of a run: generate answers for the eval set, measure the eval loss, score them.

Measured the same way every time: greedy decoding, a fixed batch size and max_new_tokens (both
from the recipe, both recorded), left padding, the same determinism switches as training. The
responses are saved (JSONL) and hashed; the metrics JSON is hashed into the manifest. Scoring is
kit.metrics, which needs no model and can score responses produced anywhere.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kit import determinism, fingerprint, io, plan, rundir
from kit.data import rows as data
from kit.data.batches import collate
from kit.data.rows import IGNORE_INDEX, encode_messages, encode_prompt
from kit.data.tokenizer import load_checked_tokenizer
from kit.errors import RunDirError
from kit.evaluate import score
from kit.evaluate.stopping import STOP_RULE, StopAtJsonEnd
from kit.hardware import GiB
from kit.model import card, load, merge, source
from kit.model.load import forward_loss
from kit.recipe import from_resolved

log = logging.getLogger("kit.evaluate")
EVAL_OUTPUTS = ("eval_responses", "eval_metrics")


@dataclass
class Loaded:
    """A complete run made ready to evaluate: its recipe, eval rows, tokenizer and model."""
    manifest: dict
    recipe: object
    switches: dict
    rows: list[dict]
    device: str
    tok: object
    net: object
    settings: dict  # how it generates (generation_settings)


def load_run(run: Path, base_only: bool = False) -> Loaded:
    """RUN's recipe, determinism switches, pinned eval rows, tokenizer, and its base model with the
    adapter (or, with base_only, without). Verified before read: files that no longer match the
    manifest's fingerprints are refused, and so is a run folder this command could not write to."""
    import torch

    load.quiet_transformers()
    manifest = rundir.read_manifest(run, complete=True)
    load.skip_bitsandbytes(manifest["plan"]["strategy"])  # LoRA: no 4-bit weights to load or dequantize
    fingerprint.check_outputs(run, fingerprint.TRAINED)
    recipe = from_resolved(rundir.read_json(run / rundir.RECIPE, "recipe.json"), str(run / rundir.RECIPE))
    switches = determinism.apply(recipe.seed, recipe.determinism)
    # where the recipe file was (for a local model's relative path); a run copied from another
    # machine has none, and then only hub and random-init models resolve
    local = rundir.read_local(run)
    eval_path = run / rundir.DATA / "eval.jsonl"
    _check_eval_data(eval_path, manifest["inputs"]["dataset"]["eval"]["sha256"])
    rows = data.read_rows(eval_path)
    rows = rows[:recipe.data.max_eval_rows] if recipe.data.max_eval_rows else rows
    rundir.check_writable(run / ("eval-base" if base_only else rundir.EVAL), "evaluation output")

    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    base_path = source.resolve_base_model(recipe.model, Path(local.get("recipe_path", run / rundir.RECIPE)).parent)
    tok, _ = load_checked_tokenizer(recipe.tokenizer, base_path)
    settings = generation_settings(recipe, manifest["plan"]["strategy"], tok, rows, device, base_only)
    net = _load(base_path, recipe, manifest["plan"]["strategy"], device, None if base_only else run / rundir.ADAPTER,
                settings["merge"])
    return Loaded(manifest, recipe, switches, rows, device, tok, net, settings)


def generation_settings(recipe, strategy: str, tok, rows: list[dict], device: str, base_only: bool) -> dict:
    """How this evaluation generates (recorded in metrics.json): the merge and the batch, resolved
    from the recipe and the device's total memory (kit.model.merge)."""
    import torch

    spec = recipe.evaluation
    total = torch.cuda.get_device_properties(0).total_memory / GiB if device.startswith("cuda") else None
    row_tokens = max(len(encode_prompt(tok, r["messages"])) for r in rows) + spec.max_new_tokens
    how = None if base_only else merge.merge_how(recipe, strategy, total, row_tokens)
    weights = merge.bf16_weights_gib(recipe) if strategy == "lora" or how else plan.estimate(
        recipe, "qlora", recipe.data.max_seq_len, None).peak_gib
    batch = spec.batch_size if spec.batch_size != "auto" else merge.auto_batch_size(recipe, weights, total, row_tokens,
                                                                                     len(rows))
    return {"decoding": spec.decoding, "batch_size": batch, "batch_size_rule": "auto" if spec.batch_size == "auto"
            else "recipe", "cache": spec.cache, "max_new_tokens": spec.max_new_tokens, "stop": STOP_RULE,
            "rows": len(rows), "merge": how}


def _check_eval_data(path: Path, recorded: str) -> None:
    actual = io.sha256_file(path) if path.is_file() else None
    if actual != recorded:
        state = "is gone" if actual is None else f"has sha256 {actual[:12]}..., not the {recorded[:12]}... it was trained with"
        raise RunDirError(f"the run's copy of its eval data {state}", where=str(path),
                          fix="restore the file from the data the run was trained with")


def evaluate_run(run: Path, base_only: bool = False, on_batch=None) -> dict:
    """Evaluate RUN's adapter (or, with base_only, the base model alone); returns the metrics.
    Under the run's lock; the outputs are published whole, and only they are added to the manifest."""
    run = Path(run)
    rundir.read_manifest(run)  # a folder that is not a run is refused before it is locked
    with rundir.RunLock(run):
        rundir.clean_temp(run)
        return _evaluate(run, base_only, on_batch)


def _evaluate(run: Path, base_only: bool, on_batch) -> dict:
    loaded = load_run(run, base_only)
    manifest, recipe, switches, rows, device, tok, net = (loaded.manifest, loaded.recipe, loaded.switches,
                                                          loaded.rows, loaded.device, loaded.tok, loaded.net)
    manifest_path = run / rundir.MANIFEST

    began = time.perf_counter()
    eval_loss = _teacher_forced_loss(net, tok, rows, loaded.settings["batch_size"], device)
    loss_seconds = time.perf_counter() - began
    spec, settings = recipe.evaluation, loaded.settings
    responses, new_tokens = generate(net, tok, rows, settings["batch_size"], spec.max_new_tokens, device, on_batch,
                                     spec.cache)
    seconds = time.perf_counter() - began
    timing = {"seconds": round(seconds, 3), "loss_seconds": round(loss_seconds, 3),
              "generate_seconds": round(seconds - loss_seconds, 3), "rows": len(rows), "new_tokens": new_tokens,
              "new_tokens_per_s": round(new_tokens / (seconds - loss_seconds), 1) if seconds > loss_seconds else None,
              "device": device}

    final_dir = run / ("eval-base" if base_only else rundir.EVAL)
    out_dir = rundir.temp_dir(final_dir)  # published whole once every file is written, else removed
    try:
        result = _write_outputs(out_dir, rows, responses, settings, switches, eval_loss, timing, base_only)
        rundir.publish_dir(out_dir, final_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if not base_only:  # this command's own outputs only: the training's were fingerprinted by kit train
        # (the manifest as load_run read it: nothing else writes it while this command holds the lock)
        # the adapter's card gets the eval results: a document beside the weights, not a bit-exact
        # output (kit.model.card), rewritten whole by this command, so only its own entry changes
        card.write_card(run / rundir.ADAPTER, recipe, manifest["inputs"]["recipe"]["sha256"],
                        manifest["plan"]["strategy"], result)
        manifest["outputs"]["adapter"]["files"][card.README] = io.sha256_file(run / rundir.ADAPTER / card.README)
        manifest["outputs"] = {**manifest["outputs"], **fingerprint.output_fingerprints(run, EVAL_OUTPUTS)}
        manifest["eval"] = {"eval_loss": eval_loss, **timing}
        io.atomic_write_json(manifest_path, manifest)
    return {**result, "timing": timing}  # timing.json apart: seconds are not deterministic


def _write_outputs(out_dir: Path, rows, responses, settings: dict, switches, eval_loss, timing: dict,
                   base_only: bool) -> dict:
    lines = "".join(json.dumps({"id": r["id"], "response": text}, ensure_ascii=False, sort_keys=True) + "\n"
                    for r, text in zip(rows, responses))
    io.atomic_write_text(out_dir / "responses.jsonl", lines)
    scored = score.score(rows, [{"id": r["id"], "response": t} for r, t in zip(rows, responses)])
    result = {**scored, "eval_loss": eval_loss, "model": "base" if base_only else "base+adapter",
              "generation": settings,
              "determinism": switches}
    io.atomic_write_json(out_dir / "metrics.json", result)
    io.atomic_write_json(out_dir / "timing.json", timing)
    return result


def _load(base_path: Path, recipe, strategy: str, device: str, adapter_dir: Path | None, merge_how: str | None):
    net = load.load_base(base_path, recipe, strategy, device)
    if adapter_dir is not None:
        net = _with_adapter(net, adapter_dir)
        if merge_how:
            net = merge.merge(net, merge_how)
    net.eval()
    return net


def _with_adapter(net, adapter_dir: Path):
    """The adapter on the base model, from safetensors only (a pickle file can run code when loaded)."""
    from peft import PeftModel

    pickles = sorted(p.name for p in adapter_dir.iterdir() if p.suffix in rundir.PICKLE_SUFFIXES)
    if pickles or not (adapter_dir / rundir.ADAPTER_WEIGHTS).is_file():
        raise RunDirError(f"the adapter must be {rundir.ADAPTER_WEIGHTS} (safetensors), not pickle files "
                          f"({', '.join(pickles) or 'none found'})", where=str(adapter_dir),
                          fix="restore the adapter written by `kit train`")
    try:
        return PeftModel.from_pretrained(net, adapter_dir, is_trainable=False)
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as e:  # e.g. tensors of another shape
        raise RunDirError(f"cannot load the adapter onto the base model: {str(e).strip().splitlines()[0][:200]}",
                          where=str(adapter_dir), fix="restore the adapter written by `kit train`") from None


def _teacher_forced_loss(net, tok, rows: list[dict], batch_size: int, device: str) -> dict:
    """Mean cross-entropy over the assistant tokens of the reference answers (exact sum/count)."""
    import torch

    encoded = [encode_messages(tok, r["messages"], str(r["id"])) for r in rows]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            batch = collate(encoded[i:i + batch_size], tok.pad_token_id, device)
            n = int((batch.labels[:, 1:] != IGNORE_INDEX).sum())
            total += float(forward_loss(net, batch, n, device).double()) * n
            count += n
    return {"loss": total / count if count else None, "label_tokens": count}


def generate(net, tok, rows: list[dict], batch_size: int, max_new_tokens: int, device: str, on_batch=None,
             cache: str = "dynamic") -> tuple[list[str], int]:
    """Greedy, batched, left-padded generation, each row stopped at its end-of-sequence token or
    where its JSON object closes (kit.evaluate.stopping); returns the decoded new text of each row
    and the number of new tokens generated (up to and including each row's last token)."""
    import torch
    from transformers import StoppingCriteriaList

    prompts = [encode_prompt(tok, r["messages"]) for r in rows]
    texts: list[str] = []
    new_tokens = 0
    options = {"cache_implementation": "static"} if cache == "static" else {}
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        stop = StopAtJsonEnd(tok, width, len(chunk))
        with torch.no_grad():
            out = net.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                               max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id, use_cache=True,
                               stopping_criteria=StoppingCriteriaList([stop]), **options)
        for i, row in enumerate(out[:, width:].tolist()):
            new_tokens += stop.new_tokens[i]
            texts.append(tok.decode(row[:stop.new_tokens[i]], skip_special_tokens=True))
        if on_batch:
            on_batch(min(start + batch_size, len(prompts)), len(prompts))
    return texts, new_tokens
