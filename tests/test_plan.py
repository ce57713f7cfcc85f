"""Planning: exact parameter counts, the LoRA/QLoRA rule, refusals, and the pinned calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit import plan
from kit.cli import cli
from kit.recipe import load_recipe, with_overrides
from kit.train.qualify import random_variant

REPO = Path(__file__).resolve().parents[1]
QLORA = REPO / "recipes/kwanzaa-olmo7b-qlora.yaml"


def test_olmo7b_and_its_adapter_have_the_measured_parameter_counts():
    arch = plan.Architecture.from_config({})
    assert arch.linear_params() + arch.embedding_params() == 6_888_095_744
    assert arch.lora_params(16, list(plan.Architecture.__dataclass_fields__) and
                            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]) == 39_976_960


def test_olmo_defaults_match_transformers():
    from transformers import OlmoConfig


    config = OlmoConfig().to_dict()
    for key, value in plan.OLMO_7B.items():
        assert config[key] == value, key


@pytest.mark.parametrize("gib,strategy", [(24, "lora"), (80, "lora"), (12, "qlora"), (16, "qlora")])
def test_plan_picks_lora_when_it_fits_else_qlora(gib, strategy):
    result = CliRunner().invoke(cli, ["plan", "--recipe", str(QLORA), "--gpu-memory", str(gib), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["strategy"] == strategy
    assert out["estimates"]["lora"]["peak_gib"] > out["estimates"]["qlora"]["peak_gib"]
    assert strategy in out["reason"].lower() or "lora" in out["reason"].lower()


def test_plan_refuses_a_card_too_small_and_says_what_would_fit():
    result = CliRunner().invoke(cli, ["plan", "--recipe", str(QLORA), "--gpu-memory", "6", "--json"])
    assert result.exit_code == 2
    out = json.loads(result.output)
    assert out["strategy"] is None and "GiB free runs this recipe" in out["reason"]


def test_plan_suggests_a_smaller_token_budget_then_a_shorter_sequence_when_one_fits():
    loaded = load_recipe(QLORA)
    assert loaded.recipe.training.micro_batch_tokens == 4096  # the QLoRA recipe packs 4096 tokens
    unpacked = with_overrides(loaded, training={"micro_batch_tokens": None}).recipe
    packed_gib = plan.estimate(loaded.recipe, "qlora", 2048, None).device_gib
    unpacked_gib = plan.estimate(unpacked, "qlora", 2048, None).device_gib
    assert unpacked_gib < packed_gib
    between = (packed_gib + unpacked_gib) / 2 / (1 - plan.MARGIN)  # a card that holds one row, not the pack
    d = plan.decide(loaded.recipe, between)
    assert d.strategy is None and "`training.micro_batch_tokens: null`" in d.reason
    assert plan.estimate(unpacked, "qlora", 2048, between).fits
    short = plan.estimate(unpacked, "qlora", 1024, None).device_gib / (1 - plan.MARGIN) + 0.01
    d = plan.decide(unpacked, short)  # not even one row of 2048 tokens, but one of 1024
    assert d.strategy is None and "sequences up to 1024 tokens" in d.reason


def test_memory_grows_with_the_sequence_and_components_add_up():
    r = plan.one_row_per_micro_batch(load_recipe(QLORA).recipe)  # packed, a micro-batch is 4096 tokens at any seq
    a, b = plan.estimate(r, "qlora", 1024, 80), plan.estimate(r, "qlora", 4096, 80)
    assert a.peak_gib < b.peak_gib
    assert abs(sum(b.components_gib.values()) - b.peak_gib) < 0.01
    assert b.device_gib > b.peak_gib


def _qualified() -> list[dict]:
    out = []
    for f in sorted((REPO / "benchmarks/results").glob("*/*-peak-memory-*.json")):
        data = json.loads(f.read_text())
        out += [dict(x, recipe=data["recipe"], gpu=data["gpu"]) for x in data["results"]]
    return out


def test_planner_is_within_10_percent_of_every_measured_peak():
    """Pinned calibration: every `kit qualify` measurement committed under benchmarks/results/."""
    measured = _qualified()
    assert measured, "no benchmarks/results/<gpu>/<date>-peak-memory-*.json: run kit qualify on a GPU and commit it"
    for m in measured:
        # as kit qualify measured it: one row per micro-batch, whatever the recipe packs
        r = random_variant(load_recipe(REPO / f"recipes/{m['recipe']}.yaml"), m["steps"]).recipe
        est = plan.estimate(r, m["strategy"], m["seq_len"], None).peak_gib
        assert abs(est - m["peak_reserved_gib"]) / m["peak_reserved_gib"] <= 0.10, (m["strategy"], m["seq_len"], est)
