"""On the CPU: packed batching keeps the math, the speed switches are recorded, and
tokens/s, MFU and evaluation seconds reach the manifest, `kit train` and the report.
(Speed itself is measured on a GPU, in benchmarks/, never in a timed test.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.data.batches import collate_packed
from kit.data.rows import IGNORE_INDEX, EncodedRow
from kit.train.batching import micro_batches

from conftest import REPO, kit_here, manifest, write_recipe


def _rows(*lengths: int) -> list[EncodedRow]:
    # a prompt of half the row (ignored), then the answer
    return [EncodedRow(f"r{i}", tuple(range(100, 100 + n)), tuple([IGNORE_INDEX] * (n // 2) + list(range(n - n // 2))))
            for i, n in enumerate(lengths)]


def test_packing_fills_sequences_first_fit_decreasing_within_the_budget_and_the_row_cap():
    rows = _rows(500, 2000, 600, 700, 1000, 1300)
    bins = micro_batches(rows, 4, "packed", 2048)
    assert sorted(r.row_id for b in bins for r in b) == sorted(r.row_id for r in rows)  # every row once
    assert all(sum(len(r.input_ids) for r in b) <= 2048 for b in bins)
    assert [[len(r.input_ids) for r in b] for b in bins] == [[2000], [1300, 700], [1000, 600], [500]]
    assert micro_batches(list(reversed(rows)), 4, "packed", 2048) == bins  # the step's order does not matter
    assert max(len(b) for b in micro_batches(_rows(*[100] * 9), 2, "packed", 2048)) == 2  # micro_batch_size caps rows


def test_a_packed_sequence_restarts_positions_and_predicts_only_labels_of_its_own_row():
    rows = _rows(6, 4)
    b = collate_packed(rows, "cpu")
    assert b.input_ids.shape == (1, 10) and b.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3]]
    # row 0's labels are at 3, 4, 5 (predicted from 2, 3, 4); row 1's at 8, 9 (from 7, 8): never from 5 into 6
    assert b.keep.tolist() == [2, 3, 4, 7, 8]
    assert b.targets.tolist() == [0, 1, 2, 0, 1]


@pytest.fixture(scope="module")
def tiny_model(kit_cache):
    import os

    os.environ["KWANZAA_KIT_CACHE"] = str(kit_cache)
    from kit import determinism
    from kit.model import load as model
    from kit.model.source import materialize_random
    from kit.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes/tiny.yaml").recipe
    determinism.apply(recipe.seed, recipe.determinism)
    return model.load_for_training(materialize_random(recipe.model), recipe, "lora", "cpu", recipe.seed)


def test_a_packed_micro_batch_has_the_loss_of_its_rows_trained_one_by_one(tiny_model):
    """Attention stays within each row: packing two real rows gives the loss of training them apart."""
    import torch

    from kit.data.batches import collate
    from kit.data.rows import encode_messages, read_rows
    from kit.data.tokenizer import load_default_tokenizer
    from kit.model.load import forward_loss

    tok = load_default_tokenizer()
    data = read_rows(REPO / "data/kwanzaa/train.jsonl")
    rows = sorted((encode_messages(tok, r["messages"], r["id"]) for r in data), key=lambda r: len(r.input_ids))[:2]
    n = sum(sum(1 for x in r.labels[1:] if x != IGNORE_INDEX) for r in rows)
    with torch.no_grad():
        apart = sum(float(forward_loss(tiny_model, collate([r], tok.pad_token_id, "cpu"), n, "cpu")) for r in rows)
        packed = float(forward_loss(tiny_model, collate_packed(rows, "cpu"), n, "cpu"))
        # and a row that attends across the boundary would see this change: the first row's tokens
        swapped = [EncodedRow(rows[0].row_id, tuple(reversed(rows[0].input_ids)), rows[0].labels), rows[1]]
        second_alone = float(forward_loss(tiny_model, collate([rows[1]], tok.pad_token_id, "cpu"), n, "cpu"))
        first_swapped = float(forward_loss(tiny_model, collate([swapped[0]], tok.pad_token_id, "cpu"), n, "cpu"))
        packed_swapped = float(forward_loss(tiny_model, collate_packed(swapped, "cpu"), n, "cpu"))
    assert packed == pytest.approx(apart, rel=1e-6)
    assert packed_swapped - first_swapped == pytest.approx(second_alone, rel=1e-6)


@pytest.mark.slow
def test_packed_training_keeps_the_steps_rows_and_their_loss(run_kit, tiny_run, tmp_path):
    # sequences of up to 4096 tokens (rows still at most max_seq_len 2048), so rows of 1.0-1.4k tokens share them
    recipe = write_recipe(tmp_path / "packed.yaml", training__batching="packed", training__micro_batch_size=4,
                          training__grad_accum_steps=1, training__micro_batch_tokens=4096,
                          training__max_steps=1)  # the first step: the same rows and loss before any update
    run_kit("train", "--recipe", str(recipe), "--output", str(tmp_path / "run"), "--json", check=True)
    packed = [json.loads(x) for x in (tmp_path / "run/train_log.jsonl").read_text().splitlines()]
    padded = [json.loads(x) for x in (tiny_run / "train_log.jsonl").read_text().splitlines()]
    assert len(packed) == 1 and packed[0]["batch_sha256"] == padded[0]["batch_sha256"]  # the same 4 rows
    assert packed[0]["label_tokens"] == padded[0]["label_tokens"]
    assert packed[0]["loss"] == pytest.approx(padded[0]["loss"], rel=1e-5)  # same math, other summation order
    timing = [json.loads(x) for x in (tmp_path / "run/timing.jsonl").read_text().splitlines()]
    assert all(t["padded_tokens"] == r["tokens"] for t, r in zip(timing, packed))  # no padding at all
    assert all(t["micro_batches"] == 2 for t in timing)  # 4 rows of 1.0-1.4k tokens in two packs
    assert json.loads((tmp_path / "run/recipe.json").read_text())["training"]["micro_batch_tokens"] == 4096


def test_the_speed_switches_are_set_and_recorded(tiny_run):
    import torch

    from kit import determinism
    from kit.recipe import DeterminismSpec, TrainingSpec
    from kit.train.loop import make_optimizer

    m = manifest(tiny_run)
    assert m["determinism"]["fill_uninitialized_memory"] is False
    determinism.apply(1, DeterminismSpec(fill_uninitialized_memory=True))
    assert torch.utils.deterministic.fill_uninitialized_memory is True
    determinism.apply(1, DeterminismSpec())
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert make_optimizer(params, TrainingSpec(optimizer="adamw_torch_fused")).defaults["fused"] is True
    assert not make_optimizer(params, TrainingSpec(optimizer="adamw_torch")).defaults["fused"]


def test_training_speed_reaches_the_manifest_and_kit_train(run_kit, tiny_run):
    speed = manifest(tiny_run)["summary"]["speed"]
    log = [json.loads(x) for x in (tiny_run / "train_log.jsonl").read_text().splitlines()]
    timing = [json.loads(x) for x in (tiny_run / "timing.jsonl").read_text().splitlines()]
    later = sum(r["tokens"] for r in log[1:]) / sum(t["seconds"] for t in timing[1:])
    assert speed["tokens_per_s"] == pytest.approx(later, rel=1e-3) and speed["rate_steps"] == "2-3"
    assert speed["mfu"] is None and speed["gpu"] is None  # no GPU, no peak FLOPs to divide by
    assert 0 < speed["padding_waste"] < 0.1  # tiny pads micro-batches of 2 rows


@pytest.mark.slow
def test_evaluation_seconds_and_the_speed_section_of_the_report(run_copy):
    ev = manifest(run_copy)["eval"]
    assert ev["rows"] == 8 and ev["new_tokens"] > 0 and ev["generate_seconds"] > 0
    assert ev["seconds"] == pytest.approx(ev["loss_seconds"] + ev["generate_seconds"], abs=0.01)
    assert kit_here("report", str(run_copy), "--json").exit_code == 0
    report = json.loads((run_copy / "report/report.json").read_text())
    assert report["speed"]["train"]["tokens_per_s"] == manifest(run_copy)["summary"]["speed"]["tokens_per_s"]
    assert report["speed"]["eval"]["seconds"] == ev["seconds"]
    md = (run_copy / "report/report.md").read_text()
    assert "## Speed" in md and "| MFU (6N) | n/a |" in md


def test_static_and_dynamic_kv_caches_give_the_same_answers_on_the_cpu(evaluated_run, tiny_model):
    from kit.data.rows import read_rows
    from kit.data.tokenizer import load_default_tokenizer
    from kit.evaluate import runner as evaluate

    tok = load_default_tokenizer()
    rows = read_rows(Path(evaluated_run) / "data/eval.jsonl")[:3]
    dynamic = evaluate.generate(tiny_model, tok, rows, 2, 12, "cpu")
    static = evaluate.generate(tiny_model, tok, rows, 2, 12, "cpu", cache="static")
    assert static == dynamic and dynamic[1] == 36  # 3 rows x 12 new tokens (random weights: no EOS)


def test_the_planner_counts_one_full_row_per_packed_micro_batch():
    from kit import plan
    from kit.recipe import load_recipe, with_overrides

    loaded = load_recipe(REPO / "recipes/kwanzaa-olmo7b-lora.yaml")
    padded = {"batching": "padded", "micro_batch_tokens": None, "attention": "sdpa", "logits_chunk": None}
    one = with_overrides(loaded, training={**padded, "micro_batch_size": 1}).recipe
    packed = with_overrides(loaded, training={"batching": "packed", "micro_batch_size": 4,
                                              "micro_batch_tokens": None}).recipe
    four = with_overrides(loaded, training={**padded, "micro_batch_size": 4}).recipe
    assert plan.estimate(packed, "lora", 2048, 80).peak_gib == plan.estimate(one, "lora", 2048, 80).peak_gib
    assert plan.estimate(four, "lora", 2048, 80).peak_gib > plan.estimate(one, "lora", 2048, 80).peak_gib


def test_qlora_keeps_the_unquantized_weights_and_the_residual_stream_in_the_model_dtype(tmp_path, monkeypatch):
    """peft's prepare_model_for_kbit_training upcasts embeddings and lm_head to fp32, which makes the whole
    residual stream and attention fp32 (slower on a GPU, benchmarks/README.md); the kit keeps bf16."""
    import torch

    from kit.model import load as kit_model
    from kit.model.source import materialize_random
    from kit.recipe import load_recipe

    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(write_recipe(tmp_path / "q.yaml", model__dtype="bfloat16",
                                      adapter__quantization={"quant_type": "nf4", "double_quant": True,
                                                             "compute_dtype": "bfloat16"})).recipe
    net = kit_model.load_for_training(materialize_random(recipe.model), recipe, "qlora", "cpu", seed=42)
    params = dict(net.named_parameters())
    assert params["base_model.model.model.embed_tokens.weight"].dtype == torch.bfloat16
    assert params["base_model.model.lm_head.weight"].dtype == torch.bfloat16
    assert type(net.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    assert {n for n, p in params.items() if p.requires_grad} == {n for n in params if "lora_" in n}
    hidden = []
    net.base_model.model.model.layers[0].register_forward_hook(lambda m, i, o: hidden.append(o[0] if isinstance(o, tuple) else o))
    net.train()
    with kit_model.training_precision(recipe, "cpu"):  # as the training loop runs it
        loss = net(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss
    loss.backward()
    assert hidden[0].dtype == torch.bfloat16
    assert all(p.grad is not None for n, p in params.items() if p.requires_grad and "lora_B" in n)


def test_a_micro_batch_token_budget_is_planned_and_refused_where_it_means_nothing(tmp_path):
    from kit import plan
    from kit.errors import RecipeError
    from kit.recipe import load_recipe, with_overrides

    loaded = load_recipe(REPO / "recipes/kwanzaa-olmo7b-qlora.yaml")
    one = with_overrides(loaded, training={"batching": "packed", "micro_batch_tokens": None}).recipe
    big = with_overrides(loaded, training={"batching": "packed", "micro_batch_tokens": 8192}).recipe
    assert one.training.token_budget(2048) == 2048 and big.training.token_budget(2048) == 8192
    assert big.training.token_budget(10_000) == 10_000  # a longer row still travels alone
    assert plan.estimate(big, "qlora", 2048, 80).peak_gib > plan.estimate(one, "qlora", 2048, 80).peak_gib
    bad = write_recipe(tmp_path / "bad.yaml", training__batching="padded", training__micro_batch_tokens=4096)
    with pytest.raises(RecipeError) as e:
        load_recipe(bad)
    assert "training.micro_batch_tokens" in str(e.value) and "batching: packed" in str(e.value)
    line = next(i for i, x in enumerate(bad.read_text().splitlines(), 1) if "micro_batch_tokens" in x)
    assert f"{bad}:{line}" in str(e.value)  # the key's own line, not its section's


def test_the_resolved_recipe_writes_every_field_defaults_included():
    """The resolved recipe is the whole truth: a field left at its default is written, not omitted."""
    from kit.recipe import RECIPE_SCHEMA, Recipe, load_recipe

    resolved = load_recipe(REPO / "recipes/tiny.yaml").resolved_dict()
    assert resolved["schema"] == RECIPE_SCHEMA
    for section, field in Recipe.model_fields.items():
        assert section in resolved, section
        sub = getattr(field.annotation, "model_fields", None)
        if sub:
            assert set(sub) == set(resolved[section]), (section, set(sub) ^ set(resolved[section]))
    assert resolved["training"]["micro_batch_tokens"] is None and resolved["evaluation"]["merge_adapter"] is False

def test_a_merged_lora_adapter_generates_as_the_unmerged_one_and_says_so(evaluated_run, kit_cache):
    """evaluation.merge_adapter folds bf16 LoRA into the base weights for generation (fewer kernels per
    decoding step); the fp32 tiny model answers the same either way."""
    import os

    os.environ["KWANZAA_KIT_CACHE"] = str(kit_cache)
    from kit.data.rows import read_rows
    from kit.data.tokenizer import load_default_tokenizer
    from kit.evaluate import runner as evaluate
    from kit.model.source import materialize_random
    from kit.recipe import load_recipe, with_overrides

    loaded = load_recipe(REPO / "recipes/tiny.yaml")
    merged = with_overrides(loaded, evaluation={"merge_adapter": True})
    assert merged.resolved_dict()["evaluation"]["merge_adapter"] is True
    base = materialize_random(loaded.recipe.model)
    adapter = Path(evaluated_run) / "adapter"
    nets = {"no": evaluate._load(base, loaded.recipe, "lora", "cpu", adapter, None),
            "yes": evaluate._load(base, merged.recipe, "lora", "cpu", adapter, "lora")}
    assert any("lora_A" in n for n, _ in nets["no"].named_parameters())
    assert not any("lora_A" in n for n, _ in nets["yes"].named_parameters())
    tok = load_default_tokenizer()
    rows = read_rows(Path(evaluated_run) / "data/eval.jsonl")[:2]
    assert evaluate.generate(nets["yes"], tok, rows, 2, 12, "cpu") == evaluate.generate(nets["no"], tok, rows, 2, 12, "cpu")
    settings = evaluate.generation_settings(merged.recipe, "lora", tok, rows, "cpu", base_only=False)
    assert settings["merge"] == "lora" and settings["batch_size"] == 4


def test_a_qlora_adapter_merges_into_the_dequantized_weights_it_was_trained_against(kit_cache, tmp_path):
    """QLoRA + merge_adapter: each nf4 weight dequantized once and the adapter added (no requantization):
    the same logits as the unmerged 4-bit model (which dequantizes at every step), no 4-bit layer left."""
    import os

    import torch

    os.environ["KWANZAA_KIT_CACHE"] = str(kit_cache)
    from peft import PeftModel

    from kit.model import load, merge
    from kit.model.source import materialize_random
    from kit.recipe import load_recipe, with_overrides

    recipe = with_overrides(load_recipe(REPO / "recipes/tiny.yaml"), evaluation={"merge_adapter": True}).recipe
    base = materialize_random(recipe.model)
    trained = load.load_for_training(base, recipe, "qlora", "cpu", seed=42)
    for name, p in trained.named_parameters():
        if "lora_B" in name:  # a non-zero adapter, or the merge would be trivially right
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(len(name)))
    trained.save_pretrained(tmp_path / "adapter")
    assert merge.merge_how(recipe, "qlora", None, 100) == "nf4-dequantized"
    assert merge.merge_how(recipe, "qlora", 0.001, 100) is None  # a card too small keeps the adapter unmerged
    ids = torch.tensor([[5, 17, 300, 42, 9]])
    unmerged = PeftModel.from_pretrained(load.load_base(base, recipe, "qlora", "cpu"), tmp_path / "adapter").eval()
    with torch.no_grad():
        expected = unmerged(input_ids=ids).logits
        without = load.load_base(base, recipe, "qlora", "cpu")(input_ids=ids).logits
        merged = merge.merge(PeftModel.from_pretrained(load.load_base(base, recipe, "qlora", "cpu"),
                                                       tmp_path / "adapter"), "nf4-dequantized").eval()
        got = merged(input_ids=ids).logits
    assert not any("4bit" in type(m).__name__ for m in merged.modules())
    # bitsandbytes' CPU 4-bit kernel rounds apart from dequantize + matmul (~2e-3 here); the adapter
    # moves the logits far more than that, and the merge keeps all of it
    adapter_effect = (expected - without).abs().max()
    assert (got - expected).abs().max() < 0.05 * adapter_effect


def test_a_bf16_model_trains_a_float32_adapter_with_bf16_matmuls(kit_cache, monkeypatch):
    """Mixed precision: the adapter's weights and gradients stay float32 (the optimizer updates them
    there), its matmuls take the model's bf16 activations as they are; a float32 model is untouched."""
    import torch

    from kit.model import load
    from kit.model.source import materialize_random
    from kit.recipe import load_recipe, with_overrides

    monkeypatch.setenv("KWANZAA_KIT_CACHE", str(kit_cache))
    base = load_recipe(REPO / "recipes/tiny.yaml")
    for dtype, lora_input in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        recipe = with_overrides(base, model={"dtype": dtype}).recipe
        net = load.load_for_training(materialize_random(recipe.model), recipe, "lora", "cpu", recipe.seed)
        seen = []
        for name, module in net.named_modules():
            if name.endswith("lora_A.default"):
                module.register_forward_pre_hook(lambda m, args, seen=seen: seen.append(args[0].dtype))
        ids = torch.arange(3, 40)[None]
        with load.training_precision(recipe, "cpu"):
            loss = net(input_ids=ids, labels=ids).loss
        loss.backward()
        trained = [p for p in net.parameters() if p.requires_grad]
        assert seen and set(seen) == {lora_input}, dtype
        assert {p.dtype for p in trained} == {p.grad.dtype for p in trained} == {torch.float32}, dtype
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in trained)
