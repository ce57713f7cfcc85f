"""Evaluation of a run: generate answers for the eval set, measure the eval loss, score them.

Measured the same way every time: greedy decoding, a fixed batch size and max_new_tokens (both
from the recipe, both recorded), left padding, the same determinism switches as training. The
responses are saved (JSONL) and hashed; the metrics JSON is hashed into the manifest. Scoring is
kit.metrics, which needs no model and can score responses produced anywhere.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from kit import determinism, fingerprint, io, rundir
from kit.data import rows as data
from kit.data.batches import collate
from kit.data.rows import IGNORE_INDEX, encode_messages, encode_prompt
from kit.data.tokenizer import load_checked_tokenizer
from kit.evaluate import score
from kit.evaluate.stopping import STOP_RULE, StopAtJsonEnd
from kit.model import load, source
from kit.model.load import forward_loss
from kit.recipe import from_resolved

log = logging.getLogger("kit.evaluate")


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


def load_run(run: Path, base_only: bool = False) -> Loaded:
    """RUN's recipe, determinism switches, pinned eval rows, tokenizer, and its base model with the
    adapter (or, with base_only, without)."""
    import torch

    load.quiet_transformers()
    manifest = rundir.read_manifest(run, complete=True)
    recipe = from_resolved(rundir.read_json(run / rundir.RECIPE, "recipe.json"), str(run / rundir.RECIPE))
    switches = determinism.apply(recipe.seed, recipe.determinism)
    # where the recipe file was (for a local model's relative path); a run copied from another
    # machine has none, and then only hub and random-init models resolve
    local = rundir.read_json(run / rundir.LOCAL, ".local.json") if (run / rundir.LOCAL).is_file() else {}
    eval_path = run / rundir.DATA / "eval.jsonl"
    data.check_pinned(eval_path, manifest["inputs"]["dataset"]["eval"]["sha256"], False, "inputs.dataset.eval")
    rows = data.read_rows(eval_path)
    rows = rows[:recipe.data.max_eval_rows] if recipe.data.max_eval_rows else rows

    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    base_path = source.resolve_base_model(recipe.model, Path(local.get("recipe_path", run / rundir.RECIPE)).parent)
    tok, _ = load_checked_tokenizer(recipe.tokenizer, base_path)
    net = _load(base_path, recipe, manifest["plan"]["strategy"], device, None if base_only else run / rundir.ADAPTER)
    return Loaded(manifest, recipe, switches, rows, device, tok, net)


def evaluate_run(run: Path, base_only: bool = False, on_batch=None) -> dict:
    """Evaluate RUN's adapter (or, with base_only, the base model alone); returns the metrics."""
    loaded = load_run(run, base_only)
    manifest, recipe, switches, rows, device, tok, net = (loaded.manifest, loaded.recipe, loaded.switches,
                                                          loaded.rows, loaded.device, loaded.tok, loaded.net)
    manifest_path = run / rundir.MANIFEST

    began = time.perf_counter()
    eval_loss = _teacher_forced_loss(net, tok, rows, recipe, device)
    loss_seconds = time.perf_counter() - began
    spec = recipe.evaluation
    responses, new_tokens = generate(net, tok, rows, spec.batch_size, spec.max_new_tokens, device, on_batch, spec.cache)
    seconds = time.perf_counter() - began
    timing = {"seconds": round(seconds, 3), "loss_seconds": round(loss_seconds, 3),
              "generate_seconds": round(seconds - loss_seconds, 3), "rows": len(rows), "new_tokens": new_tokens,
              "new_tokens_per_s": round(new_tokens / (seconds - loss_seconds), 1) if seconds > loss_seconds else None,
              "device": device}

    out_dir = run / ("eval-base" if base_only else rundir.EVAL)
    lines = "".join(json.dumps({"id": r["id"], "response": text}, ensure_ascii=False, sort_keys=True) + "\n"
                    for r, text in zip(rows, responses))
    io.atomic_write_text(out_dir / "responses.jsonl", lines)
    scored = score.score(rows, [{"id": r["id"], "response": t} for r, t in zip(rows, responses)])
    result = {**scored, "eval_loss": eval_loss, "model": "base" if base_only else "base+adapter",
              "generation": {"decoding": spec.decoding, "batch_size": spec.batch_size, "cache": spec.cache,
                             "max_new_tokens": spec.max_new_tokens, "stop": STOP_RULE, "rows": len(rows),
                             # only when true: older metrics files (and their published hashes) stay as they were
                             **({"merged_adapter": True} if merged(recipe, manifest["plan"]["strategy"])
                                and not base_only else {})},
              "determinism": switches}
    io.atomic_write_json(out_dir / "metrics.json", result)
    io.atomic_write_json(out_dir / "timing.json", timing)
    if not base_only:
        manifest["outputs"] = fingerprint.output_fingerprints(run)
        manifest["eval"] = {"eval_loss": eval_loss, **timing}
        io.atomic_write_json(manifest_path, manifest)
    return {**result, "timing": timing}  # timing.json apart: seconds are not deterministic


def _load(base_path: Path, recipe, strategy: str, device: str, adapter_dir: Path | None):
    net = load.load_base(base_path, recipe, strategy, device)
    if adapter_dir is not None:
        from peft import PeftModel

        net = PeftModel.from_pretrained(net, adapter_dir, is_trainable=False)
        if merged(recipe, strategy):
            net = net.merge_and_unload()
    net.eval()
    return net


def merged(recipe, strategy: str) -> bool:
    """Whether evaluation folds the adapter into the base weights: the recipe asks, and it is bf16 LoRA."""
    return recipe.evaluation.merge_adapter and strategy == "lora"


def _teacher_forced_loss(net, tok, rows: list[dict], recipe, device: str) -> dict:
    """Mean cross-entropy over the assistant tokens of the reference answers (exact sum/count)."""
    import torch

    encoded = [encode_messages(tok, r["messages"], str(r["id"])) for r in rows]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), recipe.evaluation.batch_size):
            batch = collate(encoded[i:i + recipe.evaluation.batch_size], tok.pad_token_id, device)
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
